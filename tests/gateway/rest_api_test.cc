// The REST routes of the gateway, over loopback HTTP, against fake services.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gateway/dashboard.h"
#include "tests/gateway/gateway_harness.h"
#include "tests/testing/http_client.h"

namespace buildd::gateway::fake {
namespace {

using ::buildd::testing::HttpConnection;
using ::buildd::testing::HttpResult;
using ::buildd::testing::Request;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kBearer = absl::StrCat("Bearer ", kKey);

// The {"error":{"code":...}} of a response, loosely: enough for assertions.
MATCHER_P2(IsError, http_status, code_name, "") {
  const HttpResult& r = arg;
  *result_listener << "status " << r.status << " body " << r.body << " " << r.error;
  return r.status == http_status &&
         r.body.find(absl::StrCat(R"({"error":{"code":")", code_name, R"(")")) == 0 &&
         r.Header("Content-Type") == "application/json";
}

class RestApiTest : public ::testing::Test {
 protected:
  GatewayHarness gateway_;
};

TEST_F(RestApiTest, MissingKeyIs401WithoutCallingAnything) {
  HttpResult r = Request("GET", gateway_.url(), "/api/tasks");
  EXPECT_THAT(r, IsError(401, "UNAUTHENTICATED"));
  EXPECT_THAT(r.body, HasSubstr("Authorization: Bearer"));
  r = Request("POST", gateway_.url(), "/api/accounts", {}, R"({"name":"x"})");
  EXPECT_THAT(r, IsError(401, "UNAUTHENTICATED"));
  EXPECT_EQ(gateway_.accounts().CallCount(), 0u);
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, AuthorizationWithoutBearerSchemeIs401) {
  HttpResult r = Request("GET", gateway_.url(), "/api/tasks", {{"Authorization", "Basic Zm9v"}});
  EXPECT_THAT(r, IsError(401, "UNAUTHENTICATED"));
  EXPECT_THAT(r.body, HasSubstr("Bearer"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, ForwardsTheKeyAndRequestIdAsMetadata) {
  HttpResult r = gateway_.Get("/api/tasks");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  RecordedCall call = gateway_.broker().Last("ListTasks");
  EXPECT_EQ(call.authorization, kBearer);
  EXPECT_FALSE(r.Header("X-Request-Id").empty());
  EXPECT_EQ(call.request_id, r.Header("X-Request-Id"));
}

TEST_F(RestApiTest, SessionCookieIsTheCredentialWhenNoAuthorizationHeader) {
  HttpResult r = Request("GET", gateway_.url(), "/api/workspaces",
                         {{"Cookie", absl::StrCat("theme=dark; buildd_session=", kKey)}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gateway_.broker().Last("ListWorkspaces").authorization, kBearer);
}

TEST_F(RestApiTest, AuthorizationHeaderWinsOverTheCookie) {
  HttpResult r = Request("GET", gateway_.url(), "/api/workspaces",
                         {{"Authorization", kBearer}, {"Cookie", "buildd_session=other_key"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gateway_.broker().Last("ListWorkspaces").authorization, kBearer);
}

TEST_F(RestApiTest, MalformedJsonIs400NamingTheField) {
  HttpResult r = gateway_.Post("/api/tasks", R"({"title": "x", "prompt": })");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr("malformed JSON"));
  EXPECT_THAT(r.body, HasSubstr(R"(field \"prompt\")"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, TruncatedJsonIs400NamingTheLastField) {
  HttpResult r = gateway_.Post("/api/tasks", R"({"title": "x",)");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr(R"(after field \"title\")"));
}

TEST_F(RestApiTest, UnknownFieldIs400NamingTheField) {
  HttpResult r = gateway_.Post("/api/tasks", R"({"title":"x","colour":"red"})");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr(R"(unknown field \"colour\")"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, UnknownRunnerPreferenceIs400NamingTheField) {
  HttpResult r = gateway_.Post("/api/tasks", R"({"title":"x","runnerPreference":"sometimes"})");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr(R"(invalid value \"sometimes\" for field runnerPreference)"));
  EXPECT_THAT(r.body, HasSubstr("any, user, service, action"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, WrongTypeIs400NamingTheField) {
  HttpResult r = gateway_.Post("/api/accounts", R"({"name":"ci","maxConcurrentWorkers":"many"})");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr("for field maxConcurrentWorkers"));
  EXPECT_EQ(gateway_.accounts().CallCount(), 0u);
}

TEST_F(RestApiTest, BodyThatIsNotAnObjectIs400) {
  EXPECT_THAT(gateway_.Post("/api/tasks", "[1,2]"), IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(gateway_.Post("/api/tasks", ""), IsError(400, "INVALID_ARGUMENT"));
}

TEST_F(RestApiTest, BodyOver1MiBIs413AndNeverReachesTheService) {
  const std::string big(2 << 20, 'a');
  HttpResult r = gateway_.Post("/api/tasks", big);
  EXPECT_THAT(r, IsError(413, "RESOURCE_EXHAUSTED"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, ChunkedBodyOver1MiBIs413AndNeverReachesTheService) {
  const std::string big(2 << 20, 'a');
  HttpResult r = Request("POST", gateway_.url(), "/api/tasks",
                         {{"Authorization", kBearer}, {"Transfer-Encoding", "chunked"}}, big);
  EXPECT_THAT(r, IsError(413, "RESOURCE_EXHAUSTED"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, BodyJustUnder1MiBIsParsed) {
  // A valid task whose prompt fills the body up to the limit.
  const std::string prefix = R"({"title":"t","prompt":")";
  const std::string suffix = R"("})";
  const std::string body =
      prefix + std::string((1 << 20) - prefix.size() - suffix.size(), 'p') + suffix;
  ASSERT_EQ(body.size(), 1u << 20);
  HttpResult r = gateway_.Post("/api/tasks", body);
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(
      gateway_.broker().Last("CreateTask").Request<pb::CreateTaskRequest>().task().prompt().size(),
      (1u << 20) - prefix.size() - suffix.size());
}

TEST_F(RestApiTest, GrpcStatusesMapOneToOneToHttp) {
  const struct {
    grpc::StatusCode code;
    int http;
    const char* name;
  } kCases[] = {
      {grpc::StatusCode::INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"},
      {grpc::StatusCode::OUT_OF_RANGE, 400, "OUT_OF_RANGE"},
      {grpc::StatusCode::CANCELLED, 400, "CANCELLED"},
      {grpc::StatusCode::UNAUTHENTICATED, 401, "UNAUTHENTICATED"},
      {grpc::StatusCode::PERMISSION_DENIED, 403, "PERMISSION_DENIED"},
      {grpc::StatusCode::NOT_FOUND, 404, "NOT_FOUND"},
      {grpc::StatusCode::ALREADY_EXISTS, 409, "ALREADY_EXISTS"},
      {grpc::StatusCode::ABORTED, 409, "ABORTED"},
      {grpc::StatusCode::FAILED_PRECONDITION, 409, "FAILED_PRECONDITION"},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, 429, "RESOURCE_EXHAUSTED"},
      {grpc::StatusCode::UNIMPLEMENTED, 501, "UNIMPLEMENTED"},
      {grpc::StatusCode::UNAVAILABLE, 503, "UNAVAILABLE"},
      {grpc::StatusCode::DEADLINE_EXCEEDED, 504, "DEADLINE_EXCEEDED"},
      {grpc::StatusCode::INTERNAL, 500, "INTERNAL"},
      {grpc::StatusCode::DATA_LOSS, 500, "DATA_LOSS"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    gateway_.broker().FailWith("GetTask", grpc::Status(c.code, "told to fail"));
    HttpResult r = gateway_.Get("/api/tasks/t1");
    EXPECT_THAT(r, IsError(c.http, c.name));
    EXPECT_THAT(r.body, HasSubstr(R"("message":"told to fail")"));
  }
}

TEST_F(RestApiTest, PermissionDeniedIs403) {
  gateway_.broker().FailWith("CreateTask",
                             grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no canCreate"));
  EXPECT_THAT(gateway_.Post("/api/tasks", R"({"workspaceId":"w1","title":"t"})"),
              IsError(403, "PERMISSION_DENIED"));
}

TEST_F(RestApiTest, NotFoundIs404) {
  gateway_.accounts().FailWith("GetAccount", grpc::Status(grpc::StatusCode::NOT_FOUND, "none"));
  EXPECT_THAT(gateway_.Get("/api/accounts/a404"), IsError(404, "NOT_FOUND"));
}

TEST_F(RestApiTest, AlreadyExistsIs409) {
  gateway_.broker().FailWith("CreateWorkspace",
                             grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "name taken"));
  EXPECT_THAT(gateway_.Post("/api/workspaces", R"({"name":"w"})"), IsError(409, "ALREADY_EXISTS"));
}

TEST_F(RestApiTest, ResourceExhaustedIs429) {
  gateway_.broker().FailWith("CreateTask",
                             grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "over cost"));
  EXPECT_THAT(gateway_.Post("/api/tasks", R"({"title":"t"})"), IsError(429, "RESOURCE_EXHAUSTED"));
}

TEST_F(RestApiTest, CreateAccountIs201WithCamelCaseFields) {
  pb::CreateAccountResponse created;
  created.set_id("acc1");
  created.set_api_key("buildd_service_secret");
  created.set_key_id("key1");
  created.mutable_account()->set_id("acc1");
  created.mutable_account()->set_type(pb::Account::service);
  created.mutable_account()->set_auth_type(pb::Account::oauth);
  created.mutable_account()->set_max_concurrent_workers(3);
  gateway_.accounts().RespondWith("CreateAccount", created);

  HttpResult r = gateway_.Post("/api/accounts", R"({"type":"service","name":"ci","authType":"oauth",
      "maxConcurrentWorkers":3,"maxConcurrentSessions":2,"maxCostPerDay":12.5})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("apiKey":"buildd_service_secret")"));
  EXPECT_THAT(r.body, HasSubstr(R"("keyId":"key1")"));
  EXPECT_THAT(r.body, HasSubstr(R"("type":"service")"));
  EXPECT_THAT(r.body, HasSubstr(R"("authType":"oauth")"));
  EXPECT_THAT(r.body, HasSubstr(R"("maxConcurrentWorkers":3)"));
  // Defaults are printed too.
  EXPECT_THAT(r.body, HasSubstr(R"("isAdmin":false)"));
  EXPECT_THAT(r.body, Not(HasSubstr("api_key")));

  auto sent = gateway_.accounts().Last("CreateAccount").Request<pb::CreateAccountRequest>();
  EXPECT_EQ(sent.type(), pb::Account::service);
  EXPECT_EQ(sent.name(), "ci");
  EXPECT_EQ(sent.auth_type(), pb::Account::oauth);
  EXPECT_EQ(sent.max_concurrent_workers(), 3);
  EXPECT_EQ(sent.max_concurrent_sessions(), 2);
  EXPECT_DOUBLE_EQ(sent.max_cost_per_day(), 12.5);
}

TEST_F(RestApiTest, ListAndGetAccounts) {
  pb::ListAccountsResponse list;
  list.add_accounts()->set_name("a");
  list.add_accounts()->set_name("b");
  gateway_.accounts().RespondWith("ListAccounts", list);
  HttpResult r = gateway_.Get("/api/accounts");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("accounts":[)"));
  EXPECT_THAT(r.body, HasSubstr(R"("name":"b")"));

  r = gateway_.Get("/api/accounts/acc%201");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gateway_.accounts().Last("GetAccount").Request<pb::GetAccountRequest>().id(), "acc 1");
}

TEST_F(RestApiTest, PatchAccountSendsOnlyTheFieldsTheBodyNames) {
  pb::Account account;
  account.set_id("acc1");
  account.set_name("ci");
  account.set_max_cost_per_day(2.5);
  gateway_.accounts().RespondWith("UpdateAccount", account);
  HttpResult r = Request("PATCH", gateway_.url(), "/api/accounts/acc1",
                         {{"Authorization", kBearer}, {"Content-Type", "application/json"}},
                         R"({"maxCostPerDay":2.5,"maxConcurrentWorkers":0,"name":"ci"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("maxCostPerDay":2.5)"));
  RecordedCall call = gateway_.accounts().Last("UpdateAccount");
  EXPECT_EQ(call.authorization, kBearer);
  auto sent = call.Request<pb::UpdateAccountRequest>();
  EXPECT_EQ(sent.id(), "acc1");
  ASSERT_TRUE(sent.has_max_cost_per_day());
  EXPECT_DOUBLE_EQ(sent.max_cost_per_day(), 2.5);
  // 0 is a value, not "not given".
  ASSERT_TRUE(sent.has_max_concurrent_workers());
  EXPECT_EQ(sent.max_concurrent_workers(), 0);
  ASSERT_TRUE(sent.has_name());
  EXPECT_EQ(sent.name(), "ci");
  EXPECT_FALSE(sent.has_max_concurrent_sessions());
}

TEST_F(RestApiTest, PatchAccountWithABadBodyIs400NamingTheField) {
  const testing::Headers headers = {{"Authorization", kBearer},
                                    {"Content-Type", "application/json"}};
  HttpResult r = Request("PATCH", gateway_.url(), "/api/accounts/acc1", headers,
                         R"({"maxCostPerDay":"lots"})");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr("for field maxCostPerDay"));
  r = Request("PATCH", gateway_.url(), "/api/accounts/acc1", headers, R"({"maxWorkers":3})");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr(R"(unknown field \"maxWorkers\")"));
  r = Request("PATCH", gateway_.url(), "/api/accounts/acc1", headers, R"({"name": )");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  r = Request("PATCH", gateway_.url(), "/api/accounts/acc1", headers, R"({"id":"acc2","name":"x"})");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr("field id in the body does not match the path"));
  EXPECT_EQ(gateway_.accounts().CallCount(), 0u);
}

TEST_F(RestApiTest, PatchAccountMapsTheServicesRefusals) {
  EXPECT_THAT(Request("PATCH", gateway_.url(), "/api/accounts/acc1",
                      {{"Content-Type", "application/json"}}, R"({"name":"x"})"),
              IsError(401, "UNAUTHENTICATED"));
  EXPECT_EQ(gateway_.accounts().CallCount(), 0u);
  const testing::Headers headers = {{"Authorization", kBearer},
                                    {"Content-Type", "application/json"}};
  gateway_.accounts().FailWith(
      "UpdateAccount", grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "this call needs an admin key"));
  EXPECT_THAT(Request("PATCH", gateway_.url(), "/api/accounts/acc1", headers, R"({"name":"x"})"),
              IsError(403, "PERMISSION_DENIED"));
  gateway_.accounts().FailWith("UpdateAccount",
                               grpc::Status(grpc::StatusCode::NOT_FOUND, "account acc1 not found"));
  EXPECT_THAT(Request("PATCH", gateway_.url(), "/api/accounts/acc1", headers, R"({"name":"x"})"),
              IsError(404, "NOT_FOUND"));
  gateway_.accounts().FailWith(
      "UpdateAccount",
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "maxCostPerDay must not be negative"));
  HttpResult r =
      Request("PATCH", gateway_.url(), "/api/accounts/acc1", headers, R"({"maxCostPerDay":-1})");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr("maxCostPerDay"));
}

TEST_F(RestApiTest, ACookieSignedPatchOfAnAccountFromAnotherOriginIs403) {
  const std::string cookie = "buildd_session=buildd_session_0123456789abcdefghij";
  HttpResult r = Request("PATCH", gateway_.url(), "/api/accounts/acc1",
                         {{"Cookie", cookie},
                          {"Origin", "http://127.0.0.1:3000"},
                          {"Content-Type", "application/json"}},
                         R"({"maxCostPerDay":1})");
  EXPECT_THAT(r, IsError(403, "PERMISSION_DENIED"));
  EXPECT_EQ(gateway_.accounts().CallCount(), 0u);
  // From the dashboard's own origin it goes through.
  r = Request("PATCH", gateway_.url(), "/api/accounts/acc1",
              {{"Cookie", cookie}, {"Origin", gateway_.url()}, {"Content-Type", "application/json"}},
              R"({"maxCostPerDay":1})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gateway_.accounts().Last("UpdateAccount").authorization,
            "Bearer buildd_session_0123456789abcdefghij");
}

TEST_F(RestApiTest, GrantWorkspaceTakesTheAccountFromThePath) {
  pb::Grant grant;
  grant.set_account_id("acc1");
  grant.set_workspace_id("w1");
  grant.set_can_claim(true);
  gateway_.accounts().RespondWith("GrantWorkspace", grant);
  HttpResult r = gateway_.Post("/api/accounts/acc1/workspaces",
                               R"({"workspaceId":"w1","canClaim":true,"canCreate":false})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("canClaim":true)"));
  EXPECT_THAT(r.body, HasSubstr(R"("canCreate":false)"));
  auto sent = gateway_.accounts().Last("GrantWorkspace").Request<pb::GrantWorkspaceRequest>();
  EXPECT_EQ(sent.account_id(), "acc1");
  EXPECT_EQ(sent.workspace_id(), "w1");
  EXPECT_TRUE(sent.can_claim());
  EXPECT_FALSE(sent.can_create());

  EXPECT_THAT(
      gateway_.Post("/api/accounts/acc1/workspaces", R"({"accountId":"acc2","workspaceId":"w1"})"),
      IsError(400, "INVALID_ARGUMENT"));
}

TEST_F(RestApiTest, RotateAndRevokeKeys) {
  pb::RotateKeyResponse rotated;
  rotated.set_api_key("buildd_user_new");
  rotated.set_key_id("k2");
  gateway_.accounts().RespondWith("RotateKey", rotated);
  HttpResult r = gateway_.Post("/api/accounts/acc1/keys", "");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("apiKey":"buildd_user_new")"));
  auto rotate = gateway_.accounts().Last("RotateKey").Request<pb::RotateKeyRequest>();
  EXPECT_EQ(rotate.account_id(), "acc1");
  EXPECT_FALSE(rotate.revoke_others());

  r = gateway_.Post("/api/accounts/acc1/keys", R"({"revokeOthers":true})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_TRUE(
      gateway_.accounts().Last("RotateKey").Request<pb::RotateKeyRequest>().revoke_others());

  pb::RevokeKeyResponse revoked;
  revoked.set_revoked(1);
  gateway_.accounts().RespondWith("RevokeKey", revoked);
  r = gateway_.Delete("/api/accounts/acc1/keys/k1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"revoked":1})");
  auto revoke = gateway_.accounts().Last("RevokeKey").Request<pb::RevokeKeyRequest>();
  EXPECT_EQ(revoke.account_id(), "acc1");
  EXPECT_EQ(revoke.key_id(), "k1");

  r = gateway_.Delete("/api/accounts/acc1/keys");
  ASSERT_EQ(r.status, 200) << r.body;
  revoke = gateway_.accounts().Last("RevokeKey").Request<pb::RevokeKeyRequest>();
  EXPECT_EQ(revoke.account_id(), "acc1");
  EXPECT_EQ(revoke.key_id(), "");
}

TEST_F(RestApiTest, WorkspaceRoutes) {
  pb::Workspace workspace;
  workspace.set_id("w1");
  workspace.set_repo_url("https://example.com/r.git");
  gateway_.broker().RespondWith("CreateWorkspace", workspace);
  gateway_.broker().RespondWith("GetWorkspace", workspace);
  HttpResult r = gateway_.Post("/api/workspaces",
                               R"({"name":"r","repoUrl":"https://example.com/r.git",
                                   "defaultBranch":"main"})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("repoUrl":"https://example.com/r.git")"));
  auto sent = gateway_.broker().Last("CreateWorkspace").Request<pb::CreateWorkspaceRequest>();
  EXPECT_EQ(sent.default_branch(), "main");

  r = gateway_.Get("/api/workspaces/w1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gateway_.broker().Last("GetWorkspace").Request<pb::GetWorkspaceRequest>().id(), "w1");
  r = gateway_.Get("/api/workspaces");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"workspaces":[]})");
}

TEST_F(RestApiTest, CreateTaskWrapsTheTaskFieldsAndAnswers201) {
  pb::Task task;
  task.set_id("t1");
  task.set_workspace_id("w1");
  task.set_title("hello");
  task.set_state(pb::Task::pending);
  gateway_.broker().RespondWith("CreateTask", task);

  HttpResult r = gateway_.Post("/api/tasks", R"({"workspaceId":"w1","title":"hello",
      "provider":"command","command":"echo hi","runnerPreference":"any",
      "requiredLabels":["linux"],"providerOptions":{"model":"x"}})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("id":"t1")"));
  EXPECT_THAT(r.body, HasSubstr(R"("runnerPreference":"any")"));
  EXPECT_THAT(r.body, HasSubstr(R"("state":"pending")"));
  EXPECT_THAT(r.body, HasSubstr(R"("workspaceId":"w1")"));

  pb::Task sent = gateway_.broker().Last("CreateTask").Request<pb::CreateTaskRequest>().task();
  EXPECT_EQ(sent.workspace_id(), "w1");
  EXPECT_EQ(sent.title(), "hello");
  EXPECT_EQ(sent.provider(), "command");
  EXPECT_EQ(sent.command(), "echo hi");
  EXPECT_EQ(sent.runner_preference(), pb::Task::any);
  ASSERT_EQ(sent.required_labels_size(), 1);
  EXPECT_EQ(sent.provider_options().fields().at("model").string_value(), "x");
}

TEST_F(RestApiTest, ListTasksTakesFiltersFromTheQuery) {
  HttpResult r = gateway_.Get("/api/tasks?workspaceId=w1&state=running&limit=5");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"tasks":[]})");
  auto sent = gateway_.broker().Last("ListTasks").Request<pb::ListTasksRequest>();
  EXPECT_EQ(sent.workspace_id(), "w1");
  EXPECT_EQ(sent.state(), pb::Task::running);
  EXPECT_EQ(sent.limit(), 5);
}

TEST_F(RestApiTest, BadQueryValuesAre400NamingTheParameter) {
  HttpResult r = gateway_.Get("/api/tasks?state=sleeping");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr("for field state"));
  r = gateway_.Get("/api/tasks?limit=lots");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr("for field limit"));
  r = gateway_.Get("/api/tasks?colour=red");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr(R"(unknown query parameter \"colour\")"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

// The services could not read such a request: proto3 strings are UTF-8.
TEST_F(RestApiTest, PercentEscapesThatAreNotUtf8AreRefusedBeforeTheServices) {
  EXPECT_THAT(gateway_.Get("/api/tasks?workspaceId=%FF"), IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(gateway_.Get("/api/tasks/%C3"), IsError(404, "NOT_FOUND"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
  ASSERT_EQ(gateway_.Get("/api/tasks?workspaceId=caf%C3%A9").status, 200);
  EXPECT_EQ(gateway_.broker().Last("ListTasks").Request<pb::ListTasksRequest>().workspace_id(),
            "caf\xC3\xA9");
}

TEST_F(RestApiTest, GetTaskAnswersTaskAndWorkers) {
  pb::GetTaskResponse response;
  response.mutable_task()->set_id("t1");
  response.mutable_task()->set_state(pb::Task::completed);
  response.add_workers()->set_id("wk1");
  gateway_.broker().RespondWith("GetTask", response);
  HttpResult r = gateway_.Get("/api/tasks/t1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"({"task":{"id":"t1")"));
  EXPECT_THAT(r.body, HasSubstr(R"("state":"completed")"));
  EXPECT_THAT(r.body, HasSubstr(R"("workers":[{"id":"wk1")"));
  EXPECT_EQ(gateway_.broker().Last("GetTask").Request<pb::GetTaskRequest>().id(), "t1");
}

TEST_F(RestApiTest, CancelTask) {
  HttpResult r = gateway_.Post("/api/tasks/t1/cancel", "");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gateway_.broker().Last("CancelTask").Request<pb::CancelTaskRequest>().id(), "t1");
}

TEST_F(RestApiTest, ListAndGetWorkers) {
  HttpResult r = gateway_.Get("/api/workers?taskId=t1&workspaceId=w1");
  ASSERT_EQ(r.status, 200) << r.body;
  auto list = gateway_.broker().Last("ListWorkers").Request<pb::ListWorkersRequest>();
  EXPECT_EQ(list.task_id(), "t1");
  EXPECT_EQ(list.workspace_id(), "w1");
  r = gateway_.Get("/api/workers/wk1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(gateway_.broker().Last("GetWorker").Request<pb::GetWorkerRequest>().id(), "wk1");
}

TEST_F(RestApiTest, WorkerControlsMapToActions) {
  const struct {
    const char* path;
    const char* body;
    pb::ControlWorkerRequest::Action action;
    const char* text;
  } kCases[] = {
      {"pause", "", pb::ControlWorkerRequest::pause, ""},
      {"resume", "", pb::ControlWorkerRequest::resume, ""},
      {"cancel", "", pb::ControlWorkerRequest::cancel, ""},
      {"input", R"({"text":"use tabs"})", pb::ControlWorkerRequest::input, "use tabs"},
      {"input", R"({"approve":true})", pb::ControlWorkerRequest::input, "approve"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.path);
    HttpResult r = gateway_.Post(absl::StrCat("/api/workers/wk1/", c.path), c.body);
    ASSERT_EQ(r.status, 200) << r.body;
    auto sent = gateway_.broker().Last("ControlWorker").Request<pb::ControlWorkerRequest>();
    EXPECT_EQ(sent.id(), "wk1");
    EXPECT_EQ(sent.action(), c.action);
    EXPECT_EQ(sent.text(), c.text);
  }
}

TEST_F(RestApiTest, InputWithoutTextOrApprovalIs400) {
  EXPECT_THAT(gateway_.Post("/api/workers/wk1/input", "{}"), IsError(400, "INVALID_ARGUMENT"));
  HttpResult r = gateway_.Post("/api/workers/wk1/input", R"({"txt":"x"})");
  EXPECT_THAT(r, IsError(400, "INVALID_ARGUMENT"));
  EXPECT_THAT(r.body, HasSubstr(R"(unknown field \"txt\")"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, UnknownPathIs404AndWrongMethodIs405) {
  EXPECT_THAT(gateway_.Get("/api/nothing"), IsError(404, "NOT_FOUND"));
  EXPECT_THAT(gateway_.Get("/api/tasks/t1/extra/segments"), IsError(404, "NOT_FOUND"));
  HttpResult r = gateway_.Delete("/api/tasks");
  EXPECT_EQ(r.status, 405) << r.body;
  EXPECT_EQ(r.Header("Allow"), "POST, GET");
  r = Request("PUT", gateway_.url(), "/health");
  EXPECT_EQ(r.status, 405) << r.body;
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, EveryResponseHasItsOwnRequestId) {
  HttpResult a = gateway_.Get("/api/tasks");
  HttpResult b = Request("GET", gateway_.url(), "/api/tasks");
  EXPECT_EQ(a.Header("X-Request-Id").size(), 16u);
  EXPECT_EQ(b.Header("X-Request-Id").size(), 16u);
  EXPECT_NE(a.Header("X-Request-Id"), b.Header("X-Request-Id"));
}

TEST_F(RestApiTest, KeepAliveCarriesSeveralRequests) {
  auto connection = HttpConnection::Open(gateway_.url());
  ASSERT_TRUE(connection.ok()) << connection.status();
  for (int i = 0; i < 3; ++i) {
    HttpResult r = (*connection)->Request("GET", "/api/tasks", {{"Authorization", kBearer}});
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_TRUE((*connection)->open());
  }
  // Errors keep the connection too.
  HttpResult r = (*connection)->Request("GET", "/api/nope", {{"Authorization", kBearer}});
  EXPECT_EQ(r.status, 404);
  r = (*connection)->Request("GET", "/api/tasks", {{"Authorization", kBearer}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(gateway_.broker().CallCount(), 4u);
}

TEST_F(RestApiTest, SessionSignInTradesTheKeyForASessionCookie) {
  pb::CreateSessionResponse made;
  made.mutable_principal()->set_account_id("acc1");
  made.mutable_session()->set_id("s1");
  made.set_token("buildd_session_0123456789abcdefghij");
  gateway_.accounts().RespondWith("CreateSession", made);
  HttpResult r = Request("POST", gateway_.url(), "/api/session", {},
                         absl::StrCat(R"({"apiKey":")", kKey, R"("})"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr(R"("accountId":"acc1")"));
  EXPECT_THAT(r.body, Not(HasSubstr("buildd_session_0123456789abcdefghij")));
  EXPECT_THAT(r.body, Not(HasSubstr(kKey)));
  const std::string cookie = r.Header("Set-Cookie");
  EXPECT_THAT(cookie, HasSubstr("buildd_session=buildd_session_0123456789abcdefghij;"));
  EXPECT_THAT(cookie, Not(HasSubstr(kKey)));
  EXPECT_THAT(cookie, HasSubstr("HttpOnly"));
  EXPECT_THAT(cookie, HasSubstr("SameSite=Strict"));
  const auto& call = gateway_.accounts().Last("CreateSession");
  EXPECT_EQ(call.Request<pb::CreateSessionRequest>().user_agent(), "buildd-test");
  EXPECT_EQ(call.authorization, kBearer);
}

TEST_F(RestApiTest, SessionSignInWithARefusedKeyIs401WithoutCookie) {
  gateway_.accounts().FailWith("CreateSession",
                               grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown key"));
  HttpResult r =
      Request("POST", gateway_.url(), "/api/session", {}, R"({"apiKey":"buildd_user_wrong"})");
  EXPECT_THAT(r, IsError(401, "UNAUTHENTICATED"));
  EXPECT_EQ(r.Header("Set-Cookie"), "");
}

TEST_F(RestApiTest, SessionSignOutRevokesTheSessionAndClearsTheCookie) {
  gateway_.accounts().RespondWith("RevokeSession", pb::Session());
  HttpResult r = Request("DELETE", gateway_.url(), "/api/session",
                         {{"Cookie", "buildd_session=buildd_session_0123456789abcdefghij"},
                          {"Origin", gateway_.url()}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.Header("Set-Cookie"), HasSubstr("Max-Age=0"));
  EXPECT_EQ(gateway_.accounts().CallCount(), 1u);
  // Without a cookie there is nothing to end.
  EXPECT_EQ(Request("DELETE", gateway_.url(), "/api/session").status, 200);
}

TEST_F(RestApiTest, ACookieSignedChangeFromAnotherOriginIs403) {
  const testing::Headers cookie = {{"Cookie", "buildd_session=buildd_session_0123456789abcdefghij"},
                                   {"Origin", "http://127.0.0.1:3000"},
                                   {"Content-Type", "text/plain"}};
  HttpResult r = Request("POST", gateway_.url(), "/api/tasks", cookie, R"({"task":{}})");
  EXPECT_THAT(r, IsError(403, "PERMISSION_DENIED"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(RestApiTest, AnAddressWhoseKeysKeepFailingIsRefusedWithoutAsking) {
  gateway_.broker().FailWith("ListTasks",
                             grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid key"));
  for (int i = 0; i < 20; ++i) {
    HttpResult r = Request("GET", gateway_.url(), "/api/tasks",
                           {{"Authorization", absl::StrCat("Bearer buildd_user_guess", i, "xxxxxxxxxxxxxxxx")}});
    ASSERT_EQ(r.status, 401) << i << r.body;
  }
  HttpResult limited = Request("GET", gateway_.url(), "/api/tasks", {{"Authorization", kBearer}});
  EXPECT_THAT(limited, IsError(429, "RESOURCE_EXHAUSTED"));
  EXPECT_NE(limited.Header("Retry-After"), "");
  EXPECT_EQ(gateway_.broker().CallCount(), 20u);
  // What needs no credential still answers.
  EXPECT_EQ(Request("GET", gateway_.url(), "/").status, 200);
}

TEST_F(RestApiTest, RefusedSignInsAndEventStreamsCountAgainstTheAddressToo) {
  gateway_.accounts().FailWith("CreateSession",
                               grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown key"));
  gateway_.broker().FailWith("Subscribe",
                             grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown key"));
  for (int i = 0; i < 10; ++i) {
    HttpResult r = Request("POST", gateway_.url(), "/api/session", {},
                           absl::StrCat(R"({"apiKey":"buildd_user_guess)", i, R"(xxxxxxxxxxxxxxxx"})"));
    ASSERT_EQ(r.status, 401) << i << r.body;
    HttpResult events = Request("GET", gateway_.url(), "/api/events",
                                {{"Authorization", absl::StrCat("Bearer buildd_user_guess", i, "yyyyyyyyyyyyyyyy")}});
    ASSERT_EQ(events.status, 401) << i << events.body;
  }
  HttpResult limited = Request("POST", gateway_.url(), "/api/session", {},
                               absl::StrCat(R"({"apiKey":")", kKey, R"("})"));
  EXPECT_THAT(limited, IsError(429, "RESOURCE_EXHAUSTED"));
  EXPECT_EQ(gateway_.accounts().CallCount(), 10u);
}

TEST_F(RestApiTest, HealthIsOkWhenBothServicesServe) {
  HttpResult r = Request("GET", gateway_.url(), "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"status":"ok","accounts":"SERVING","broker":"SERVING"})");
}

TEST_F(RestApiTest, HealthIs503WhenAServiceDoesNotServe) {
  gateway_.broker_server().set_serving(false);
  HttpResult r = Request("GET", gateway_.url(), "/health");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, R"({"status":"unavailable","accounts":"SERVING","broker":"NOT_SERVING"})");
}

TEST_F(RestApiTest, DashboardIsServedWithoutKey) {
  HttpResult r = Request("GET", gateway_.url(), "/");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_THAT(r.body, HasSubstr(R"(src="/app.js")"));
  EXPECT_THAT(r.body, HasSubstr(R"(href="/app.css")"));
  HttpResult script = Request("GET", gateway_.url(), "/app.js");
  ASSERT_EQ(script.status, 200);
  EXPECT_EQ(script.Header("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_THAT(script.body, HasSubstr("EventSource"));
  EXPECT_THAT(script.body, HasSubstr("/api/session"));
  EXPECT_THAT(script.body, Not(HasSubstr("innerHTML")));
  for (const char* path : {"/", "/app.js", "/app.css"}) {
    HttpResult file = Request("GET", gateway_.url(), path);
    EXPECT_THAT(file.body, Not(HasSubstr("http://"))) << path;  // No external assets.
  }
}

TEST_F(RestApiTest, DashboardFilesCarryACspWithoutInlineCodeAndRevalidateByETag) {
  for (const char* path : {"/", "/app.js", "/app.css", "/favicon.svg", "/favicon.ico"}) {
    HttpResult r = Request("GET", gateway_.url(), path);
    ASSERT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.Header("Content-Security-Policy"), kDashboardCsp) << path;
    EXPECT_THAT(r.Header("Content-Security-Policy"), Not(HasSubstr("unsafe-inline"))) << path;
    EXPECT_EQ(r.Header("Cache-Control"), "no-cache") << path;
    EXPECT_EQ(r.Header("X-Content-Type-Options"), "nosniff") << path;
    const std::string etag = r.Header("ETag");
    ASSERT_EQ(etag.size(), 66u) << path << ": " << etag;  // A quoted SHA-256.
    HttpResult again = Request("GET", gateway_.url(), path, {{"If-None-Match", etag}});
    EXPECT_EQ(again.status, 304) << path;
    EXPECT_EQ(again.body, "") << path;
    HttpResult other = Request("GET", gateway_.url(), path, {{"If-None-Match", "\"stale\""}});
    EXPECT_EQ(other.status, 200) << path;
    EXPECT_EQ(other.body, r.body) << path;
  }
  EXPECT_EQ(Request("GET", gateway_.url(), "/favicon.svg").Header("Content-Type"), "image/svg+xml");
}

}  // namespace
}  // namespace buildd::gateway::fake
