// PATCH /api/accounts/:id over real HTTP against the real binaries: who may
// change an account's limits, what a bad body gets, and that the change is
// announced to the services that cache accounts (WatchChanges) and reaches
// Authenticate at once.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "buildd/v1/accounts.grpc.pb.h"
#include "common/ids.h"
#include "tests/e2e/mesh_fixture.h"

namespace buildd {
namespace {

namespace pb = ::buildd::v1;
using ::testing::HasSubstr;
using ::testing::Not;

class AccountUpdateTest : public MeshTest {
 protected:
  std::unique_ptr<pb::AccountService::Stub> AccountsStub() {
    return pb::AccountService::NewStub(
        grpc::CreateChannel(mesh_.accounts_addr(), grpc::InsecureChannelCredentials()));
  }

  // The {"error":{"code","message"}} of an answer.
  static std::string ErrorMessage(const HttpResult& r) {
    return Str(Obj(Json(r.body), "error"), "message");
  }
};

TEST_F(AccountUpdateTest, AnAdminChangesLimitsAndGetShowsThem) {
  Setup s = CreateAccountAndWorkspace("service", true, true, R"(,"anthropicApiKey":"sk-ant-x")");
  const std::string path = "/api/accounts/" + s.account_id;
  HttpResult r = Call("PATCH", path, admin_key(),
                      R"({"maxCostPerDay":2.5,"maxConcurrentWorkers":4,"name":"ci"})");
  ASSERT_EQ(r.status, 200) << r.body;
  Struct account = Json(r.body);
  EXPECT_EQ(Str(account, "id"), s.account_id);
  EXPECT_EQ(Num(account, "maxCostPerDay"), 2.5);
  EXPECT_EQ(Num(account, "maxConcurrentWorkers"), 4);
  EXPECT_EQ(Str(account, "name"), "ci");
  // Never a key or a credential.
  EXPECT_THAT(r.body, Not(HasSubstr("apiKey")));
  EXPECT_THAT(r.body, Not(HasSubstr("sk-ant-x")));
  EXPECT_THAT(r.body, Not(HasSubstr(s.api_key)));

  r = Call("GET", path, admin_key());
  ASSERT_EQ(r.status, 200) << r.body;
  account = Json(r.body);
  EXPECT_EQ(Num(account, "maxCostPerDay"), 2.5);
  EXPECT_EQ(Num(account, "maxConcurrentWorkers"), 4);
  EXPECT_EQ(Str(account, "name"), "ci");
  // Left out of the body: kept (the account was made with the default 1).
  EXPECT_EQ(Num(account, "maxConcurrentSessions"), 1);

  // 0 is a value: it lifts the daily budget.
  r = Call("PATCH", path, admin_key(), R"({"maxCostPerDay":0})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Num(Json(Call("GET", path, admin_key()).body), "maxCostPerDay"), 0);
  EXPECT_EQ(Num(Json(Call("GET", path, admin_key()).body), "maxConcurrentWorkers"), 4);
}

TEST_F(AccountUpdateTest, OnlyAnAdminMayChangeAnAccount) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  const std::string path = "/api/accounts/" + s.account_id;
  HttpResult r = Call("PATCH", path, s.api_key, R"({"maxCostPerDay":1000})");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(Str(Obj(Json(r.body), "error"), "code"), "PERMISSION_DENIED");
  r = Call("PATCH", path, "", R"({"maxCostPerDay":1000})");
  EXPECT_EQ(r.status, 401) << r.body;
  r = Call("PATCH", path, "buildd_service_notakeyatallnotakeyatallnotakeyatall", R"({"maxCostPerDay":1})");
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(Num(Json(Call("GET", path, admin_key()).body), "maxCostPerDay"), 0);
}

TEST_F(AccountUpdateTest, BadBodiesAre400NamingTheField) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  const std::string path = "/api/accounts/" + s.account_id;
  struct Case {
    std::string body, field;
  };
  const Case kCases[] = {
      {R"({"maxCostPerDay":-1})", "maxCostPerDay"},
      {R"({"maxCostPerDay":"NaN"})", "maxCostPerDay"},
      {R"({"maxCostPerDay":"much"})", "maxCostPerDay"},
      {R"({"maxConcurrentWorkers":-3})", "maxConcurrentWorkers"},
      {R"({"maxConcurrentWorkers":1.5})", "maxConcurrentWorkers"},
      {R"({"maxConcurrentSessions":-1})", "maxConcurrentSessions"},
      {R"({"name":""})", "name"},
      {R"({"name":"a\u0007b"})", "name"},
      {R"({"maxWorkers":3})", "maxWorkers"},
      {R"({"name": )", "name"},
      {R"({})", "maxCostPerDay"},  // nothing to change: names what may be
  };
  for (const Case& c : kCases) {
    HttpResult r = Call("PATCH", path, admin_key(), c.body);
    EXPECT_EQ(r.status, 400) << c.body << " → " << r.body;
    EXPECT_THAT(ErrorMessage(r), HasSubstr(c.field)) << c.body;
  }
  Struct account = Json(Call("GET", path, admin_key()).body);
  EXPECT_EQ(Num(account, "maxConcurrentWorkers"), 8);
  EXPECT_EQ(Str(account, "name"), "runner service");
}

TEST_F(AccountUpdateTest, AnUnknownAccountIs404) {
  HttpResult r = Call("PATCH", "/api/accounts/" + NewUuid(), admin_key(), R"({"maxCostPerDay":1})");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(Str(Obj(Json(r.body), "error"), "code"), "NOT_FOUND");
}

TEST_F(AccountUpdateTest, ACookieSessionFromAnotherOriginCannotChangeAnAccount) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  HttpResult signed_in = Call("POST", "/api/session", "",
                              absl::StrCat(R"({"apiKey":")", admin_key(), R"("})"));
  ASSERT_EQ(signed_in.status, 200) << signed_in.body;
  std::string cookie = signed_in.Header("Set-Cookie");
  cookie = cookie.substr(0, cookie.find(';'));
  const std::string path = "/api/accounts/" + s.account_id;
  HttpResult r = testing::Request(
      "PATCH", mesh_.gateway_url(), path,
      {{"Cookie", cookie}, {"Origin", "http://evil.example"}, {"Content-Type", "application/json"}},
      R"({"maxCostPerDay":99})");
  EXPECT_EQ(r.status, 403) << r.body;
  r = testing::Request(
      "PATCH", mesh_.gateway_url(), path,
      {{"Cookie", cookie}, {"Origin", mesh_.gateway_url()}, {"Content-Type", "application/json"}},
      R"({"maxCostPerDay":3})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Num(Json(Call("GET", path, admin_key()).body), "maxCostPerDay"), 3);
}

TEST_F(AccountUpdateTest, WatchChangesAnnouncesTheUpdateAndAuthenticateSeesItAtOnce) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  auto stub = AccountsStub();
  grpc::ClientContext watch;
  watch.AddMetadata("authorization", "Bearer " + mesh_.service_key());
  watch.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->WatchChanges(&watch, pb::WatchChangesRequest());
  pb::AccountChange change;
  ASSERT_TRUE(reader->Read(&change));
  ASSERT_EQ(change.kind(), "watching");

  HttpResult r = Call("PATCH", "/api/accounts/" + s.account_id, admin_key(),
                      R"({"maxCostPerDay":2.5,"maxConcurrentWorkers":2})");
  ASSERT_EQ(r.status, 200) << r.body;
  bool announced = false;
  while (!announced && reader->Read(&change)) {
    announced = change.account_id() == s.account_id && change.kind() == "limits_changed";
  }
  EXPECT_TRUE(announced);

  grpc::ClientContext auth;
  auth.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pb::AuthenticateRequest request;
  request.set_api_key(s.api_key);
  pb::Principal principal;
  ASSERT_TRUE(stub->Authenticate(&auth, request, &principal).ok());
  EXPECT_EQ(principal.max_cost_per_day(), 2.5);
  EXPECT_EQ(principal.max_concurrent_workers(), 2);

  watch.TryCancel();
  while (reader->Read(&change)) {
  }
  (void)reader->Finish();
}

// A changed maxCostPerDay reaches the runners of the account that are
// connected already, not only those that connect after it.
TEST_F(AccountUpdateTest, ALoweredDailyBudgetReachesARunnerAlreadyConnected) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  RawRunner runner(mesh_.broker_addr(), s.api_key);
  ASSERT_TRUE(runner.Hello("frugal", {}, {"command", "claude"}).has_welcome());
  const auto agent_task = [&] {
    HttpResult r = Call("POST", "/api/tasks", s.api_key,
                        absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                     R"(","provider":"claude","prompt":"think"})"));
    EXPECT_EQ(r.status, 201) << r.body;
    return Str(Json(r.body), "id");
  };
  // Spent $1 while the account has no limit.
  const std::string first = agent_task();
  const pb::BrokerMessage assign = runner.Read();
  ASSERT_TRUE(assign.has_assign()) << assign.DebugString();
  pb::RunnerMessage finished;
  finished.mutable_finished()->set_worker_id(assign.assign().worker().id());
  finished.mutable_finished()->set_epoch(assign.assign().epoch());
  finished.mutable_finished()->set_outcome(pb::Finished::completed);
  finished.mutable_finished()->mutable_artifacts()->set_cost_usd(1.0);
  runner.Write(finished);
  ASSERT_TRUE(runner.Read().has_ack());
  WaitForTaskState(first, "completed");

  const int64_t refreshes = Metric("buildd_broker_account_refreshes_total");
  HttpResult r = Call("PATCH", "/api/accounts/" + s.account_id, admin_key(), R"({"maxCostPerDay":0.5})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Metric("buildd_broker_account_refreshes_total") <= refreshes &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(Metric("buildd_broker_account_refreshes_total"), refreshes);

  // It spent $1 today, over its new $0.50: agent tasks wait, commands run.
  const std::string second = agent_task();
  const std::string command = CreateTask(s.api_key, s.workspace_id, "true");
  const pb::BrokerMessage next = runner.Read();
  ASSERT_TRUE(next.has_assign()) << next.DebugString();
  EXPECT_EQ(next.assign().task().id(), command);
  EXPECT_EQ(Str(Obj(Json(Call("GET", "/api/tasks/" + second, admin_key()).body), "task"), "state"),
            "pending");
}

}  // namespace
}  // namespace buildd
