// The seeds' own clients against buildd's gateway: POST /execute in the
// bodies of 003 and 004 with the real Claude Code CLI against the fake
// model API, sessions and their history, GET /status, 002's branch
// workflows (POST /trigger, GET /stream/:workspace/:branch, POST /revert),
// a workflow that survives a broker restart mid-coding, and the refusals.
#include <algorithm>
#include <csignal>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/util/message_differencer.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "buildd/v1/broker.grpc.pb.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/fake_anthropic.h"
#include "tests/testing/files.h"
#include "tests/testing/matchers.h"

namespace buildd {
namespace {

using ::buildd::testing::FakeAnthropic;
using ::buildd::testing::FakeBlock;
using ::buildd::testing::FakeTurn;
using ::buildd::testing::IsOk;
using ::buildd::testing::Sh;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAccountApiKey[] = "sk-ant-api03-seed-account-e2e";
// What the seeds' clients send as provider and git credentials: they must
// never come back.
constexpr char kOauthToken[] = "sk-ant-oat01-seed-oauth-token";
constexpr char kPlainKey[] = "sk-ant-seed-plain-key";
constexpr char kGitToken[] = "ghp_seedgittoken";

std::vector<std::string> Names(const std::vector<SseItem>& items) {
  std::vector<std::string> out;
  for (const SseItem& item : items) out.push_back(item.event);
  return out;
}

// `names` in this order (others may come in between).
bool InOrder(const std::vector<std::string>& got, const std::vector<std::string>& names) {
  size_t at = 0;
  for (const std::string& n : got) {
    if (at < names.size() && n == names[at]) ++at;
  }
  return at == names.size();
}

class SeedApiTest : public MeshTest {
 protected:
  explicit SeedApiTest(Mesh::Options options = Mesh::Options{}) : MeshTest(options) {}

  void SetUp() override {
    setenv("GIT_CONFIG_COUNT", "1", 1);
    setenv("GIT_CONFIG_KEY_0", "safe.directory", 1);
    setenv("GIT_CONFIG_VALUE_0", "*", 1);
    origin_ = mesh_.dir() + "/origin.git";
    const std::string seed = mesh_.dir() + "/seed";
    Sh(absl::StrCat("git init -q --bare -b main ", origin_));
    Sh(absl::StrCat("git init -q -b main ", seed, " && cd ", seed,
                    " && echo '# demo' > README.md && git add README.md"
                    " && git -c user.name=Seed -c user.email=seed@x commit -q -m first"
                    " && git push -q ",
                    origin_, " main"));
    HttpResult acc = Call("POST", "/api/accounts", mesh_.admin_key(),
                          absl::StrCat(R"({"type":"service","name":"seeds","maxConcurrentWorkers":8,)"
                                       R"("anthropicApiKey":")",
                                       kAccountApiKey, R"("})"));
    ASSERT_EQ(acc.status, 201) << acc.body;
    account_id_ = Str(Json(acc.body), "id");
    key_ = Str(Json(acc.body), "apiKey");
    HttpResult ws = Call("POST", "/api/workspaces", mesh_.admin_key(),
                         absl::StrCat(R"({"name":"repo","repoUrl":"file://)", origin_,
                                      R"(","defaultBranch":"main"})"));
    ASSERT_EQ(ws.status, 201) << ws.body;
    workspace_id_ = Str(Json(ws.body), "id");
    Grant(account_id_, workspace_id_);
  }

  void Grant(const std::string& account, const std::string& workspace) {
    HttpResult grant = Call("POST", absl::StrCat("/api/accounts/", account, "/workspaces"),
                            mesh_.admin_key(),
                            absl::StrCat(R"({"workspaceId":")", workspace,
                                         R"(","canClaim":true,"canCreate":true})"));
    ASSERT_EQ(grant.status, 200) << grant.body;
  }

  // Another account, with a workspace of its own.
  Setup Stranger() { return CreateAccountAndWorkspace("service", true, true); }

  testing::Process& StartClaudeRunner(const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        absl::StrCat("--claude=", testing::TestClaudeCli()), "--codex=/nonexistent/codex",
        absl::StrCat("--claude_config_dir=", mesh_.dir(), "/claude-", name),
        "--commit_author=Buildd Test <bot@buildd.test>", "--cancel_grace_ms=2000"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::map<std::string, std::string> env;
    for (const auto& [k, v] : fake_.ClaudeEnv()) env[k] = v;
    env.erase("ANTHROPIC_API_KEY");
    std::vector<std::string> names;
    for (const auto& [k, v] : env) names.push_back(k);
    args.push_back(absl::StrCat("--task_env=", absl::StrJoin(names, ",")));
    return mesh_.StartRunner(key_, name, args, env);
  }

  absl::StatusOr<std::unique_ptr<SseStream>> Post(const std::string& path, const std::string& body,
                                                  const std::string& key) {
    testing::Headers headers = {{"Content-Type", "application/json"}};
    if (!key.empty()) headers.push_back({"Authorization", "Bearer " + key});
    return SseStream::OpenRequest("POST", mesh_.gateway_url(), path, headers, body);
  }
  absl::StatusOr<std::unique_ptr<SseStream>> Get(const std::string& path, const std::string& key,
                                                 const std::string& last_event_id = "") {
    testing::Headers headers = {{"Authorization", "Bearer " + key}};
    if (!last_event_id.empty()) headers.push_back({"Last-Event-ID", last_event_id});
    return SseStream::Open(mesh_.gateway_url(), path, headers);
  }

  // Reads messages until one named in `until` (included) or the end.
  static std::vector<SseItem> ReadUntil(SseStream& stream, const std::set<std::string>& until,
                                        absl::Duration timeout = absl::Seconds(60)) {
    std::vector<SseItem> out;
    while (true) {
      absl::StatusOr<SseItem> item = stream.NextEvent(timeout);
      if (!item.ok()) {
        if (!until.empty()) ADD_FAILURE() << "stream ended: " << item.status();
        break;
      }
      out.push_back(*item);
      if (until.count(item->event) > 0) break;
    }
    return out;
  }
  // Whether the server ended the stream (rather than going quiet).
  static bool Ended(SseStream& stream) {
    absl::StatusOr<SseItem> item = stream.NextEvent(absl::Seconds(10));
    return !item.ok() && item.status().code() == absl::StatusCode::kOutOfRange;
  }

  // The `status` values of a workflow stream, in order.
  static std::vector<std::string> Statuses(const std::vector<SseItem>& items) {
    std::vector<std::string> out;
    for (const SseItem& item : items) {
      if (item.event == "status") out.push_back(Str(Json(item.data), "status"));
    }
    return out;
  }

  std::string WorkerOf(const std::string& task_id) {
    const Struct got = WaitForJson(
        "/api/tasks/" + task_id,
        [](const Struct& t) { return !Str(Obj(t, "task"), "workerId").empty(); }, "a worker", 30000);
    return Str(Obj(got, "task"), "workerId");
  }

  // Triggers a workflow of `message` on `branch`, approves its plan and
  // waits until its coding turn is held at `gate`; `items` gets what the
  // branch's `stream` said so far. Returns the workflow's id.
  std::string CodeUntilGate(SseStream& stream, const std::string& branch, const std::string& message,
                            const std::string& gate, std::vector<SseItem>* items) {
    HttpResult trigger = Call("POST", "/trigger", key_,
                              absl::StrCat(R"({"workspaceId":")", workspace_id_, R"(","branch":")",
                                           branch, R"(","message":")", message, R"("})"));
    EXPECT_EQ(trigger.status, 202) << trigger.body;
    const std::string workflow = Str(Json(trigger.body), "workflowId");
    *items = ReadUntil(stream, {"plan"});
    EXPECT_EQ(items->empty() ? "" : items->back().event, "plan");
    WaitForTaskState(workflow, "waiting_input");
    EXPECT_EQ(Call("POST", "/api/workers/" + WorkerOf(workflow) + "/input", key_, R"({"approve":true})")
                  .status,
              200);
    for (const SseItem& item : ReadUntil(stream, {"status"})) items->push_back(item);
    EXPECT_EQ(Statuses(*items).empty() ? "" : Statuses(*items).back(), "coding");
    EXPECT_TRUE(fake_.WaitForGate(gate, absl::Seconds(60)));
    return workflow;
  }

  std::string Origin(const std::string& git_args) {
    return Sh(absl::StrCat("git --git-dir=", origin_, " ", git_args));
  }

  FakeAnthropic fake_;
  std::string origin_;
  std::string account_id_;
  std::string key_;
  std::string workspace_id_;
};

TEST_F(SeedApiTest, HealthAnswersWithoutAKey) {
  // curl http://localhost:8080/health
  HttpResult r = testing::Request("GET", mesh_.gateway_url(), "/health");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Str(Json(r.body), "status"), "ok");
}

TEST_F(SeedApiTest, ExecuteWithSeed003sBodyStreamsItsEventsInOrderAndCommitsAndPushes) {
  fake_.Script("KEY-003",
               {FakeTurn::Reply({FakeBlock::Text("Adding error handling."),
                                 FakeBlock::ToolUse("Write", R"({"file_path":"errors.txt",)"
                                                             R"("content":"handled\n"})")}),
                FakeTurn::Reply({FakeBlock::Text("Added errors.txt.")})});
  testing::Process& runner = StartClaudeRunner("laptop");
  // 003's "With GitHub Integration" body, on the test's repository, with
  // its autoCommit and a git token.
  const std::string body = absl::StrCat(
      R"({"userRequest": "KEY-003 Add error handling to the API",)"
      R"("codingAssistantProvider": "ClaudeAgentSDK",)"
      R"("codingAssistantAuthentication": "{\"claudeAiOauth\":{\"accessToken\":\")",
      kOauthToken, R"(\",\"refreshToken\":\"sk-ant-ort01-...\"}}",)"
      R"("github": {"repoUrl": "file://)", origin_, R"(", "branch": "main", "accessToken": ")",
      kGitToken, R"("}, "autoCommit": true,)"
      R"("providerOptions": {"allowedTools": ["Write", "Read"]}})");
  auto stream = Post("/execute", body, key_);
  ASSERT_THAT(stream, IsOk());
  ASSERT_EQ((*stream)->status(), 200) << (*stream)->body();
  EXPECT_EQ((*stream)->Header("Content-Type"), "text/event-stream");
  const std::vector<SseItem> items = ReadUntil(**stream, {"completed", "error"});
  const std::vector<std::string> names = Names(items);
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.back(), "completed") << ::testing::PrintToString(names);
  EXPECT_TRUE(Ended(**stream)) << "the stream ends after completed";
  ASSERT_GE(names.size(), 2u);
  EXPECT_EQ(names[0], "connected");
  EXPECT_EQ(names[1], "session_name");
  EXPECT_TRUE(InOrder(names, {"connected", "session_name", "message", "github_pull_progress",
                              "branch_created", "assistant_message", "commit_progress",
                              "completed"}))
      << ::testing::PrintToString(names);
  std::vector<std::string> stages;
  for (const SseItem& item : items) {
    if (item.event == "commit_progress") stages.push_back(Str(Json(item.data), "stage"));
  }
  EXPECT_THAT(stages, ElementsAre("analyzing", "committing", "pushing"));

  const Struct connected = Json(items[0].data);
  const std::string session_id = Str(connected, "sessionId");
  const std::string task_id = Str(connected, "taskId");
  EXPECT_EQ(session_id.size(), 36u) << items[0].data;
  const Struct named = Json(items[1].data);
  EXPECT_EQ(Str(named, "sessionName"), "KEY-003 Add error handling to the API");
  const std::string branch = Str(named, "branch");
  EXPECT_EQ(branch, "buildd/" + task_id.substr(0, 8));
  const Struct completed = Json(items.back().data);
  EXPECT_GT(Num(completed, "duration"), 0);
  EXPECT_EQ(Str(completed, "sessionId"), session_id);
  const std::string sha = Str(completed, "commitSha");
  ASSERT_EQ(sha.size(), 40u) << items.back().data;
  // The provider's output, as it came.
  bool said = false;
  for (const SseItem& item : items) {
    said |= item.event == "assistant_message" &&
            Str(Json(item.data), "content") == "Adding error handling.";
  }
  EXPECT_TRUE(said);
  // Every event of the task carries an increasing id.
  int64_t last = 0;
  for (const SseItem& item : items) {
    if (item.id.empty()) continue;
    EXPECT_GT(std::stoll(item.id), last);
    last = std::stoll(item.id);
  }
  EXPECT_EQ(items.back().id, absl::StrCat(last));

  // Committed on its branch and pushed, from main.
  EXPECT_EQ(Origin("rev-parse refs/heads/" + branch), sha);
  EXPECT_EQ(Origin(absl::StrCat("show ", sha, ":errors.txt")), "handled");
  // The credentials it was given appear nowhere the user or an operator reads.
  for (const SseItem& item : items) {
    EXPECT_THAT(item.data, Not(HasSubstr(kOauthToken)));
    EXPECT_THAT(item.data, Not(HasSubstr(kGitToken)));
  }
  for (const std::string& log : {mesh_.gateway().Log(), runner.Log()}) {
    EXPECT_THAT(log, Not(HasSubstr(kOauthToken)));
    EXPECT_THAT(log, Not(HasSubstr(kGitToken)));
  }
  HttpResult session = Call("GET", "/sessions/" + session_id, key_);
  ASSERT_EQ(session.status, 200) << session.body;
  EXPECT_THAT(session.body, Not(HasSubstr(kOauthToken)));
  EXPECT_THAT(session.body, Not(HasSubstr(kGitToken)));
}

TEST_F(SeedApiTest, ExecuteWithSeed004sBodyRunsInTheCallersOnlyWorkspace) {
  fake_.Script("KEY-004", {FakeTurn::Reply({FakeBlock::Text("def hello(): print('hello world')")})});
  StartClaudeRunner("laptop");
  // 004's quick example, word for word but the key word for the fake model.
  auto stream = Post("/execute",
                     absl::StrCat(R"({"userRequest": "KEY-004 Create a hello world function",)"
                                  R"("codingAssistantProvider": "claude-code",)"
                                  R"("codingAssistantAccessToken": ")",
                                  kPlainKey, R"("})"),
                     key_);
  ASSERT_THAT(stream, IsOk());
  ASSERT_EQ((*stream)->status(), 200) << (*stream)->body();
  const std::vector<SseItem> items = ReadUntil(**stream, {"completed", "error"});
  const std::vector<std::string> names = Names(items);
  EXPECT_TRUE(InOrder(names, {"connected", "session_name", "message", "github_pull_progress",
                              "assistant_message", "completed"}))
      << ::testing::PrintToString(names);
  EXPECT_THAT(names, Not(Contains("commit_progress"))) << "no autoCommit";
  EXPECT_EQ(Str(Json(items[0].data), "workspaceId"), workspace_id_);
  bool answered = false;
  for (const SseItem& item : items) {
    answered |= item.event == "assistant_message" &&
                Str(Json(item.data), "content") == "def hello(): print('hello world')";
    EXPECT_THAT(item.data, Not(HasSubstr(kPlainKey)));
  }
  EXPECT_TRUE(answered);
  EXPECT_TRUE(Ended(**stream));
}

TEST_F(SeedApiTest, SessionsListTheCallersAndAContinuedSessionResumesTheAgentAndKeepsItsHistory) {
  fake_.Script("KEY-SES", {FakeTurn::Reply({FakeBlock::Text("part one done")}),
                           FakeTurn::Reply({FakeBlock::Text("part two done")})});
  StartClaudeRunner("laptop");
  auto first = Post("/execute",
                    R"({"userRequest":"KEY-SES part one","codingAssistantProvider":"claude-code"})",
                    key_);
  ASSERT_THAT(first, IsOk());
  const std::vector<SseItem> one = ReadUntil(**first, {"completed", "error"});
  ASSERT_EQ(one.back().event, "completed") << ::testing::PrintToString(Names(one));
  const std::string session_id = Str(Json(one[0].data), "sessionId");
  const std::string first_task = Str(Json(one[0].data), "taskId");

  HttpResult list = Call("GET", "/sessions", key_);
  ASSERT_EQ(list.status, 200) << list.body;
  const Struct listed = Json(list.body);
  ASSERT_EQ(listed.fields().at("sessions").list_value().values_size(), 1) << list.body;
  const Struct summary = listed.fields().at("sessions").list_value().values(0).struct_value();
  EXPECT_EQ(Str(summary, "sessionId"), session_id);
  EXPECT_EQ(Str(summary, "status"), "completed");
  EXPECT_EQ(Str(summary, "sessionName"), "KEY-SES part one");

  // 003 continues with websiteSessionId (004 says resumeSessionId).
  auto second = Post("/execute",
                     absl::StrCat(R"({"userRequest":"now part two","codingAssistantProvider":)"
                                  R"("ClaudeAgentSDK","websiteSessionId":")",
                                  session_id, R"("})"),
                     key_);
  ASSERT_THAT(second, IsOk());
  ASSERT_EQ((*second)->status(), 200) << (*second)->body();
  const std::vector<SseItem> two = ReadUntil(**second, {"completed", "error"});
  ASSERT_EQ(two.back().event, "completed") << ::testing::PrintToString(Names(two));
  EXPECT_EQ(Str(Json(two[0].data), "sessionId"), session_id);
  const std::string second_task = Str(Json(two[0].data), "taskId");
  EXPECT_NE(second_task, first_task);
  // The agent went on with the same conversation.
  std::vector<testing::FakeModelServer::Request> requests;
  for (const auto& r : fake_.requests()) {
    if (r.key == "KEY-SES" && r.path == "/v1/messages") requests.push_back(r);
  }
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].assistant_messages, 1) << "the history came along";
  EXPECT_EQ(requests[1].session_id, requests[0].session_id);

  HttpResult got = Call("GET", "/sessions/" + session_id, key_);
  ASSERT_EQ(got.status, 200) << got.body;
  const Struct session = Json(got.body);
  const auto& tasks = session.fields().at("tasks").list_value();
  ASSERT_EQ(tasks.values_size(), 2) << got.body;
  EXPECT_EQ(Str(tasks.values(0).struct_value(), "id"), first_task);
  EXPECT_EQ(Str(tasks.values(1).struct_value(), "resumeFrom"), first_task);
  EXPECT_EQ(Str(tasks.values(1).struct_value(), "workBranch"),
            Str(tasks.values(0).struct_value(), "workBranch"));
  EXPECT_EQ(Str(session, "latestTaskId"), second_task);

  // The history: both parts, then the end.
  auto history = Get("/sessions/" + session_id + "/stream", key_);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ((*history)->status(), 200) << (*history)->body();
  std::vector<SseItem> all = ReadUntil(**history, {});
  const std::vector<std::string> names = Names(all);
  EXPECT_EQ(std::count(names.begin(), names.end(), "completed"), 2)
      << ::testing::PrintToString(names);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(names.front(), "connected");
  EXPECT_EQ(names.back(), "completed");
  // Resumed after the first part's end: exactly what followed it.
  size_t first_end = 0;
  while (first_end < all.size() && all[first_end].event != "completed") ++first_end;
  ASSERT_LT(first_end, all.size());
  auto resumed = Get("/sessions/" + session_id + "/stream", key_, all[first_end].id);
  ASSERT_THAT(resumed, IsOk());
  std::vector<SseItem> rest = ReadUntil(**resumed, {});
  ASSERT_EQ(rest.size(), all.size() - first_end - 1) << ::testing::PrintToString(Names(rest));
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i].id, all[first_end + 1 + i].id);
    EXPECT_EQ(rest[i].event, all[first_end + 1 + i].event);
  }

  // Another account sees none of it.
  Setup other = Stranger();
  HttpResult theirs = Call("GET", "/sessions", other.api_key);
  ASSERT_EQ(theirs.status, 200);
  EXPECT_THAT(theirs.body, Not(HasSubstr(session_id)));
  EXPECT_EQ(Call("GET", "/sessions/" + session_id, other.api_key).status, 404);
  auto stolen = Get("/sessions/" + session_id + "/stream", other.api_key);
  ASSERT_THAT(stolen, IsOk());
  EXPECT_EQ((*stolen)->status(), 404);
  auto hijack = Post("/execute",
                     absl::StrCat(R"({"userRequest":"x","codingAssistantProvider":"claude-code",)"
                                  R"("resumeSessionId":")",
                                  session_id, R"("})"),
                     other.api_key);
  ASSERT_THAT(hijack, IsOk());
  EXPECT_EQ((*hijack)->status(), 404) << (*hijack)->body();
  EXPECT_THAT((*hijack)->body(), HasSubstr("websiteSessionId"));
}

TEST_F(SeedApiTest, StatusIsIdleWithAFreeSlotAndBusyWith429WhenEveryOneIsTaken) {
  EXPECT_EQ(Call("GET", "/status", "").status, 401);
  HttpResult none = Call("GET", "/status", key_);
  EXPECT_EQ(none.status, 503) << none.body;
  StartClaudeRunner("solo", {"--max_tasks=1"});
  HttpResult idle = Call("GET", "/status", key_);
  ASSERT_EQ(idle.status, 200) << idle.body;
  EXPECT_EQ(Str(Json(idle.body), "status"), "idle");
  EXPECT_EQ(Num(Json(idle.body), "slots"), 1);

  const std::string task = CreateTask(key_, workspace_id_, "sleep 60");
  WaitForTaskState(task, "running");
  // What /status counts, as the dashboard reads it: BrokerService.ListRunners.
  auto stub = v1::BrokerService::NewStub(
      grpc::CreateChannel(mesh_.broker_addr(), grpc::InsecureChannelCredentials()));
  auto list_runners = [&](const std::string& key) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + key);
    v1::ListRunnersResponse runners;
    EXPECT_TRUE(stub->ListRunners(&context, v1::ListRunnersRequest(), &runners).ok());
    return runners;
  };
  const v1::ListRunnersResponse mine = list_runners(key_);
  ASSERT_EQ(mine.runners_size(), 1) << mine.DebugString();
  const v1::RunnerInfo& solo = mine.runners(0);
  EXPECT_EQ(solo.name(), "solo");
  EXPECT_EQ(solo.account_id(), account_id_);
  EXPECT_EQ(solo.max_tasks(), 1);
  EXPECT_EQ(solo.active_workers(), 1);
  EXPECT_FALSE(solo.draining());
  EXPECT_FALSE(solo.connected_at().empty());
  bool has_claude = false;
  for (const auto& c : solo.capabilities()) has_claude |= c.name() == "claude" && !c.version().empty();
  EXPECT_TRUE(has_claude) << solo.DebugString();
  EXPECT_EQ(list_runners(mesh_.admin_key()).runners_size(), 1) << "an admin sees every runner";
  HttpResult busy = Call("GET", "/status", key_);
  EXPECT_EQ(busy.status, 429) << busy.body;
  EXPECT_EQ(Str(Json(busy.body), "status"), "busy");
  EXPECT_EQ(Num(Json(busy.body), "activeWorkers"), 1);
  // Another account's runners are not this one's: it has none.
  Setup other = Stranger();
  EXPECT_EQ(Call("GET", "/status", other.api_key).status, 503);
  EXPECT_EQ(list_runners(other.api_key).runners_size(), 0);

  ASSERT_EQ(Call("POST", "/api/tasks/" + task + "/cancel", key_).status, 200);
  WaitForTaskState(task, "canceled");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  HttpResult again;
  do {
    again = Call("GET", "/status", key_);
    if (again.status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(Str(Json(again.body), "status"), "idle");
}

TEST_F(SeedApiTest, TriggerPlansWaitsForApprovalCodesAndCompletesOnItsBranchStreamedResumably) {
  fake_.Script("KEY-WF",
               {FakeTurn::Reply({FakeBlock::Text("Plan: write feature.txt.")}),
                FakeTurn::Reply({FakeBlock::ToolUse(
                    "Write", R"({"file_path":"feature.txt","content":"feature\n"})")}),
                FakeTurn::Reply({FakeBlock::Text("Wrote feature.txt.")})});
  fake_.Script("KEY-NEXT", {FakeTurn::Reply({FakeBlock::Text("Plan: nothing more.")})});
  StartClaudeRunner("laptop", {"--max_tasks=2"});
  const std::string stream_path = absl::StrCat("/stream/", workspace_id_, "/feature-x");
  auto stream = Get(stream_path, key_);
  ASSERT_THAT(stream, IsOk());
  ASSERT_EQ((*stream)->status(), 200) << (*stream)->body();
  // 002's spellings of the workspace and branch.
  HttpResult trigger = Call("POST", "/trigger", key_,
                            absl::StrCat(R"({"projectId":")", workspace_id_,
                                         R"(","branchId":"feature-x","message":"KEY-WF add a feature","push":true})"));
  ASSERT_EQ(trigger.status, 202) << trigger.body;
  const std::string workflow = Str(Json(trigger.body), "workflowId");
  EXPECT_FALSE(Json(trigger.body).fields().at("queued").bool_value());

  std::vector<SseItem> items = ReadUntil(**stream, {"plan"});
  ASSERT_EQ(items.back().event, "plan");
  EXPECT_EQ(Str(Json(items.back().data), "plan"), "Plan: write feature.txt.");
  EXPECT_EQ(Str(Json(items.back().data), "workflowId"), workflow);
  const std::string worker = WorkerOf(workflow);
  WaitForTaskState(workflow, "waiting_input");

  // One active workflow per branch: the next one waits its turn.
  HttpResult next = Call("POST", "/trigger", key_,
                         absl::StrCat(R"({"workspaceId":")", workspace_id_,
                                      R"(","branch":"feature-x","message":"KEY-NEXT more"})"));
  ASSERT_EQ(next.status, 202) << next.body;
  EXPECT_TRUE(Json(next.body).fields().at("queued").bool_value()) << next.body;
  EXPECT_EQ(Str(Json(next.body), "queuedBehind"), workflow);
  const std::string next_id = Str(Json(next.body), "workflowId");

  HttpResult approve = Call("POST", "/api/workers/" + worker + "/input", key_, R"({"approve":true})");
  ASSERT_EQ(approve.status, 200) << approve.body;
  for (const SseItem& item : ReadUntil(**stream, {"status"})) items.push_back(item);
  std::vector<SseItem> more;
  while (Statuses(items).empty() || Statuses(items).back() != "complete") {
    more = ReadUntil(**stream, {"status"});
    if (more.empty()) break;
    for (const SseItem& item : more) {
      if (Str(Json(item.data), "workflowId") == workflow) items.push_back(item);
    }
  }
  // Only the first workflow's messages so far (the next one had not started).
  std::vector<SseItem> first;
  for (const SseItem& item : items) {
    if (Str(Json(item.data), "workflowId") == workflow) first.push_back(item);
  }
  EXPECT_THAT(Statuses(first), ElementsAre("pending", "planning", "coding", "complete"))
      << ::testing::PrintToString(Names(first));
  EXPECT_THAT(Names(first), Contains("message"));
  const Struct task = Obj(WaitForTaskState(workflow, "completed"), "task");
  EXPECT_EQ(Str(task, "workBranch"), "feature-x");
  EXPECT_THAT(Str(Obj(task, "artifacts"), "diffStat"), HasSubstr("feature.txt"));

  // Resumed from the middle, by header and by query: exactly the rest of
  // the first workflow, no duplicate and no gap.
  const size_t middle = first.size() / 2;
  for (int by_query = 0; by_query < 2; ++by_query) {
    auto resumed = by_query ? Get(absl::StrCat(stream_path, "?lastEventId=", first[middle].id), key_)
                            : Get(stream_path, key_, first[middle].id);
    ASSERT_THAT(resumed, IsOk());
    ASSERT_EQ((*resumed)->status(), 200);
    std::vector<SseItem> rest;
    while (rest.size() < first.size() - middle - 1) {
      auto item = (*resumed)->NextEvent(absl::Seconds(20));
      ASSERT_THAT(item, IsOk());
      if (Str(Json(item->data), "workflowId") == workflow) rest.push_back(*item);
    }
    for (size_t i = 0; i < rest.size(); ++i) {
      EXPECT_EQ(rest[i].id, first[middle + 1 + i].id) << "by_query=" << by_query;
      EXPECT_EQ(rest[i].event, first[middle + 1 + i].event);
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
          Json(rest[i].data), Json(first[middle + 1 + i].data)))
          << rest[i].data << " vs " << first[middle + 1 + i].data;
    }
  }

  // GET /api/events?branch= has the branch's tasks only.
  const std::string other_branch =
      CreateTask(key_, workspace_id_, "echo elsewhere", R"(,"workBranch":"other-y")");
  WaitForTaskState(other_branch, "completed");
  auto events = Get(absl::StrCat("/api/events?workspaceId=", workspace_id_, "&branch=feature-x"), key_);
  ASSERT_THAT(events, IsOk());
  ASSERT_EQ((*events)->status(), 200) << (*events)->body();
  std::set<std::string> tasks_seen;
  while (true) {
    auto item = (*events)->NextEvent(absl::Seconds(3));
    if (!item.ok()) break;
    tasks_seen.insert(Str(Json(item->data), "taskId"));
    if (item->event == "completed" && Str(Json(item->data), "taskId") == workflow) break;
  }
  EXPECT_THAT(tasks_seen, Contains(workflow));
  EXPECT_THAT(tasks_seen, Not(Contains(other_branch)));

  // The queued workflow ran once the first was complete.
  const std::string next_worker = WorkerOf(next_id);
  WaitForTaskState(next_id, "waiting_input");
  ASSERT_EQ(Call("POST", "/api/tasks/" + next_id + "/cancel", key_).status, 200);
  WaitForTaskState(next_id, "canceled");

  // POST /revert in 002's shape undoes the workflow's commit on the branch.
  const std::string sha = Str(Obj(task, "artifacts"), "commitSha");
  ASSERT_EQ(sha.size(), 40u);
  HttpResult revert = Call("POST", "/revert", key_,
                           absl::StrCat(R"({"projectId":")", workspace_id_,
                                        R"(","branchId":"feature-x","commit":")", sha, R"("})"));
  ASSERT_EQ(revert.status, 202) << revert.body;
  const Struct reverted = Obj(WaitForTaskState(Str(Json(revert.body), "id"), "completed"), "task");
  EXPECT_EQ(Origin(absl::StrCat("rev-parse ", Str(Obj(reverted, "artifacts"), "commitSha"), "^")),
            sha);
}

TEST_F(SeedApiTest, AWorkflowCodingWhenTheBrokerRestartsResumesAndCompletes) {
  fake_.Script("KEY-RC",
               {FakeTurn::Reply({FakeBlock::Text("Plan: write survived.txt.")}),
                FakeTurn::Reply({FakeBlock::ToolUse(
                                    "Write", R"({"file_path":"survived.txt","content":"yes\n"})")})
                    .HeldAt("gate-rc"),
                FakeTurn::Reply({FakeBlock::Text("Wrote survived.txt.")})});
  StartClaudeRunner("laptop");
  const std::string stream_path = absl::StrCat("/stream/", workspace_id_, "/recover-z");
  auto stream = Get(stream_path, key_);
  ASSERT_THAT(stream, IsOk());
  std::vector<SseItem> items;
  const std::string workflow = CodeUntilGate(**stream, "recover-z", "KEY-RC go", "gate-rc", &items);
  ASSERT_FALSE(HasFailure());

  mesh_.RestartBroker();
  // The gateway's stream ends with the broker; the client reconnects from
  // where it was, as an EventSource does.
  for (const SseItem& item : ReadUntil(**stream, {})) items.push_back(item);
  fake_.Release("gate-rc");
  std::unique_ptr<SseStream> again;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    auto opened = Get(stream_path, key_, items.back().id);
    if (opened.ok() && (*opened)->status() == 200) {
      again = *std::move(opened);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(again, nullptr) << "the stream did not come back";
  while (Statuses(items).back() != "complete" && Statuses(items).back() != "failed") {
    std::vector<SseItem> more = ReadUntil(*again, {"status"}, absl::Seconds(90));
    if (more.empty()) break;
    for (const SseItem& item : more) items.push_back(item);
  }
  EXPECT_THAT(Statuses(items), ElementsAre("pending", "planning", "coding", "complete"))
      << ::testing::PrintToString(Names(items));
  std::set<std::string> ids;
  for (const SseItem& item : items) EXPECT_TRUE(ids.insert(item.id).second) << "twice: " << item.id;
  const Struct task = Obj(WaitForTaskState(workflow, "completed"), "task");
  EXPECT_EQ(Num(task, "attempts"), 1) << "the same attempt went on";
  EXPECT_THAT(Str(Obj(task, "artifacts"), "diffStat"), HasSubstr("survived.txt"));
}

TEST_F(SeedApiTest, IntegrationsInstallQueuesEachOnTheBranchAndATriggerAfterThemWaits) {
  fake_.Script("KEY-AUTH", {FakeTurn::Reply({FakeBlock::ToolUse(
                                "Write", R"({"file_path":"auth.ts","content":"export const auth = 1;\n"})")}),
                            FakeTurn::Reply({FakeBlock::Text("Installed the auth kit.")})});
  fake_.Script("KEY-DB", {FakeTurn::Reply({FakeBlock::ToolUse(
                              "Write", R"({"file_path":"db.ts","content":"export const db = 1;\n"})")}),
                          FakeTurn::Reply({FakeBlock::Text("Installed the database kit.")})});
  const std::string stream_path = absl::StrCat("/stream/", workspace_id_, "/kits");
  auto stream = Get(stream_path, key_);
  ASSERT_THAT(stream, IsOk());
  // Queued before any runner is there: each waits for the one before it.
  HttpResult install = Call(
      "POST", "/integrations/install", key_,
      absl::StrCat(R"({"projectId":")", workspace_id_, R"(","branchId":"kits","push":true,)"
                   R"("integrations":[{"key":"better-auth","category":"authentication",)"
                   R"("options":{"marker":"KEY-AUTH"}},)"
                   R"({"key":"drizzle","category":"database","name":"Drizzle ORM",)"
                   R"("options":{"marker":"KEY-DB"}}]})"));
  ASSERT_EQ(install.status, 202) << install.body;
  const Struct answer = Json(install.body);
  const auto& installs = answer.fields().at("installs").list_value().values();
  ASSERT_EQ(installs.size(), 2);
  const Struct auth = installs[0].struct_value(), db = installs[1].struct_value();
  EXPECT_EQ(Str(auth, "key"), "better-auth");
  EXPECT_FALSE(auth.fields().at("queued").bool_value());
  EXPECT_EQ(Str(db, "key"), "drizzle");
  EXPECT_TRUE(db.fields().at("queued").bool_value());
  EXPECT_EQ(Str(db, "queuedBehind"), Str(auth, "taskId"));
  const Struct auth_task = Obj(Json(Call("GET", "/api/tasks/" + Str(auth, "taskId"), key_).body), "task");
  EXPECT_EQ(Str(auth_task, "kind"), "integration");
  EXPECT_EQ(Str(auth_task, "workBranch"), "kits");
  EXPECT_THAT(Str(auth_task, "prompt"), HasSubstr(R"(authentication integration "better-auth")"));
  // A workflow triggered now waits for both.
  HttpResult trigger = Call("POST", "/trigger", key_,
                            absl::StrCat(R"({"workspaceId":")", workspace_id_,
                                         R"(","branch":"kits","message":"KEY-AFTER use them"})"));
  ASSERT_EQ(trigger.status, 202) << trigger.body;
  EXPECT_TRUE(Json(trigger.body).fields().at("queued").bool_value());
  const std::string workflow = Str(Json(trigger.body), "workflowId");

  StartClaudeRunner("laptop", {"--max_tasks=3"});
  WaitForTaskState(Str(db, "taskId"), "completed");
  std::vector<SseItem> items;
  while (true) {
    std::vector<SseItem> more = ReadUntil(**stream, {"status"});
    ASSERT_FALSE(more.empty());
    items.insert(items.end(), more.begin(), more.end());
    if (Str(Json(items.back().data), "workflowId") == Str(db, "taskId") &&
        Str(Json(items.back().data), "status") == "complete") {
      break;
    }
  }
  // One after the other, on the branch's stream.
  std::vector<std::string> seen;
  for (const SseItem& item : items) {
    if (item.event != "status") continue;
    const std::string id = Str(Json(item.data), "workflowId");
    const std::string who = id == Str(auth, "taskId") ? "auth" : id == Str(db, "taskId") ? "db" : "trigger";
    if (Str(Json(item.data), "status") != "pending") seen.push_back(who + ":" + Str(Json(item.data), "status"));
  }
  EXPECT_THAT(seen, ElementsAre("auth:installing", "auth:complete", "db:installing", "db:complete"));
  EXPECT_THAT(Origin("show kits:auth.ts"), HasSubstr("export const auth = 1;"));
  EXPECT_THAT(Origin("show kits:db.ts"), HasSubstr("export const db = 1;"));
  // The workflow went after them.
  WaitForTaskState(workflow, "waiting_input");
  ASSERT_EQ(Call("POST", "/api/tasks/" + workflow + "/cancel", key_).status, 200);

  // Refusals name the field; nothing is queued by a refused body.
  const std::string base = absl::StrCat(R"({"workspaceId":")", workspace_id_, R"(","branch":"kits",)");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {base + R"("integrations":[]})", "integrations is required"},
      {base + R"("integrations":{"key":"x"}})", "integrations (expected a list of objects)"},
      {base + R"("integrations":["x"]})", "integrations[0] (expected an object)"},
      {base + R"("integrations":[{"category":"database"}]})", "integrations[0].key is required"},
      {base + R"("integrations":[{"key":"a b"}]})", "integrations[0].key"},
      {base + R"("integrations":[{"key":"a"},{"key":"a"}]})", "listed twice"},
      {base + R"("integrations":[{"key":"a","category":"payments"}]})", "integrations[0].category"},
      {base + R"("integrations":[{"key":"a","version":"2"}]})", "integrations[0].version"},
      {base + R"("integrations":[{"key":"a"}],"color":"red"})", "color"},
      {R"({"branch":"kits","integrations":[{"key":"a"}]})", "workspaceId is required"},
  };
  const size_t before = Json(Call("GET", "/api/tasks?limit=1000", key_).body)
                            .fields().at("tasks").list_value().values_size();
  for (const auto& [body, message] : bad) {
    HttpResult refused = Call("POST", "/integrations/install", key_, body);
    EXPECT_EQ(refused.status, 400) << body;
    EXPECT_THAT(refused.body, HasSubstr(message)) << body;
  }
  std::string many = base + R"("integrations":[)";
  for (int i = 0; i < 21; ++i) absl::StrAppend(&many, i ? "," : "", R"({"key":"k)", i, R"("})");
  HttpResult too_many = Call("POST", "/integrations/install", key_, many + "]}");
  EXPECT_EQ(too_many.status, 400);
  EXPECT_THAT(too_many.body, HasSubstr("more than 20"));
  EXPECT_EQ(Json(Call("GET", "/api/tasks?limit=1000", key_).body)
                .fields().at("tasks").list_value().values_size(),
            before);
  EXPECT_EQ(Call("POST", "/integrations/install", "", base + R"("integrations":[{"key":"a"}]})").status, 401);
  // Another account may not install on this workspace, and learns nothing of it.
  Setup other = CreateAccountAndWorkspace("service", true, true);
  HttpResult theirs = Call("POST", "/integrations/install", other.api_key, base + R"("integrations":[{"key":"a"}]})");
  EXPECT_THAT(theirs.status, ::testing::AnyOf(403, 404)) << theirs.body;
  EXPECT_EQ(Json(Call("GET", "/api/tasks?limit=1000", key_).body)
                .fields().at("tasks").list_value().values_size(),
            before);
}

// A runner process that dies loses its workers once this grace is over.
class SeedApiRunnerLossTest : public SeedApiTest {
 protected:
  SeedApiRunnerLossTest() : SeedApiTest(ShortGrace()) {}
  static Mesh::Options ShortGrace() {
    Mesh::Options options;
    options.lease_grace_ms = 1500;
    return options;
  }
};

TEST_F(SeedApiRunnerLossTest, AWorkflowCodingWhenItsRunnerRestartsCodesOnFromTheApprovedPlan) {
  fake_.Script("KEY-RR",
               {FakeTurn::Reply({FakeBlock::Text("Plan: write kept.txt.")}),
                FakeTurn::Reply({FakeBlock::ToolUse(
                                    "Write", R"({"file_path":"kept.txt","content":"kept\n"})")})
                    .HeldAt("gate-rr"),
                FakeTurn::Reply({FakeBlock::Text("Wrote kept.txt.")})});
  testing::Process& first = StartClaudeRunner("laptop");
  const std::string stream_path = absl::StrCat("/stream/", workspace_id_, "/restart-r");
  auto stream = Get(stream_path, key_);
  ASSERT_THAT(stream, IsOk());
  std::vector<SseItem> items;
  const std::string workflow = CodeUntilGate(**stream, "restart-r", "KEY-RR go", "gate-rr", &items);
  ASSERT_FALSE(HasFailure());

  // The runner process dies in the middle of coding and comes back: its
  // worker is lost, and the next attempt codes on from the approved plan.
  first.Stop(SIGKILL, 5000);
  StartClaudeRunner("laptop");
  fake_.Release("gate-rr");
  while (Statuses(items).back() != "complete" && Statuses(items).back() != "failed") {
    std::vector<SseItem> more = ReadUntil(**stream, {"status"}, absl::Seconds(90));
    if (more.empty()) break;
    for (const SseItem& item : more) {
      if (Str(Json(item.data), "workflowId") == workflow) items.push_back(item);
    }
  }
  EXPECT_THAT(Statuses(items), ElementsAre("pending", "planning", "coding", "pending", "coding", "complete"))
      << ::testing::PrintToString(Names(items));
  EXPECT_THAT(Names(items), Not(Contains("error")));
  const Struct task = Obj(WaitForTaskState(workflow, "completed"), "task");
  EXPECT_EQ(Num(task, "attempts"), 2);
  EXPECT_EQ(Str(Obj(task, "artifacts"), "plan"), "Plan: write kept.txt.");
  EXPECT_THAT(Str(Obj(task, "artifacts"), "diffStat"), HasSubstr("kept.txt"));
  // Planned once: the second attempt asked the model to go on with the
  // approved plan's conversation, never for a new plan.
  int plans = 0, continued = 0;
  for (const auto& r : fake_.requests()) {
    if (r.key != "KEY-RR") continue;
    if (r.assistant_messages == 0) ++plans;
    if (r.assistant_messages == 1) ++continued;
  }
  EXPECT_EQ(plans, 1);
  EXPECT_EQ(continued, 2) << "the lost attempt's coding turn, and the next attempt's";
}

TEST_F(SeedApiTest, RefusalsNameTheFieldAndHideOtherAccounts) {
  struct Case {
    std::string path, body;
    int status;
    std::string says;
  };
  Setup other = Stranger();
  const std::string provider = R"("codingAssistantProvider":"claude-code")";
  for (const Case& c : std::vector<Case>{
           {"/execute", absl::StrCat("{", provider, "}"), 400, "userRequest is required"},
           {"/execute", R"({"userRequest":"x"})", 400, "codingAssistantProvider is required"},
           {"/execute", R"({"userRequest":"x","codingAssistantProvider":"cursor"})", 400,
            "codingAssistantProvider (expected claude-code, ClaudeAgentSDK, codex or CodexSDK)"},
           {"/execute", absl::StrCat(R"({"userRequest":"x",)", provider, R"(,"bogus":1})"), 400,
            "bogus"},
           {"/execute", absl::StrCat(R"({"userRequest":"x",)", provider, R"(,"autoCommit":"yes"})"),
            400, "autoCommit"},
           {"/execute",
            absl::StrCat(R"({"userRequest":"x",)", provider,
                         R"(,"github":{"repoUrl":"https://github.com/user/repo.git"}})"),
            404, "github.repoUrl"},
           {"/execute",
            absl::StrCat(R"({"userRequest":"x",)", provider, R"(,"workspace":")",
                         other.workspace_id, R"("})"),
            404, "field workspace"},
           {"/execute",
            absl::StrCat(R"({"userRequest":"x",)", provider,
                         R"(,"codingAssistantAuthentication":"{\"claudeAiOauth\":{}}"})"),
            400, "claudeAiOauth.accessToken"},
           {"/execute",
            absl::StrCat(R"({"userRequest":"x",)", provider, R"(,"websiteSessionId":"nope"})"), 400,
            "websiteSessionId"},
           {"/trigger", absl::StrCat(R"({"projectId":")", workspace_id_, R"(","message":"x"})"), 400,
            "branch is required"},
           {"/trigger", absl::StrCat(R"({"projectId":")", workspace_id_, R"(","branchId":"a b","message":"x"})"),
            400, "workBranch"},
           {"/trigger", R"({"projectId":"p1","branchId":"b","message":"x"})", 400, "workspaceId"},
           {"/trigger",
            absl::StrCat(R"({"projectId":")", other.workspace_id, R"(","branchId":"b","message":"x"})"),
            403, "canCreate"},
           {"/revert", absl::StrCat(R"({"projectId":")", workspace_id_, R"(","commit":"abcdef1"})"), 400,
            "branch is required"},
       }) {
    HttpResult r = Call("POST", c.path, key_, c.body);
    EXPECT_EQ(r.status, c.status) << c.path << " " << c.body << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr(c.says)) << c.path << " " << c.body;
    EXPECT_EQ(Call("POST", c.path, "", c.body).status, 401) << c.path << " without a key";
  }
  for (const char* path : {"/sessions", "/status", "/sessions/00000000-0000-4000-8000-000000000000"}) {
    EXPECT_EQ(Call("GET", path, "").status, 401) << path;
  }
  EXPECT_EQ(Call("GET", "/sessions/00000000-0000-4000-8000-000000000000", key_).status, 404);
  // Another account's branch stream, and a bad resume point.
  auto theirs = Get(absl::StrCat("/stream/", other.workspace_id, "/main"), key_);
  ASSERT_THAT(theirs, IsOk());
  EXPECT_EQ((*theirs)->status(), 404) << (*theirs)->body();
  auto bad = Get(absl::StrCat("/stream/", workspace_id_, "/main"), key_, "soon");
  ASSERT_THAT(bad, IsOk());
  EXPECT_EQ((*bad)->status(), 400);
  EXPECT_THAT((*bad)->body(), HasSubstr("Last-Event-ID"));
  auto nokey = SseStream::Open(mesh_.gateway_url(), absl::StrCat("/stream/", workspace_id_, "/main"));
  ASSERT_THAT(nokey, IsOk());
  EXPECT_EQ((*nokey)->status(), 401);
}

}  // namespace
}  // namespace buildd
