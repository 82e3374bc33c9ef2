// Coding agents end to end: the real binaries, the real Claude Code and
// Codex CLIs (installed by ./buildd test) talking to a scripted Messages API
// and Responses API on loopback, real git with a bare repository reached by
// file://, driven through the gateway's REST API and SSE stream.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <soci/soci.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/db.h"
#include "services/runner/process_group.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/fake_anthropic.h"
#include "tests/testing/files.h"
#include "tests/testing/fake_openai.h"
#include "tests/testing/matchers.h"

namespace buildd {
namespace {

namespace fs = std::filesystem;
using ::buildd::testing::CodexAddFile;
using ::buildd::testing::CodexShell;
using ::buildd::testing::FakeAnthropic;
using ::buildd::testing::FakeBlock;
using ::buildd::testing::FakeOpenAI;
using ::buildd::testing::FakeTurn;
using ::buildd::testing::IsOk;
using ::buildd::testing::ReadFile;
using ::buildd::testing::Sh;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAuthor[] = "Buildd Test <bot@buildd.test>";
// The account's provider key: sealed by accounts, handed to its runners'
// agents only.
constexpr char kAccountApiKey[] = "sk-ant-api03-account-secret-e2e";
constexpr char kAccountOpenAiKey[] = "sk-proj-account-secret-e2e";

struct ProcessState {
  char state = '?';  // as in /proc/<pid>/stat: 'T' stopped, 'D' uninterruptible wait
  pid_t ppid = 0;
  std::string name;
};

std::ostream& operator<<(std::ostream& out, const ProcessState& p) {
  return out << p.state << " ppid " << p.ppid << " " << p.name;
}

// Every process whose working directory is `dir`, by pid.
std::map<pid_t, ProcessState> ProcessesIn(const std::string& dir) {
  std::map<pid_t, ProcessState> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const fs::path cwd = fs::read_symlink(entry.path() / "cwd", ec);
    if (ec || cwd.string() != dir) continue;
    const std::string stat = ReadFile(entry.path().string() + "/stat");
    const size_t open = stat.find('(');
    const size_t paren = stat.rfind(')');
    if (open == std::string::npos || paren == std::string::npos || paren + 2 >= stat.size()) {
      continue;
    }
    // After the name: state, ppid.
    std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
    if (fields.size() < 2 || fields[0].empty()) continue;
    out[std::stoi(name)] = {fields[0][0], std::stoi(fields[1]),
                            stat.substr(open + 1, paren - open - 1)};
  }
  return out;
}

// Whether a process of `all` cannot run: stopped, or a parent in
// uninterruptible wait for a stopped child (vfork waits until its child
// execs, and a child stopped before exec keeps its parent in 'D').
bool CannotRun(pid_t pid, const std::map<pid_t, ProcessState>& all) {
  const ProcessState& p = all.at(pid);
  if (p.state == 'T') return true;
  if (p.state != 'D') return false;
  for (const auto& [child, c] : all) {
    if (c.ppid == pid && c.state == 'T') return true;
  }
  return false;
}

// Waits until no process in `dir` can run (or, with stopped=false, every one
// can); returns what it saw last.
std::map<pid_t, ProcessState> WaitForProcessesIn(const std::string& dir, bool stopped) {
  std::map<pid_t, ProcessState> seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    seen = ProcessesIn(dir);
    bool all = !seen.empty();
    for (const auto& [pid, p] : seen) all &= CannotRun(pid, seen) == stopped;
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return seen;
}

std::vector<std::string> Types(const std::vector<SseItem>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.event);
  return out;
}

class AgentTest : public MeshTest {
 protected:
  void SetUp() override {
    // The worktrees belong to the task user; the test's own git reads them.
    setenv("GIT_CONFIG_COUNT", "1", 1);
    setenv("GIT_CONFIG_KEY_0", "safe.directory", 1);
    setenv("GIT_CONFIG_VALUE_0", "*", 1);
    // The repository the workspace points at: a bare one with a first
    // commit on main, reached by file://.
    origin_ = mesh_.dir() + "/origin.git";
    const std::string seed = mesh_.dir() + "/seed";
    Sh(absl::StrCat("git init -q --bare -b main ", origin_));
    Sh(absl::StrCat("git init -q -b main ", seed, " && cd ", seed,
                    " && echo '# demo' > README.md && git add README.md"
                    " && git -c user.name=Seed -c user.email=seed@x commit -q -m first"
                    " && git push -q ",
                    origin_, " main"));
    account_ = CreateAccountAndWorkspace(
        "service", true, true,
        absl::StrCat(R"(,"anthropicApiKey":")", kAccountApiKey, R"(","openaiApiKey":")",
                     kAccountOpenAiKey, R"(")"));
    HttpResult ws = Call("POST", "/api/workspaces", mesh_.admin_key(),
                         absl::StrCat(R"({"name":"repo","repoUrl":"file://)", origin_,
                                      R"(","defaultBranch":"main"})"));
    ASSERT_EQ(ws.status, 201) << ws.body;
    workspace_id_ = Str(Json(ws.body), "id");
    HttpResult grant =
        Call("POST", absl::StrCat("/api/accounts/", account_.account_id, "/workspaces"),
             mesh_.admin_key(),
             absl::StrCat(R"({"workspaceId":")", workspace_id_,
                          R"(","canClaim":true,"canCreate":true})"));
    ASSERT_EQ(grant.status, 200) << grant.body;
    auto live = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + workspace_id_,
                                {{"Authorization", "Bearer " + mesh_.admin_key()}});
    ASSERT_THAT(live, IsOk());
    events_ = *std::move(live);
  }

  // A runner with the real claude CLI (and no codex), its own Claude
  // configuration directory, talking to the fake API.
  testing::Process& StartClaudeRunner(const std::string& name,
                                      std::vector<std::string> extra = {},
                                      const std::string& claude = "",
                                      const std::string& api_key = "") {
    std::vector<std::string> args = {
        absl::StrCat("--claude=", claude.empty() ? testing::TestClaudeCli() : claude),
        "--codex=/nonexistent/codex", absl::StrCat("--claude_config_dir=", ClaudeDir(name)),
        absl::StrCat("--commit_author=", kAuthor), "--cancel_grace_ms=2000"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::map<std::string, std::string> env;
    for (const auto& [key, value] : fake_.ClaudeEnv()) env[key] = value;
    // The key comes from the runner's account, by way of the broker.
    env.erase("ANTHROPIC_API_KEY");
    args.push_back(TaskEnvFlag(env));
    return mesh_.StartRunner(api_key.empty() ? account_.api_key : api_key, name, args, env);
  }

  // A runner with the real codex CLI (and no claude), its own CODEX_HOME
  // configured for the fake Responses API.
  testing::Process& StartCodexRunner(const std::string& name) {
    EXPECT_THAT(openai_.WriteCodexConfig(CodexDir(name)), IsOk());
    std::vector<std::string> args = {
        absl::StrCat("--codex=", testing::TestCodexCli()), "--claude=/nonexistent/claude",
        absl::StrCat("--codex_home=", CodexDir(name)), absl::StrCat("--commit_author=", kAuthor),
        "--cancel_grace_ms=2000"};
    std::map<std::string, std::string> env;
    for (const auto& [key, value] : openai_.CodexEnv()) env[key] = value;
    // The key comes from the runner's account, by way of the broker.
    env.erase("OPENAI_API_KEY");
    args.push_back(TaskEnvFlag(env));
    return mesh_.StartRunner(account_.api_key, name, args, env);
  }

  // What reaches the sandboxed agents of the runner's environment: the
  // fake API's address and settings.
  static std::string TaskEnvFlag(const std::map<std::string, std::string>& env) {
    std::vector<std::string> names;
    for (const auto& [key, value] : env) names.push_back(key);
    return absl::StrCat("--task_env=", absl::StrJoin(names, ","));
  }

  std::string ClaudeDir(const std::string& runner) const {
    return absl::StrCat(mesh_.dir(), "/claude-", runner);
  }
  std::string CodexDir(const std::string& runner) const {
    return absl::StrCat(mesh_.dir(), "/codex-", runner);
  }
  std::string WorktreeOf(const std::string& runner, const std::string& task_id) const {
    return absl::StrCat(mesh_.dir(), "/", runner, "/git/worktrees/", task_id);
  }

  // POST /api/tasks with the fields in `fields` (JSON members, no braces).
  Struct CreateAgentTask(const std::string& fields, int want_status = 201) {
    HttpResult r = Call("POST", "/api/tasks", account_.api_key,
                        absl::StrCat(R"({"workspaceId":")", workspace_id_, R"(",)", fields, "}"));
    EXPECT_EQ(r.status, want_status) << r.body;
    return Json(r.body);
  }

  Struct WaitForWorkerState(const std::string& worker_id, const std::string& state,
                            int timeout_ms = 30000) {
    return WaitForJson(
        "/api/workers/" + worker_id, [&](const Struct& got) { return Str(got, "state") == state; },
        "state " + state, timeout_ms);
  }

  std::string WorkerOf(const std::string& task_id) {
    const Struct got = WaitForJson(
        "/api/tasks/" + task_id,
        [](const Struct& t) { return !Str(Obj(t, "task"), "workerId").empty(); }, "a worker",
        30000);
    return Str(Obj(got, "task"), "workerId");
  }

  // Reads the task's events up to its `plan` event, whose text must be
  // `plan`; waits until its worker waits for input, with `file` (in the
  // task's worktree on runner `runner`) not written by the planning pass.
  // The worker's id.
  std::string ExpectPlanThenWait(const std::string& task_id, const std::string& plan,
                                 const std::string& runner, const std::string& file) {
    std::vector<SseItem> events = ReadTaskEvents(*events_, task_id, {"plan", "error"});
    EXPECT_EQ(events.back().event, "plan") << ::testing::PrintToString(Types(events));
    if (events.back().event == "plan") {
      EXPECT_EQ(Str(Json(events.back().data), "text"), plan);
    }
    const std::string worker_id = WorkerOf(task_id);
    WaitForWorkerState(worker_id, "waiting_input");
    WaitForTaskState(task_id, "waiting_input");
    EXPECT_FALSE(fs::exists(WorktreeOf(runner, task_id) + "/" + file))
        << "the planning pass changes nothing";
    return worker_id;
  }

  // Reads the task's events up to its end, which must be `completed`; checks
  // that its artifacts carry `plan` and the change to `file` (in its worktree
  // on runner `runner`), which now holds `content`. The finished task.
  Struct ExpectPlannedWorkDone(const std::string& task_id, const std::string& plan,
                               const std::string& runner, const std::string& file,
                               const std::string& content) {
    std::vector<SseItem> events = ReadTaskEvents(*events_, task_id, {"completed", "error"});
    EXPECT_EQ(events.back().event, "completed") << ::testing::PrintToString(Types(events));
    const Struct task = Obj(WaitForTaskState(task_id, "completed"), "task");
    EXPECT_EQ(Str(Obj(task, "artifacts"), "plan"), plan);
    EXPECT_THAT(Str(Obj(task, "artifacts"), "diffStat"), HasSubstr(file));
    EXPECT_EQ(ReadFile(WorktreeOf(runner, task_id) + "/" + file), content);
    return task;
  }

  // Continues the finished task `done_one` (of `provider`) with a task that
  // resumes it ("now part two", autoCommit and push); the finished task.
  Struct ContinueTask(const Struct& done_one, const std::string& provider) {
    const Struct created = CreateAgentTask(absl::StrCat(R"("prompt":"now part two","resumeFrom":")",
                                                        Str(done_one, "id"),
                                                        R"(","autoCommit":true,"push":true)"));
    EXPECT_EQ(Str(created, "provider"), provider) << "taken from the earlier task";
    EXPECT_EQ(Str(created, "workBranch"), Str(done_one, "workBranch"));
    return Obj(WaitForTaskState(Str(created, "id"), "completed"), "task");
  }

  // The four model requests of a conversation in two parts, the second
  // resuming session `session_id`: the third carries the history.
  static void ExpectResumed(const std::vector<testing::FakeModelServer::Request>& requests,
                            const std::string& session_id) {
    ASSERT_EQ(requests.size(), 4u);
    EXPECT_EQ(requests[2].assistant_messages, 2) << "the history came along";
    EXPECT_EQ(requests[2].session_id, session_id);
    EXPECT_THAT(requests[2].body, HasSubstr("now part two"));
  }

  // `done_two` continued `done_one`'s branch at the remote: its commit sits
  // on the first one and holds both parts' files.
  void ExpectBranchContinued(const Struct& done_one, const Struct& done_two) {
    const std::string sha_one = Str(Obj(done_one, "artifacts"), "commitSha");
    const std::string sha_two = Str(Obj(done_two, "artifacts"), "commitSha");
    EXPECT_EQ(Origin("rev-parse refs/heads/" + Str(done_one, "workBranch")), sha_two);
    EXPECT_EQ(Origin(absl::StrCat("rev-parse ", sha_two, "^")), sha_one);
    EXPECT_EQ(Origin(absl::StrCat("show ", sha_two, ":one.txt")), "one");
    EXPECT_EQ(Origin(absl::StrCat("show ", sha_two, ":two.txt")), "two");
  }

  std::vector<FakeAnthropic::Request> RequestsWithKey(const std::string& key) {
    std::vector<FakeAnthropic::Request> out;
    for (const auto& r : fake_.requests()) {
      if (r.key == key && r.path == "/v1/messages") out.push_back(r);
    }
    return out;
  }
  std::vector<FakeOpenAI::Request> CodexRequestsWithKey(const std::string& key) {
    std::vector<FakeOpenAI::Request> out;
    for (const auto& r : openai_.requests()) {
      if (r.key == key && r.path == "/v1/responses") out.push_back(r);
    }
    return out;
  }

  std::string Origin(const std::string& git_args) {
    return Sh(absl::StrCat("git --git-dir=", origin_, " ", git_args));
  }

  FakeAnthropic fake_;
  FakeOpenAI openai_;
  std::string origin_;
  Setup account_;
  std::string workspace_id_;
  std::unique_ptr<SseStream> events_;
};

const SseItem* FirstOf(const std::vector<SseItem>& events, const std::string& type) {
  for (const auto& e : events) {
    if (e.event == type) return &e;
  }
  return nullptr;
}

TEST_F(AgentTest, ClaudeEditsTheRepositoryCommitsAndPushesItsBranch) {
  fake_.Script("KEY-EDIT",
               {FakeTurn::Reply({FakeBlock::Text("I will write the file."),
                                 FakeBlock::ToolUse("Write", R"({"file_path":"hello.txt",)"
                                                             R"("content":"hello from claude\n"})")}),
                FakeTurn::Reply({FakeBlock::Text("Wrote hello.txt.")})});
  testing::Process& runner = StartClaudeRunner("laptop");
  Struct created = CreateAgentTask(
      R"("provider":"claude","prompt":"KEY-EDIT write hello.txt","autoCommit":true,"push":true,)"
      R"("providerOptions":{"allowedTools":["Write","Read"]})");
  const std::string task_id = Str(created, "id");
  const std::string branch = "buildd/" + task_id.substr(0, 8);
  EXPECT_EQ(Str(created, "workBranch"), branch) << "the default work branch";

  std::vector<SseItem> events = ReadTaskEvents(*events_, task_id, {"completed", "error"});
  const std::vector<std::string> types = Types(events);
  ASSERT_FALSE(types.empty());
  ASSERT_EQ(types.back(), "completed") << ::testing::PrintToString(types);
  for (const char* type : {"started", "git", "session", "assistant_message", "tool_use",
                           "tool_result", "result"}) {
    EXPECT_THAT(types, Contains(type)) << ::testing::PrintToString(types);
  }
  std::set<std::string> stages;
  for (const auto& e : events) {
    if (e.event == "git") stages.insert(Str(Obj(Json(e.data), "data"), "stage"));
  }
  EXPECT_THAT(stages, Contains("clone"));
  EXPECT_THAT(stages, Contains("branch"));
  EXPECT_THAT(stages, Contains("commit"));
  EXPECT_THAT(stages, Contains("push"));
  const Struct tool_use = Json(FirstOf(events, "tool_use")->data);
  EXPECT_EQ(Str(Obj(tool_use, "data"), "name"), "Write");
  const Struct result = Json(FirstOf(events, "result")->data);
  EXPECT_GT(Num(Obj(result, "data"), "costUsd"), 0);

  // The artifacts, in the REST API and the completed event alike.
  const Struct task = Obj(WaitForTaskState(task_id, "completed"), "task");
  const Struct artifacts = Obj(task, "artifacts");
  const std::string sha = Str(artifacts, "commitSha");
  ASSERT_EQ(sha.size(), 40u) << ::testing::PrintToString(task);
  EXPECT_EQ(Str(artifacts, "branch"), branch);
  EXPECT_THAT(Str(artifacts, "diffStat"), HasSubstr("hello.txt"));
  EXPECT_THAT(Str(artifacts, "patch"), HasSubstr("+hello from claude"));
  EXPECT_TRUE(Obj(task, "artifacts").fields().at("pushed").bool_value());
  EXPECT_EQ(Str(artifacts, "provider"), "claude");
  EXPECT_GT(Num(artifacts, "costUsd"), 0);
  const std::string session_id = Str(artifacts, "sessionId");
  EXPECT_FALSE(session_id.empty());
  EXPECT_EQ(Str(Obj(Json(events.back().data), "data"), "commitSha"), sha);
  EXPECT_EQ(Str(Json(FirstOf(events, "session")->data), "text"), session_id);

  // The bare remote has the branch, the file and the configured author.
  EXPECT_EQ(Origin("rev-parse refs/heads/" + branch), sha);
  EXPECT_EQ(Origin(absl::StrCat("show ", sha, ":hello.txt")), "hello from claude");
  EXPECT_EQ(Origin(absl::StrCat("log -1 --format='%an <%ae>' ", sha)), kAuthor);
  EXPECT_EQ(Origin("rev-parse refs/heads/main"), Origin(absl::StrCat("rev-parse ", sha, "^")));

  // The model saw one conversation of two turns, under the session id.
  const auto requests = RequestsWithKey("KEY-EDIT");
  ASSERT_EQ(requests.size(), 2u);
  for (const auto& r : requests) {
    EXPECT_EQ(r.session_id, session_id);
    EXPECT_EQ(r.api_key, kAccountApiKey) << "the account's sealed key reached the agent";
  }
  for (const std::string& log : {runner.Log(), mesh_.broker().Log(), mesh_.accounts().Log(),
                                 mesh_.gateway().Log()}) {
    EXPECT_THAT(log, Not(HasSubstr(kAccountApiKey)));
  }
  for (const auto& e : events) EXPECT_THAT(e.data, Not(HasSubstr(kAccountApiKey)));

  // POST /revert undoes the commit on the branch and pushes the revert.
  HttpResult revert = Call("POST", "/revert", account_.api_key,
                           absl::StrCat(R"({"workspaceId":")", workspace_id_, R"(","branch":")",
                                        branch, R"(","commit":")", sha, R"("})"));
  ASSERT_EQ(revert.status, 202) << revert.body;
  const std::string revert_id = Str(Json(revert.body), "id");
  const Struct reverted = Obj(WaitForTaskState(revert_id, "completed"), "task");
  const std::string revert_sha = Str(Obj(reverted, "artifacts"), "commitSha");
  ASSERT_EQ(revert_sha.size(), 40u) << ::testing::PrintToString(reverted);
  EXPECT_EQ(Origin("rev-parse refs/heads/" + branch), revert_sha);
  EXPECT_EQ(Origin(absl::StrCat("rev-parse ", revert_sha, "^")), sha);
  EXPECT_EQ(Origin(absl::StrCat("ls-tree --name-only ", revert_sha)), "README.md");
}

TEST_F(AgentTest, PlanFirstWaitsForApprovalThenContinuesTheSameSession) {
  fake_.Script("KEY-PLAN",
               {FakeTurn::Reply({FakeBlock::Text("Plan: 1. create plan.txt with the word done.")}),
                FakeTurn::Reply({FakeBlock::ToolUse(
                    "Write", R"({"file_path":"plan.txt","content":"done\n"})")}),
                FakeTurn::Reply({FakeBlock::Text("Implemented. Shall I add a README entry too?")}),
                FakeTurn::Reply({FakeBlock::Text("Understood, leaving the README alone.")})});
  StartClaudeRunner("laptop");
  const std::string task_id = Str(CreateAgentTask(
      R"("provider":"claude","prompt":"KEY-PLAN make plan.txt","planFirst":true,)"
      R"("autoCommit":true)"), "id");

  const std::string worker_id = ExpectPlanThenWait(
      task_id, "Plan: 1. create plan.txt with the word done.", "laptop", "plan.txt");
  ASSERT_FALSE(HasFailure());

  HttpResult bad = Call("POST", "/api/workers/" + worker_id + "/input", account_.api_key,
                        R"({"answer":"yes"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("answer"));
  HttpResult input = Call("POST", "/api/workers/" + worker_id + "/input", account_.api_key,
                          R"({"approve":true})");
  ASSERT_EQ(input.status, 200) << input.body;

  // The coding turn ends with a question: answered the same way.
  std::vector<SseItem> rest = ReadTaskEvents(*events_, task_id, {"question", "completed", "error"});
  ASSERT_EQ(rest.back().event, "question") << ::testing::PrintToString(Types(rest));
  EXPECT_EQ(Str(Json(rest.back().data), "text"), "Implemented. Shall I add a README entry too?");
  EXPECT_THAT(Types(rest), Contains("input"));
  WaitForWorkerState(worker_id, "waiting_input");
  HttpResult answer = Call("POST", "/api/workers/" + worker_id + "/input", account_.api_key,
                           R"({"text":"No, that is all."})");
  ASSERT_EQ(answer.status, 200) << answer.body;
  const Struct task = ExpectPlannedWorkDone(
      task_id, "Plan: 1. create plan.txt with the word done.", "laptop", "plan.txt", "done\n");

  // One session throughout: the coding turns carry the planning turn.
  const auto requests = RequestsWithKey("KEY-PLAN");
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_THAT(requests[3].body, HasSubstr("No, that is all."));
  EXPECT_EQ(requests[0].assistant_messages, 0);
  EXPECT_EQ(requests[1].assistant_messages, 1);
  EXPECT_THAT(requests[1].body, HasSubstr("Plan: 1. create plan.txt"));
  EXPECT_THAT(requests[1].body, HasSubstr("The plan is approved"));
  for (const auto& r : requests) EXPECT_EQ(r.session_id, requests[0].session_id);
  EXPECT_EQ(Str(Obj(task, "artifacts"), "sessionId"), requests[0].session_id);

  // Input for a worker that waits for nothing is refused.
  HttpResult late = Call("POST", "/api/workers/" + worker_id + "/input", account_.api_key,
                         R"({"text":"more"})");
  EXPECT_EQ(late.status, 409) << late.body;
}

TEST_F(AgentTest, TwoTasksOfOneRepositoryRunAtOnceAndArePausedResumedAndCanceled) {
  fake_.Script("KEY-A", {FakeTurn::Reply({FakeBlock::ToolUse(
                                             "Write", R"({"file_path":"a.txt","content":"A\n"})")})
                             .HeldAt("gate-a")});
  fake_.Script("KEY-B", {FakeTurn::Reply({FakeBlock::ToolUse(
                                             "Write", R"({"file_path":"b.txt","content":"B\n"})")})
                             .HeldAt("gate-b")});
  StartClaudeRunner("laptop", {"--max_tasks=2"});
  const std::string a = Str(CreateAgentTask(R"("provider":"claude","prompt":"KEY-A",)"
                                            R"("autoCommit":true)"), "id");
  const std::string b = Str(CreateAgentTask(R"("provider":"claude","prompt":"KEY-B")"), "id");
  // Both agents are mid-conversation at the same time.
  ASSERT_TRUE(fake_.WaitForGate("gate-a", absl::Seconds(30)));
  ASSERT_TRUE(fake_.WaitForGate("gate-b", absl::Seconds(30)));
  const std::string tree_a = WorktreeOf("laptop", a);
  const std::string tree_b = WorktreeOf("laptop", b);
  EXPECT_EQ(Sh("git rev-parse --abbrev-ref HEAD", tree_a), "buildd/" + a.substr(0, 8));
  EXPECT_EQ(Sh("git rev-parse --abbrev-ref HEAD", tree_b), "buildd/" + b.substr(0, 8));
  ASSERT_FALSE(ProcessesIn(tree_a).empty());
  ASSERT_FALSE(ProcessesIn(tree_b).empty());

  // Pause A: its process group stops, the worker says so.
  const std::string worker_a = WorkerOf(a);
  ASSERT_EQ(Call("POST", "/api/workers/" + worker_a + "/pause", account_.api_key).status, 200);
  WaitForWorkerState(worker_a, "paused");
  const auto paused = WaitForProcessesIn(tree_a, true);
  for (const auto& [pid, p] : paused) {
    EXPECT_TRUE(CannotRun(pid, paused)) << "pid " << pid << ": " << p;
  }
  EXPECT_TRUE(std::any_of(paused.begin(), paused.end(),
                          [](const auto& entry) { return entry.second.state == 'T'; }));
  for (const auto& [pid, p] : ProcessesIn(tree_b)) {
    EXPECT_NE(p.state, 'T') << "pid " << pid << ": " << p;
  }
  fake_.Release("gate-a");
  ASSERT_EQ(Call("POST", "/api/workers/" + worker_a + "/resume", account_.api_key).status, 200);
  std::vector<std::string> statuses;
  for (const auto& e : ReadTaskEvents(*events_, a, {"completed", "error"})) {
    if (e.event == "status") statuses.push_back(Str(Json(e.data), "status"));
  }
  EXPECT_THAT(statuses, ::testing::ElementsAre("paused", "running"));
  const Struct done_a = Obj(WaitForTaskState(a, "completed"), "task");
  EXPECT_THAT(Str(Obj(done_a, "artifacts"), "diffStat"), HasSubstr("a.txt"));
  EXPECT_FALSE(fs::exists(tree_a + "/b.txt")) << "worktrees are separate";

  // Cancel B while its agent waits for the model: it ends, its worktree stays.
  const std::string worker_b = WorkerOf(b);
  ASSERT_EQ(Call("POST", "/api/tasks/" + b + "/cancel", account_.api_key).status, 200);
  WaitForTaskState(b, "canceled");
  WaitForWorkerState(worker_b, "canceled");
  // The sandbox's pid namespace goes with its init, the group's last
  // process to be reaped: what ran inside it dies an instant later.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!ProcessesIn(tree_b).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(ProcessesIn(tree_b), ::testing::IsEmpty());
  EXPECT_TRUE(fs::exists(tree_b + "/README.md")) << "kept for inspection";
  fake_.Release("gate-b");
}

TEST_F(AgentTest, BrokenProvidersEndInErrorWithTheReasonAndMissingOnesStayPending) {
  // A provider that prints garbage and crashes, or ends without a result.
  const std::string fake_cli = mesh_.dir() + "/broken-claude";
  {
    std::ofstream out(fake_cli);
    out << "#!/bin/sh\n"
           "[ \"$1\" = --version ] && { echo '0.0.1 (Claude Code)'; exit 0; }\n"
           "for a; do last=$a; done\n"
           "echo 'this is not json'\n"
           "case $last in\n"
           "  *crash*) echo 'segfault in the agent' >&2; exit 3 ;;\n"
           "  *) echo '{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-1\"}'; exit 0 ;;\n"
           "esac\n";
  }
  // Run by the task user, inside the sandbox.
  fs::permissions(fake_cli, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
  StartClaudeRunner("broken", {}, fake_cli);

  const std::string crash = Str(CreateAgentTask(R"("provider":"claude","prompt":"crash")"), "id");
  std::vector<SseItem> events = ReadTaskEvents(*events_, crash, {"completed", "error"});
  ASSERT_EQ(events.back().event, "error");
  EXPECT_THAT(Str(Json(events.back().data), "text"), HasSubstr("exit code 3"));
  EXPECT_THAT(Str(Json(events.back().data), "text"), HasSubstr("segfault in the agent"));
  bool garbage_shown = false;
  for (const auto& e : events) {
    garbage_shown |= e.event == "output" && Str(Json(e.data), "text") == "this is not json";
  }
  EXPECT_TRUE(garbage_shown);
  EXPECT_EQ(Str(Obj(WaitForTaskState(crash, "failed"), "task"), "error"),
            Str(Json(events.back().data), "text"));

  const std::string silent = Str(CreateAgentTask(R"("provider":"claude","prompt":"quiet")"), "id");
  const Struct failed = Obj(WaitForTaskState(silent, "failed"), "task");
  EXPECT_THAT(Str(failed, "error"), HasSubstr("ended without a result"));

  // Bad provider options fail the task with the field named.
  const std::string bad_options = Str(
      CreateAgentTask(R"("provider":"claude","prompt":"x","providerOptions":{"maxTurns":"many"})"),
      "id");
  EXPECT_THAT(Str(Obj(WaitForTaskState(bad_options, "failed"), "task"), "error"),
              HasSubstr("providerOptions.maxTurns"));

  // No runner has codex: its task is never pushed, while later work runs.
  const std::string codex = Str(CreateAgentTask(R"("provider":"codex","prompt":"x")"), "id");
  const std::string after = Str(CreateAgentTask(R"("provider":"command","command":"true")"), "id");
  WaitForTaskState(after, "completed");
  const Struct pending = Json(Call("GET", "/api/tasks/" + codex, mesh_.admin_key()).body);
  EXPECT_EQ(Str(Obj(pending, "task"), "state"), "pending");
  EXPECT_EQ(Num(Obj(pending, "task"), "attempts"), 0) << "never attempted";
  EXPECT_EQ(Str(Obj(pending, "task"), "workerId"), "");
  HttpResult drop = Call("POST", "/api/tasks/" + codex + "/cancel", account_.api_key);
  EXPECT_EQ(drop.status, 200) << drop.body;

  // A real CLI whose API refuses the request reports it; the task fails.
  fake_.Script("KEY-REFUSED", {FakeTurn::Error(400, "scripted refusal")});
  StartClaudeRunner("real", {"--labels=real"});
  const std::string refused = Str(
      CreateAgentTask(R"("provider":"claude","prompt":"KEY-REFUSED","requiredLabels":["real"])"),
      "id");
  const Struct refused_task = Obj(WaitForTaskState(refused, "failed", 60000), "task");
  EXPECT_THAT(Str(refused_task, "error"), HasSubstr("scripted refusal"));
}

TEST_F(AgentTest, OldWorktreesAreRemovedWhenTheDiskIsFullButNeverOneInUse) {
  // Watermarks of 0: the disk always counts as full, so each new task first
  // removes every idle worktree.
  StartClaudeRunner("tidy", {"--disk_high_watermark=0", "--disk_low_watermark=0"});
  const std::string first = Str(CreateAgentTask(
      R"("provider":"command","command":"echo one > one.txt; env","autoCommit":true)"), "id");
  std::vector<SseItem> first_events = ReadTaskEvents(*events_, first, {"completed", "error"});
  ASSERT_EQ(first_events.back().event, "completed");
  for (const auto& e : first_events) {
    EXPECT_THAT(e.data, Not(HasSubstr(kAccountApiKey))) << "provider keys are for agents only";
  }
  const Struct done = Obj(WaitForTaskState(first, "completed"), "task");
  EXPECT_THAT(Str(Obj(done, "artifacts"), "diffStat"), HasSubstr("one.txt"));
  EXPECT_TRUE(fs::exists(WorktreeOf("tidy", first) + "/one.txt")) << "kept after the task";

  const std::string second =
      Str(CreateAgentTask(R"("provider":"command","command":"ls ../; pwd")"), "id");
  std::vector<SseItem> events = ReadTaskEvents(*events_, second, {"completed", "error"});
  ASSERT_EQ(events.back().event, "completed");
  bool cleaned = false;
  std::vector<std::string> output;
  for (const auto& e : events) {
    const Struct body = Json(e.data);
    cleaned |= e.event == "git" && Str(Obj(body, "data"), "stage") == "cleanup";
    if (e.event == "output") output.push_back(Str(body, "text"));
  }
  EXPECT_TRUE(cleaned);
  EXPECT_FALSE(fs::exists(WorktreeOf("tidy", first)));
  // The running task saw its own worktree, and only it.
  EXPECT_THAT(output, ::testing::ElementsAre(second, WorktreeOf("tidy", second)));
}

TEST_F(AgentTest, AnAccountOverItsDailyBudgetTakesNoMoreAgentTasks) {
  HttpResult acc = Call("POST", "/api/accounts", mesh_.admin_key(),
                        absl::StrCat(R"({"type":"service","name":"frugal","maxCostPerDay":0.0001,)",
                                     R"("anthropicApiKey":")", kAccountApiKey, R"("})"));
  ASSERT_EQ(acc.status, 201) << acc.body;
  const Struct frugal = Json(acc.body);
  ASSERT_EQ(Call("POST", absl::StrCat("/api/accounts/", Str(frugal, "id"), "/workspaces"),
                 mesh_.admin_key(),
                 // Its key pays for the other account's tasks it runs.
                 absl::StrCat(R"({"workspaceId":")", workspace_id_,
                              R"(","canClaim":true,"shareCredentials":true})"))
                .status,
            200);
  fake_.Script("KEY-COST", {FakeTurn::Reply({FakeBlock::Text("Cheap answer.")})});
  StartClaudeRunner("frugal", {}, "", Str(frugal, "apiKey"));

  const std::string first = Str(CreateAgentTask(R"("provider":"claude","prompt":"KEY-COST 1")"), "id");
  std::vector<SseItem> events = ReadTaskEvents(*events_, first, {"completed", "error"});
  ASSERT_EQ(events.back().event, "completed");
  const double cost = Num(Obj(Json(events.back().data), "data"), "costUsd");
  EXPECT_GT(cost, 0.0001) << "the fake's usage prices one answer above the limit";
  // The limit is reached: a budget event, then agent tasks wait.
  const SseItem* budget = FirstOf(events, "budget");
  ASSERT_NE(budget, nullptr) << ::testing::PrintToString(Types(events));
  EXPECT_THAT(Str(Json(budget->data), "text"), HasSubstr(Str(frugal, "id")));
  const std::string second = Str(CreateAgentTask(R"("provider":"claude","prompt":"KEY-COST 2")"), "id");
  const std::string command = Str(CreateAgentTask(R"("provider":"command","command":"true")"), "id");
  WaitForTaskState(command, "completed");
  EXPECT_EQ(Str(Obj(Json(Call("GET", "/api/tasks/" + second, mesh_.admin_key()).body), "task"),
                "state"),
            "pending");
  EXPECT_EQ(RequestsWithKey("KEY-COST").size(), 1u);
}

TEST_F(AgentTest, ResumeFromContinuesTheSessionOnAnotherRunner) {
  fake_.Script("KEY-RESUME",
               {FakeTurn::Reply({FakeBlock::ToolUse(
                    "Write", R"({"file_path":"one.txt","content":"one\n"})")}),
                FakeTurn::Reply({FakeBlock::Text("First part done.")}),
                FakeTurn::Reply({FakeBlock::ToolUse(
                    "Write", R"({"file_path":"two.txt","content":"two\n"})")}),
                FakeTurn::Reply({FakeBlock::Text("Second part done.")})});
  testing::Process& first = StartClaudeRunner("first");
  const std::string one = Str(CreateAgentTask(R"("provider":"claude","prompt":"KEY-RESUME part one",)"
                                              R"("autoCommit":true,"push":true)"), "id");
  const Struct done_one = Obj(WaitForTaskState(one, "completed"), "task");
  const std::string session_id = Str(Obj(done_one, "artifacts"), "sessionId");
  ASSERT_FALSE(session_id.empty());
  ASSERT_EQ(first.Stop(SIGTERM, 20000), 0) << first.Log();
  // The broker keeps the transcript sealed: neither the prompt nor the
  // model's words are in the database in plain text.
  {
    auto pool = OpenPool(mesh_.database_url(), 1);
    ASSERT_THAT(pool, IsOk());
    soci::session sql(**pool);
    int sealed = 0, size = 0, plain = 0;
    sql << "SELECT sealed::int, length(data), (position(convert_to('KEY-RESUME', 'UTF8') in data)"
           " + position(convert_to('First part done', 'UTF8') in data))::int"
           " FROM session_snapshots WHERE task_id = :t",
        soci::use(one), soci::into(sealed), soci::into(size), soci::into(plain);
    EXPECT_EQ(sealed, 1);
    EXPECT_GT(size, 100);
    EXPECT_EQ(plain, 0);
  }

  // A second runner with an empty Claude directory takes the continuation.
  StartClaudeRunner("second");
  HttpResult unknown = Call("POST", "/api/tasks", account_.api_key,
                            absl::StrCat(R"({"workspaceId":")", workspace_id_,
                                         R"(","prompt":"x","resumeFrom":"00000000-0000-4000-8000-000000000000"})"));
  EXPECT_EQ(unknown.status, 400);
  EXPECT_THAT(unknown.body, HasSubstr("resumeFrom"));
  const Struct done_two = ContinueTask(done_one, "claude");
  EXPECT_EQ(Str(Obj(done_two, "artifacts"), "sessionId"), session_id);
  ExpectResumed(RequestsWithKey("KEY-RESUME"), session_id);
  // The history in the request is the restored transcript: the task's own
  // Claude directory, which held it, is gone with the task.
  EXPECT_FALSE(fs::exists(ClaudeDir("second") + "/projects"));
  ExpectBranchContinued(done_one, done_two);
}

TEST_F(AgentTest, CodexEditsTheRepositoryCommitsAndPushesItsBranch) {
  openai_.Script("KEY-CODEX-EDIT",
                 {FakeTurn::Reply({FakeBlock::Text("I will write the file."),
                                   CodexAddFile("hello.txt", "hello from codex\n")}),
                  FakeTurn::Reply({FakeBlock::Text("Wrote hello.txt.")})});
  StartCodexRunner("laptop");
  Struct created = CreateAgentTask(
      R"("provider":"codex","prompt":"KEY-CODEX-EDIT write hello.txt","autoCommit":true,)"
      R"("push":true)");
  const std::string task_id = Str(created, "id");
  const std::string branch = "buildd/" + task_id.substr(0, 8);

  std::vector<SseItem> events = ReadTaskEvents(*events_, task_id, {"completed", "error"});
  const std::vector<std::string> types = Types(events);
  ASSERT_FALSE(types.empty());
  ASSERT_EQ(types.back(), "completed") << ::testing::PrintToString(types);
  for (const char* type : {"started", "git", "session", "assistant_message", "tool_use",
                           "tool_result", "result"}) {
    EXPECT_THAT(types, Contains(type)) << ::testing::PrintToString(types);
  }
  EXPECT_EQ(Str(Json(FirstOf(events, "assistant_message")->data), "text"),
            "I will write the file.");
  const Struct tool_use = Json(FirstOf(events, "tool_use")->data);
  EXPECT_EQ(Str(Obj(tool_use, "data"), "name"), "file_change") << "apply_patch";
  const Struct result = Json(FirstOf(events, "result")->data);
  EXPECT_EQ(Str(result, "text"), "Wrote hello.txt.");

  const Struct task = Obj(WaitForTaskState(task_id, "completed"), "task");
  const Struct artifacts = Obj(task, "artifacts");
  const std::string sha = Str(artifacts, "commitSha");
  ASSERT_EQ(sha.size(), 40u) << ::testing::PrintToString(task);
  EXPECT_EQ(Str(artifacts, "branch"), branch);
  EXPECT_THAT(Str(artifacts, "diffStat"), HasSubstr("hello.txt"));
  EXPECT_THAT(Str(artifacts, "patch"), HasSubstr("+hello from codex"));
  EXPECT_TRUE(artifacts.fields().at("pushed").bool_value());
  EXPECT_EQ(Str(artifacts, "provider"), "codex");
  // The thread id names the session everywhere.
  const std::string thread_id = Str(artifacts, "sessionId");
  EXPECT_FALSE(thread_id.empty());
  EXPECT_EQ(Str(Json(FirstOf(events, "session")->data), "text"), thread_id);
  const auto requests = CodexRequestsWithKey("KEY-CODEX-EDIT");
  ASSERT_EQ(requests.size(), 2u);
  for (const auto& r : requests) {
    EXPECT_EQ(r.session_id, thread_id);
    EXPECT_EQ(r.api_key, absl::StrCat("Bearer ", kAccountOpenAiKey))
        << "the account's sealed key reached the agent";
  }
  EXPECT_EQ(requests[1].assistant_messages, 1);
  for (const auto& e : events) EXPECT_THAT(e.data, Not(HasSubstr(kAccountOpenAiKey)));

  EXPECT_EQ(Origin("rev-parse refs/heads/" + branch), sha);
  EXPECT_EQ(Origin(absl::StrCat("show ", sha, ":hello.txt")), "hello from codex");
  EXPECT_EQ(Origin(absl::StrCat("log -1 --format='%an <%ae>' ", sha)), kAuthor);
  EXPECT_EQ(Origin("rev-parse refs/heads/main"), Origin(absl::StrCat("rev-parse ", sha, "^")));
}

TEST_F(AgentTest, CodexPlanFirstWaitsForApprovalThenContinuesTheSameThread) {
  openai_.Script("KEY-CODEX-PLAN",
                 {FakeTurn::Reply({FakeBlock::Text("Plan: 1. write plan.txt with the word done.")}),
                  FakeTurn::Reply({CodexShell("printf 'done\\n' > plan.txt")}),
                  FakeTurn::Reply({FakeBlock::Text("Implemented.")})});
  StartCodexRunner("laptop");
  const std::string task_id = Str(CreateAgentTask(
      R"("provider":"codex","prompt":"KEY-CODEX-PLAN make plan.txt","planFirst":true,)"
      R"("autoCommit":true)"), "id");

  const std::string worker_id = ExpectPlanThenWait(
      task_id, "Plan: 1. write plan.txt with the word done.", "laptop", "plan.txt");
  ASSERT_FALSE(HasFailure());

  HttpResult input = Call("POST", "/api/workers/" + worker_id + "/input", account_.api_key,
                          R"({"approve":true})");
  ASSERT_EQ(input.status, 200) << input.body;
  const Struct task = ExpectPlannedWorkDone(
      task_id, "Plan: 1. write plan.txt with the word done.", "laptop", "plan.txt", "done\n");

  // One thread throughout: the coding turn carries the planning turn, and
  // the planning pass ran in Codex's read-only sandbox.
  const auto requests = CodexRequestsWithKey("KEY-CODEX-PLAN");
  ASSERT_EQ(requests.size(), 3u) << ::testing::PrintToString(openai_.requests());
  EXPECT_THAT(requests[0].body, HasSubstr("read-only"));
  EXPECT_EQ(requests[1].assistant_messages, 1);
  EXPECT_THAT(requests[1].body, HasSubstr("Plan: 1. write plan.txt"));
  EXPECT_THAT(requests[1].body, HasSubstr("The plan is approved"));
  // Codex's own sandbox gives way to the runner's for the coding run.
  EXPECT_THAT(requests[1].body, HasSubstr("danger-full-access"));
  for (const auto& r : requests) EXPECT_EQ(r.session_id, requests[0].session_id);
  EXPECT_EQ(Str(Obj(task, "artifacts"), "sessionId"), requests[0].session_id);
}

TEST_F(AgentTest, CodexResumeFromContinuesTheThreadOnAnotherRunner) {
  openai_.Script("KEY-CODEX-RESUME",
                 {FakeTurn::Reply({CodexShell("printf 'one\\n' > one.txt")}),
                  FakeTurn::Reply({FakeBlock::Text("First part done.")}),
                  FakeTurn::Reply({CodexShell("printf 'two\\n' > two.txt")}),
                  FakeTurn::Reply({FakeBlock::Text("Second part done.")})});
  testing::Process& first = StartCodexRunner("first");
  // A model the CLI has no metadata for: it warns, and the task goes on.
  const std::string one = Str(
      CreateAgentTask(R"("provider":"codex","prompt":"KEY-CODEX-RESUME part one",)"
                      R"("autoCommit":true,"push":true,)"
                      R"("providerOptions":{"model":"buildd-unknown-model"})"),
      "id");
  std::vector<SseItem> events = ReadTaskEvents(*events_, one, {"completed", "error"});
  ASSERT_EQ(events.back().event, "completed") << ::testing::PrintToString(Types(events));
  ASSERT_NE(FirstOf(events, "warning"), nullptr) << ::testing::PrintToString(Types(events));
  EXPECT_THAT(Str(Json(FirstOf(events, "warning")->data), "text"),
              HasSubstr("buildd-unknown-model"));
  const Struct done_one = Obj(WaitForTaskState(one, "completed"), "task");
  const std::string thread_id = Str(Obj(done_one, "artifacts"), "sessionId");
  ASSERT_FALSE(thread_id.empty());
  ASSERT_EQ(first.Stop(SIGTERM, 20000), 0) << first.Log();

  // A second runner with an empty CODEX_HOME takes the continuation.
  StartCodexRunner("second");
  const Struct done_two = ContinueTask(done_one, "codex");
  EXPECT_EQ(Str(Obj(done_two, "artifacts"), "sessionId"), thread_id);
  ExpectResumed(CodexRequestsWithKey("KEY-CODEX-RESUME"), thread_id);
  // Codex resumed only because the transcript was restored under the name
  // it gives its own, in the task's CODEX_HOME (gone with the task).
  EXPECT_FALSE(fs::exists(CodexDir("second") + "/sessions"));
  ExpectBranchContinued(done_one, done_two);
}

}  // namespace
}  // namespace buildd
