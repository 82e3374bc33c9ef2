// Every service answers a client that knows nothing but server reflection,
// as `grpcurl` without proto files does.
#include <chrono>
#include <thread>

#include <soci/postgresql/soci-postgresql.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/db.h"
#include "absl/strings/str_cat.h"
#include "tests/testing/files.h"
#include "tests/testing/matchers.h"
#include "tests/testing/mesh.h"
#include "tests/testing/reflection_client.h"

namespace buildd {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::Mesh;
using ::buildd::testing::ReflectionClient;
using ::buildd::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;

class ReflectionHealthTest : public ::testing::Test {
 protected:
  static Mesh::Options NoGateway() {
    Mesh::Options options;
    options.gateway = false;
    return options;
  }
  Mesh mesh_{NoGateway()};
};

TEST_F(ReflectionHealthTest, AccountsListsItsServicesAndAnswersHealthCheck) {
  ReflectionClient client(mesh_.accounts_addr());
  auto services = client.ListServices();
  ASSERT_THAT(services, IsOk());
  EXPECT_THAT(*services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(*services, Contains("buildd.v1.AccountService"));
  auto health = client.Call("grpc.health.v1.Health/Check", "");
  ASSERT_THAT(health, IsOk());
  EXPECT_THAT(*health, HasSubstr("status: SERVING"));
  auto named = client.Call("grpc.health.v1.Health/Check", "service: \"buildd.v1.AccountService\"");
  ASSERT_THAT(named, IsOk());
  EXPECT_THAT(*named, HasSubstr("status: SERVING"));
}

TEST_F(ReflectionHealthTest, BrokerListsItsServicesAndAnswersHealthCheck) {
  ReflectionClient client(mesh_.broker_addr());
  auto services = client.ListServices();
  ASSERT_THAT(services, IsOk());
  EXPECT_THAT(*services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(*services, Contains("buildd.v1.BrokerService"));
  EXPECT_THAT(*services, Contains("buildd.v1.RunnerService"));
  auto health = client.Call("grpc.health.v1.Health/Check", "");
  ASSERT_THAT(health, IsOk());
  EXPECT_THAT(*health, HasSubstr("status: SERVING"));
}

TEST_F(ReflectionHealthTest, RpcsAreCallableDirectlyWithBearerMetadata) {
  ReflectionClient accounts(mesh_.accounts_addr());
  auto list = accounts.Call("buildd.v1.AccountService/ListAccounts", "", mesh_.admin_key());
  ASSERT_THAT(list, IsOk());
  EXPECT_THAT(*list, HasSubstr("name: \"admin\""));
  EXPECT_THAT(accounts.Call("buildd.v1.AccountService/ListAccounts", ""),
              StatusIs(absl::StatusCode::kUnauthenticated));

  ReflectionClient broker(mesh_.broker_addr());
  auto ws = broker.Call("buildd.v1.BrokerService/CreateWorkspace", "name: \"direct\"",
                        mesh_.admin_key());
  ASSERT_THAT(ws, IsOk());
  EXPECT_THAT(*ws, HasSubstr("name: \"direct\""));
  EXPECT_THAT(broker.Call("buildd.v1.BrokerService/ListWorkspaces", "", "buildd_user_nope_nope_nope_nope"),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(ReflectionHealthTest, HealthIsNotServingWhileTheDatabaseIsUnreachable) {
  // Cut every connection to the services' database and make it vanish.
  {
    auto admin_conninfo = ToConninfo(::buildd::testing::AdminDatabaseUrl());
    ASSERT_THAT(admin_conninfo, IsOk());
    auto db_conninfo = ToConninfo(mesh_.database_url());
    soci::session admin(soci::postgresql, *admin_conninfo);
    const size_t at = db_conninfo->find("dbname='");
    const std::string name = db_conninfo->substr(at + 8, db_conninfo->find('\'', at + 8) - at - 8);
    admin << "ALTER DATABASE " + name + " ALLOW_CONNECTIONS false";
    admin << "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'";
    for (const std::string& addr : {mesh_.accounts_addr(), mesh_.broker_addr()}) {
      ReflectionClient client(addr);
      std::string last;
      for (int i = 0; i < 100 && last.find("NOT_SERVING") == std::string::npos; ++i) {
        auto health = client.Call("grpc.health.v1.Health/Check", "");
        ASSERT_THAT(health, IsOk());
        last = *health;
        if (last.find("NOT_SERVING") == std::string::npos) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      EXPECT_THAT(last, HasSubstr("status: NOT_SERVING")) << addr;
    }
    admin << "ALTER DATABASE " + name + " ALLOW_CONNECTIONS true";
  }
  // Back: the services reconnect and serve again.
  ReflectionClient client(mesh_.accounts_addr());
  std::string last;
  for (int i = 0; i < 100 && last.find("status: SERVING") == std::string::npos; ++i) {
    auto health = client.Call("grpc.health.v1.Health/Check", "");
    ASSERT_THAT(health, IsOk());
    last = *health;
    if (last.find("status: SERVING") == std::string::npos) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  EXPECT_THAT(last, HasSubstr("status: SERVING"));
}

// The broker will not start without the key that seals session transcripts.
TEST(BrokerStartTest, RefusesAMissingOrMalformedSessionKey) {
  const std::string broker = testing::BuiltBinary("services/broker/buildd-broker");
  for (const std::string& key : {std::string(), std::string("abc"), std::string(64, 'z')}) {
    const std::string out =
        testing::Sh(absl::StrCat("env BUILDD_SESSION_KEY='", key, "' ", broker,
                                 " --database_url=postgresql://nowhere.invalid/x 2>&1;"
                                 " echo \"exit=$?\""));
    EXPECT_THAT(out, HasSubstr("--session_key (or BUILDD_SESSION_KEY)")) << key;
    EXPECT_THAT(out, HasSubstr("64 hex digits")) << key;
    EXPECT_THAT(out, HasSubstr("exit=2")) << key;
  }
}

}  // namespace
}  // namespace buildd
