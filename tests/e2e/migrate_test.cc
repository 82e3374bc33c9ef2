// Migrations as a Kubernetes deployment runs them: a job applies them with
// `--migrate=only` (needing nothing but the database), and the services,
// started with `--migrate=check`, refuse a database that lacks one.
#include <sys/wait.h>

#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/files.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/process.h"

namespace buildd {
namespace {

using ::buildd::testing::BuiltBinary;
using ::buildd::testing::Process;
using ::buildd::testing::TestDatabase;
using ::testing::HasSubstr;
using ::testing::Not;

class MigrateTest : public ::testing::Test {
 protected:
  MigrateTest() : dir_(testing::MakeTempDir("buildd-migrate-")) {}
  ~MigrateTest() override { testing::RemoveUnlessFailed(dir_, "migration logs"); }

  // Runs the broker with `args` until it exits; its exit code, and its log.
  std::pair<int, std::string> RunBroker(const std::vector<std::string>& args) {
    auto broker = Process::Start(BuiltBinary("services/broker/buildd-broker"), args,
                                 {{"BUILDD_DATABASE_URL", db_.url()},
                                  {"BUILDD_SESSION_KEY", RandomHex(32)},
                                  {"BUILDD_SERVICE_KEY", RandomHex(32)}},
                                 absl::StrCat(dir_, "/broker.", ++runs_, ".log"));
    const int status = broker->Wait(60000);
    EXPECT_TRUE(WIFEXITED(status)) << "still running or killed: " << broker->Log();
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, broker->Log()};
  }

  int Tables(const std::string& name) {
    auto pool = db_.Pool(1);
    soci::session sql(*pool);
    int n = 0;
    sql << "SELECT count(*) FROM pg_tables WHERE tablename = :t", soci::use(name), soci::into(n);
    return n;
  }

  TestDatabase db_;
  std::string dir_;
  int runs_ = 0;
};

TEST_F(MigrateTest, CheckRefusesADatabaseThatLacksAMigrationAndChangesNothing) {
  auto [code, log] = RunBroker({"--migrate=check", "--listen=127.0.0.1:0"});
  EXPECT_EQ(code, 1);
  EXPECT_THAT(log, HasSubstr("the database lacks broker migration 1 (001_broker)"));
  EXPECT_THAT(log, HasSubstr("run buildd-broker --migrate=only first"));
  EXPECT_EQ(Tables("tasks"), 0);
  EXPECT_EQ(Tables("schema_migrations"), 0);
}

TEST_F(MigrateTest, OnlyAppliesThemWithNothingButTheDatabaseAndExits) {
  // No session or service key: migrating needs none.
  auto job = Process::Start(BuiltBinary("services/broker/buildd-broker"), {"--migrate=only"},
                            {{"BUILDD_DATABASE_URL", db_.url()}}, dir_ + "/job.log");
  const int status = job->Wait(60000);
  ASSERT_TRUE(WIFEXITED(status)) << job->Log();
  EXPECT_EQ(WEXITSTATUS(status), 0) << job->Log();
  EXPECT_EQ(Tables("tasks"), 1);
  // Run again (an upgrade with nothing new): still fine, nothing applied twice.
  auto again = Process::Start(BuiltBinary("services/broker/buildd-broker"), {"--migrate=only"},
                              {{"BUILDD_DATABASE_URL", db_.url()}}, dir_ + "/job2.log");
  const int again_status = again->Wait(60000);
  ASSERT_TRUE(WIFEXITED(again_status)) << again->Log();
  EXPECT_EQ(WEXITSTATUS(again_status), 0) << again->Log();
  EXPECT_THAT(again->Log(), Not(HasSubstr("applied migration")));
  // A newer release migrated first (a rolling upgrade): this one still starts.
  {
    auto pool = db_.Pool(1);
    soci::session sql(*pool);
    sql << "INSERT INTO schema_migrations (service, version, name) VALUES ('broker', 999, 'newer')";
  }
  auto broker = Process::Start(BuiltBinary("services/broker/buildd-broker"),
                               {"--migrate=check", "--listen=127.0.0.1:0"},
                               {{"BUILDD_DATABASE_URL", db_.url()},
                                {"BUILDD_SESSION_KEY", RandomHex(32)},
                                {"BUILDD_SERVICE_KEY", RandomHex(32)}},
                               dir_ + "/checked.log");
  EXPECT_TRUE(broker->WaitForLog("broker listening on", 30000)) << broker->Log();
}

TEST_F(MigrateTest, AnUnknownModeIsRefusedByName) {
  auto [code, log] = RunBroker({"--migrate=sometimes"});
  EXPECT_EQ(code, 2);
  EXPECT_THAT(log, HasSubstr("--migrate must be apply, check or only, not 'sometimes'"));
  EXPECT_EQ(Tables("schema_migrations"), 0);
}

// The whole mesh started the way the chart starts it runs a task.
class MigratedFirstMeshTest : public MeshTest {
 protected:
  static Mesh::Options MigrateFirst() {
    Mesh::Options options;
    options.migrate_first = true;
    return options;
  }
  MigratedFirstMeshTest() : MeshTest(MigrateFirst()) {}
};

TEST_F(MigratedFirstMeshTest, ServicesStartedWithCheckRunATask) {
  EXPECT_THAT(mesh_.accounts().Log(), Not(HasSubstr("applied migration")));
  EXPECT_THAT(mesh_.broker().Log(), Not(HasSubstr("applied migration")));
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "checked");
  const std::string task_id = CreateTask(s.api_key, s.workspace_id, "echo migrated first");
  WaitForTaskState(task_id, "completed");
}

}  // namespace
}  // namespace buildd
