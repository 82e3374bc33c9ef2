// POST /execute, /status and GET /stream/:workspace/:branch against fake
// services: the task the seeds' body becomes, the SSE dialects (prelude,
// translated names, ids, the end after completed), and /status's figures.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gateway/execute_api.h"
#include "tests/gateway/gateway_harness.h"
#include "tests/testing/http_client.h"

namespace buildd::gateway::fake {
namespace {

using ::buildd::testing::HttpResult;
using ::buildd::testing::SseItem;
using ::buildd::testing::SseStream;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kWait = absl::Seconds(5);
constexpr char kWorkspace[] = "11111111-1111-4111-8111-111111111111";
constexpr char kTask[] = "22222222-2222-4222-8222-222222222222";

class ExecuteApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pb::Principal caller;
    caller.set_account_id("acc1");
    pb::Grant* grant = caller.add_grants();
    grant->set_workspace_id(kWorkspace);
    grant->set_can_create(true);
    gateway_.accounts().RespondWith("Authenticate", caller);
    pb::ListWorkspacesResponse workspaces;
    pb::Workspace* ws = workspaces.add_workspaces();
    ws->set_id(kWorkspace);
    ws->set_name("app");
    ws->set_repo_url("https://github.com/user/repo.git");
    gateway_.broker().RespondWith("ListWorkspaces", workspaces);
    pb::Task task;
    task.set_id(kTask);
    task.set_workspace_id(kWorkspace);
    task.set_title("Add error handling to the API");
    task.set_work_branch("buildd/22222222");
    task.set_provider("claude");
    task.set_created_at("2026-01-01T00:00:00Z");
    // A broker that echoes what it was given must not make the gateway echo it.
    (*task.mutable_credentials())["GIT_TOKEN"] = "ghp_secret";
    gateway_.broker().RespondWith("CreateTask", task);
  }

  std::unique_ptr<SseStream> Execute(const std::string& body) {
    auto stream = SseStream::OpenRequest(
        "POST", gateway_.url(), "/execute",
        {{"Authorization", absl::StrCat("Bearer ", kKey)}, {"Content-Type", "application/json"}},
        body);
    EXPECT_TRUE(stream.ok()) << stream.status();
    return stream.ok() ? std::move(*stream) : nullptr;
  }

  static pb::Event TaskEvent(int64_t id, const std::string& type, const std::string& text = "") {
    pb::Event e;
    e.set_id(id);
    e.set_type(type);
    e.set_task_id(kTask);
    e.set_workspace_id(kWorkspace);
    e.set_text(text);
    e.set_created_at("2026-01-01T00:00:02.5Z");
    return e;
  }

  GatewayHarness gateway_;
};

TEST_F(ExecuteApiTest, TheSeedsBodyBecomesATaskWithCredentialsItNeverShows) {
  auto stream = Execute(
      R"({"userRequest":"Add error handling to the API","codingAssistantProvider":"ClaudeAgentSDK",)"
      R"("codingAssistantAuthentication":"{\"claudeAiOauth\":{\"accessToken\":\"sk-ant-oat01-x\"}}",)"
      R"("github":{"repoUrl":"https://github.com/user/repo","branch":"main","accessToken":"ghp_secret"},)"
      R"("autoCommit":true,"providerOptions":{"model":"m"}})");
  ASSERT_NE(stream, nullptr);
  ASSERT_EQ(stream->status(), 200) << stream->body();
  auto connected = stream->NextEvent(kWait);
  ASSERT_TRUE(connected.ok()) << connected.status();
  EXPECT_EQ(connected->event, "connected");
  EXPECT_EQ(connected->id, "") << "the prelude is no event of the broker's";
  auto named = stream->NextEvent(kWait);
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->event, "session_name");
  EXPECT_THAT(named->data, HasSubstr(R"("branch":"buildd/22222222")"));
  EXPECT_THAT(connected->data + named->data, Not(HasSubstr("ghp_secret")));

  const pb::Task sent = gateway_.broker().Last("CreateTask").Request<pb::CreateTaskRequest>().task();
  EXPECT_EQ(sent.workspace_id(), kWorkspace) << "the workspace of the repoUrl (without .git)";
  EXPECT_EQ(sent.prompt(), "Add error handling to the API");
  EXPECT_EQ(sent.provider(), "claude");
  EXPECT_EQ(sent.base_branch(), "main");
  EXPECT_TRUE(sent.auto_commit());
  EXPECT_TRUE(sent.push());
  EXPECT_EQ(sent.credentials().at("CLAUDE_CODE_OAUTH_TOKEN"), "sk-ant-oat01-x");
  EXPECT_EQ(sent.credentials().at("GIT_TOKEN"), "ghp_secret");
  EXPECT_EQ(sent.session_id().size(), 36u);
  EXPECT_EQ(gateway_.broker().Last("Subscribe").Request<pb::SubscribeRequest>().task_id(),
            kTask);

  // Git progress becomes the seeds' names; the last message of an event
  // carries its id; completed ends the response.
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  pb::Event commit = TaskEvent(7, "git", "buildd: the task's changes");
  (*commit.mutable_data()->mutable_fields())["stage"].set_string_value("commit");
  gateway_.broker().Publish(commit);
  gateway_.broker().Publish(TaskEvent(8, "assistant_message", "Done."));
  gateway_.broker().Publish(TaskEvent(9, "completed"));
  std::vector<SseItem> items;
  for (int i = 0; i < 4; ++i) {
    auto item = stream->NextEvent(kWait);
    ASSERT_TRUE(item.ok()) << item.status();
    items.push_back(*item);
  }
  EXPECT_EQ(items[0].event, "commit_progress");
  EXPECT_THAT(items[0].data, HasSubstr(R"("stage":"analyzing")"));
  EXPECT_EQ(items[0].id, "");
  EXPECT_EQ(items[1].event, "commit_progress");
  EXPECT_THAT(items[1].data, HasSubstr(R"("stage":"committing")"));
  EXPECT_EQ(items[1].id, "7");
  EXPECT_EQ(items[2].event, "assistant_message");
  EXPECT_THAT(items[2].data, HasSubstr(R"("content":"Done.")"));
  EXPECT_EQ(items[3].event, "completed");
  EXPECT_THAT(items[3].data, HasSubstr(R"("duration":2500)"));
  auto end = stream->NextEvent(kWait);
  EXPECT_EQ(end.status().code(), absl::StatusCode::kOutOfRange) << "the stream ends";
  EXPECT_TRUE(gateway_.broker().WaitForCancelledSubscriptions(1, kWait));
}

TEST_F(ExecuteApiTest, AProviderOrWorkspaceItCannotUseIsA4xxNamingTheField) {
  HttpResult bad = gateway_.Post(
      "/execute", R"({"userRequest":"x","codingAssistantProvider":"copilot"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("codingAssistantProvider"));
  EXPECT_THAT(bad.body, HasSubstr("claude-code, ClaudeAgentSDK, codex or CodexSDK"));
  HttpResult unknown = gateway_.Post(
      "/execute",
      R"({"userRequest":"x","codingAssistantProvider":"codex","github":{"repoUrl":"https://x/y"}})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.body, HasSubstr("github.repoUrl"));
  HttpResult nested = gateway_.Post(
      "/execute",
      R"({"userRequest":"x","codingAssistantProvider":"codex","github":{"repo":"y"}})");
  EXPECT_EQ(nested.status, 400);
  EXPECT_THAT(nested.body, HasSubstr("github.repo"));
  EXPECT_EQ(gateway_.broker().Last("CreateTask").method, "") << "no task for a refused body";
}

TEST_F(ExecuteApiTest, StatusCountsTheSlotsOfTheCallersRunners) {
  pb::ListRunnersResponse runners;
  pb::RunnerInfo* a = runners.add_runners();
  a->set_max_tasks(2);
  a->set_active_workers(1);
  gateway_.broker().RespondWith("ListRunners", runners);
  HttpResult idle = gateway_.Get("/status");
  EXPECT_EQ(idle.status, 200);
  EXPECT_THAT(idle.body, HasSubstr(R"("status":"idle")"));
  a->set_active_workers(2);
  pb::RunnerInfo* draining = runners.add_runners();
  draining->set_max_tasks(4);
  draining->set_draining(true);
  gateway_.broker().RespondWith("ListRunners", runners);
  HttpResult busy = gateway_.Get("/status");
  EXPECT_EQ(busy.status, 429) << "a draining runner's slots do not count";
  EXPECT_THAT(busy.body, HasSubstr(R"("status":"busy")"));
}

TEST_F(ExecuteApiTest, ABranchStreamIsTheWorkflowsStatesWithTheirIds) {
  pb::Workspace ws;
  ws.set_id(kWorkspace);
  gateway_.broker().RespondWith("GetWorkspace", ws);
  auto stream = SseStream::Open(gateway_.url(), absl::StrCat("/stream/", kWorkspace, "/feature/x"),
                                {{"Authorization", absl::StrCat("Bearer ", kKey)},
                                 {"Last-Event-ID", "3"}});
  ASSERT_TRUE(stream.ok());
  ASSERT_EQ((*stream)->status(), 200) << (*stream)->body();
  const pb::SubscribeRequest sub =
      gateway_.broker().Last("Subscribe").Request<pb::SubscribeRequest>();
  EXPECT_EQ(sub.branch(), "feature/x");
  EXPECT_EQ(sub.workspace_id(), kWorkspace);
  EXPECT_EQ(sub.after_id(), 3);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  gateway_.broker().Publish(TaskEvent(4, "started", "claude: x"));
  gateway_.broker().Publish(TaskEvent(5, "output", "noise"));
  gateway_.broker().Publish(TaskEvent(6, "input", "approve"));
  for (const auto& [id, status] : {std::pair{"4", "planning"}, std::pair{"6", "coding"}}) {
    auto item = (*stream)->NextEvent(kWait);
    ASSERT_TRUE(item.ok()) << item.status();
    EXPECT_EQ(item->event, "status");
    EXPECT_EQ(item->id, id);
    EXPECT_THAT(item->data, HasSubstr(absl::StrCat(R"("status":")", status, R"(")")));
  }
}

}  // namespace
}  // namespace buildd::gateway::fake
