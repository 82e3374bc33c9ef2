// The dashboard in a real browser: Debian's chromium driven by
// playwright-core (tests/browser/*.mjs) against the real binaries — accounts,
// broker, a gateway and a runner with the real Claude Code CLI against the
// fake Messages API. Each test sets up the mesh, runs one scenario with node
// and checks its exit code; a scenario asserts what a person sees and fails
// on any console error, page error, failed request or unexpected error
// answer. A scenario asks this side for what only it can do (restart the
// gateway) with a line `@@ <request>` on its stdout and reads `ok [...]` on
// its stdin.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/fake_anthropic.h"
#include "tests/testing/files.h"

namespace buildd {
namespace {

using ::buildd::testing::FakeAnthropic;
using ::buildd::testing::FakeBlock;
using ::buildd::testing::FakeTurn;
using ::buildd::testing::Process;
using ::buildd::testing::Sh;
using ::testing::HasSubstr;

constexpr char kAccountApiKey[] = "sk-ant-api03-browser-e2e";

// What a scenario printed and how it ended.
struct ScriptRun {
  int exit_code = -1;
  std::string output;
};

// The request handler: the text after "@@ " → the reply's text after "ok ".
using Requests = std::function<std::string(const std::string& request)>;

// Runs `node <script>` with `env` on top of this process's environment,
// answering its `@@` requests; kills it after `timeout`.
ScriptRun RunNode(const std::string& script, const std::map<std::string, std::string>& env,
                  const Requests& requests, std::chrono::seconds timeout) {
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) return {-1, "pipe failed"};
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    dup2(from_child[1], 2);
    close(to_child[0]);
    close(to_child[1]);
    close(from_child[0]);
    close(from_child[1]);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    execlp("node", "node", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  ScriptRun run;
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fd{from_child[0], POLLIN, 0};
    if (poll(&fd, 1, static_cast<int>(left.count())) <= 0) continue;
    char buffer[4096];
    const ssize_t n = read(from_child[0], buffer, sizeof buffer);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buffer[i] != '\n') {
        line.push_back(buffer[i]);
        continue;
      }
      absl::StrAppend(&run.output, line, "\n");
      if (absl::StartsWith(line, "@@ ")) {
        const std::string reply = absl::StrCat("ok ", requests(line.substr(3)), "\n");
        if (write(to_child[1], reply.data(), reply.size()) < 0) break;
      }
      line.clear();
    }
  }
  absl::StrAppend(&run.output, line);
  if (timed_out) {
    kill(-pid, SIGKILL);
    absl::StrAppend(&run.output, "\n(killed after ", timeout.count(), " s)\n");
  }
  close(to_child[1]);
  close(from_child[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  kill(-pid, SIGKILL);  // Anything it left behind (the browser).
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

class BrowserTest : public GatewayTest {
 protected:
  BrowserTest() : mesh_(MeshOptions()) {}

  static Mesh::Options MeshOptions() {
    Mesh::Options options;
    options.gateway = false;  // The test's own, which it restarts.
    return options;
  }

  std::string gateway_url() const override {
    return absl::StrCat("http://127.0.0.1:", gateway_port_);
  }
  std::string admin_key() const override { return mesh_.admin_key(); }

  void SetUp() override {
    ASSERT_NE(std::getenv("BUILDD_TEST_PLAYWRIGHT"), nullptr)
        << "BUILDD_TEST_PLAYWRIGHT is unset: run the browser tests through ./buildd test";
    setenv("GIT_CONFIG_COUNT", "1", 1);
    setenv("GIT_CONFIG_KEY_0", "safe.directory", 1);
    setenv("GIT_CONFIG_VALUE_0", "*", 1);
    gateway_port_ = testing::FreePort();
    StartGateway();

    // A repository with a first commit, a workspace on it, and an account
    // that may create its tasks and whose runner takes them.
    origin_ = mesh_.dir() + "/origin.git";
    const std::string seed = mesh_.dir() + "/seed";
    Sh(absl::StrCat("git init -q --bare -b main ", origin_));
    Sh(absl::StrCat("git init -q -b main ", seed, " && cd ", seed,
                    " && printf '# demo\\n\\nA repository for the dashboard.\\n' > README.md"
                    " && git add README.md"
                    " && git -c user.name=Seed -c user.email=seed@x commit -q -m first"
                    " && git push -q ",
                    origin_, " main"));
    HttpResult acc = Call("POST", "/api/accounts", admin_key(),
                          absl::StrCat(R"({"type":"service","name":"team-ci","maxConcurrentWorkers":8,)"
                                       R"("anthropicApiKey":")",
                                       kAccountApiKey, R"("})"));
    ASSERT_EQ(acc.status, 201) << acc.body;
    account_id_ = Str(Json(acc.body), "id");
    key_ = Str(Json(acc.body), "apiKey");
    HttpResult ws = Call("POST", "/api/workspaces", admin_key(),
                         absl::StrCat(R"({"name":"demo-repo","repoUrl":"file://)", origin_,
                                      R"(","defaultBranch":"main"})"));
    ASSERT_EQ(ws.status, 201) << ws.body;
    workspace_id_ = Str(Json(ws.body), "id");
    HttpResult grant = Call("POST", absl::StrCat("/api/accounts/", account_id_, "/workspaces"),
                            admin_key(),
                            absl::StrCat(R"({"workspaceId":")", workspace_id_,
                                         R"(","canClaim":true,"canCreate":true})"));
    ASSERT_EQ(grant.status, 200) << grant.body;
  }

  void TearDown() override {
    if (gateway_) gateway_->Stop(SIGTERM, 10000);
  }

  void StartGateway() {
    gateway_ = Process::Start(
        testing::BuiltBinary("gateway/buildd-gateway"),
        {absl::StrCat("--listen=127.0.0.1:", gateway_port_),
         absl::StrCat("--accounts_addr=", mesh_.accounts_addr()),
         absl::StrCat("--broker_addr=", mesh_.broker_addr())},
        {}, absl::StrCat(mesh_.dir(), "/gateway.", ++gateway_starts_, ".log"));
    ASSERT_TRUE(gateway_->WaitForLog("gateway listening on", 30000)) << gateway_->Log();
  }
  void StopGateway() {
    gateway_->Stop(SIGTERM, 10000);
    gateway_.reset();
  }

  // The local runner: commands and the real Claude Code CLI against the fake
  // Messages API, two slots.
  Process& StartRunner() {
    std::vector<std::string> args = {
        absl::StrCat("--claude=", testing::TestClaudeCli()), "--codex=/nonexistent/codex",
        absl::StrCat("--claude_config_dir=", mesh_.dir(), "/claude-laptop"),
        "--commit_author=Buildd Test <bot@buildd.test>", "--cancel_grace_ms=2000",
        "--max_tasks=2", "--labels=linux"};
    std::map<std::string, std::string> env;
    for (const auto& [name, value] : fake_.ClaudeEnv()) env[name] = value;
    env.erase("ANTHROPIC_API_KEY");  // The account's, by way of the broker.
    std::vector<std::string> names;
    for (const auto& [name, value] : env) names.push_back(name);
    args.push_back(absl::StrCat("--task_env=", absl::StrJoin(names, ",")));
    return mesh_.StartRunner(key_, "laptop", args, env);
  }

  std::string CommandTask(const std::string& title, const std::string& command,
                          const std::string& extra = "") {
    HttpResult r = Call("POST", "/api/tasks", key_,
                        absl::StrCat(R"({"workspaceId":")", workspace_id_, R"(","title":)",
                                     JsonString(title), R"(,"provider":"command","command":)",
                                     JsonString(command), extra, "}"));
    EXPECT_EQ(r.status, 201) << r.body;
    return Str(Json(r.body), "id");
  }

  // Runs tests/browser/<scenario>.mjs signed in with `key` (the account's
  // unless given), `env` added; expects it to pass.
  ScriptRun RunScenario(const std::string& scenario, std::map<std::string, std::string> env = {},
                        const Requests& requests = {}, const std::string& key = "") {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    env["BUILDD_GATEWAY_URL"] = gateway_url();
    env["BUILDD_KEY"] = key.empty() ? key_ : key;
    env["BUILDD_ADMIN_KEY"] = admin_key();
    env["BUILDD_ACCOUNT_NAME"] = "team-ci";
    env["BUILDD_ACCOUNT_ID"] = account_id_;
    env["BUILDD_ACCOUNT_NAME"] = "team-ci";
    env["BUILDD_WORKSPACE_ID"] = workspace_id_;
    env["BUILDD_WORKSPACE_NAME"] = "demo-repo";
    env["BUILDD_SCREENSHOT_DIR"] =
        absl::StrCat(BUILDD_BROWSER_SCREENSHOT_DIR, "/", info->test_suite_name(), ".", info->name());
    std::filesystem::remove_all(env["BUILDD_SCREENSHOT_DIR"]);  // A run before this one's.
    const Requests answer = [&](const std::string& request) -> std::string {
      if (requests) return requests(request);
      ADD_FAILURE() << "unexpected request from the scenario: " << request;
      return "";
    };
    ScriptRun run = RunNode(absl::StrCat(BUILDD_BROWSER_TEST_DIR, "/", scenario, ".mjs"), env,
                            answer, std::chrono::seconds(240));
    EXPECT_EQ(run.exit_code, 0) << scenario << " printed:\n" << run.output;
    EXPECT_THAT(run.output, HasSubstr("PASS " + scenario)) << run.output;
    return run;
  }

  Mesh mesh_;
  FakeAnthropic fake_;
  int gateway_port_ = 0;
  int gateway_starts_ = 0;
  std::unique_ptr<Process> gateway_;
  std::string origin_;
  std::string account_id_;
  std::string key_;
  std::string workspace_id_;
};

TEST_F(BrowserTest, SignsInWithAKeySeesWhoItIsAndSignsOut) {
  // Ends the account's live sessions with its key, as its owner would from
  // another machine (an admin may list them, not end them).
  const Requests requests = [&](const std::string& request) -> std::string {
    EXPECT_EQ(request, "end-session");
    HttpResult list = Call("GET", "/api/sessions?accountId=" + account_id_, admin_key());
    EXPECT_EQ(list.status, 200) << list.body;
    int ended = 0;
    const Struct sessions = Json(list.body);
    auto it = sessions.fields().find("sessions");
    if (it == sessions.fields().end()) return "";
    for (const auto& session : it->second.list_value().values()) {
      const Struct& s = session.struct_value();
      if (s.fields().count("revoked") && s.fields().at("revoked").bool_value()) continue;
      HttpResult end = Call("DELETE", "/api/sessions/" + Str(s, "id"), key_);
      EXPECT_EQ(end.status, 200) << end.body;
      ++ended;
    }
    EXPECT_EQ(ended, 1);
    return "";
  };
  RunScenario("sign_in", {}, requests);
}

TEST_F(BrowserTest, TaskCreatedFromTheFormRunsLiveToCompleted) {
  StartRunner();
  RunScenario("new_task");
}

TEST_F(BrowserTest, PlanFirstClaudeTaskShowsItsPlanIsApprovedFromThePageAndCompletes) {
  fake_.Script("KEY-UI-PLAN",
               {FakeTurn::Reply({FakeBlock::Text("Plan: 1. create plan.txt with the word done.")}),
                FakeTurn::Reply({FakeBlock::ToolUse(
                    "Write", R"({"file_path":"plan.txt","content":"done\n"})")}),
                FakeTurn::Reply({FakeBlock::Text("Created plan.txt as planned.")})});
  StartRunner();
  RunScenario("plan_first");
  // The approval reached the agent: its coding turn carries it.
  bool approved = false;
  for (const auto& r : fake_.requests()) {
    if (r.key == "KEY-UI-PLAN" && absl::StrContains(r.body, "The plan is approved")) approved = true;
  }
  EXPECT_TRUE(approved);
}

TEST_F(BrowserTest, QuestionIsAnsweredFromThePage) {
  fake_.Script("KEY-UI-QUESTION",
               {FakeTurn::Reply({FakeBlock::Text("Plan: 1. create notes.txt.")}),
                FakeTurn::Reply({FakeBlock::ToolUse(
                    "Write", R"({"file_path":"notes.txt","content":"notes\n"})")}),
                FakeTurn::Reply({FakeBlock::Text("Implemented. Shall I add a README entry too?")}),
                FakeTurn::Reply({FakeBlock::Text("Understood, leaving the README alone.")})});
  StartRunner();
  RunScenario("question");
  bool answered = false;
  for (const auto& r : fake_.requests()) {
    if (r.key == "KEY-UI-QUESTION" && absl::StrContains(r.body, "No, that is all.")) answered = true;
  }
  EXPECT_TRUE(answered) << "the answer typed in the page never reached the agent";
}

TEST_F(BrowserTest, PausesResumesAndCancelsATaskFromThePage) {
  StartRunner();
  const std::string task_id = CommandTask(
      "tick for a while",
      "i=0; while [ $i -lt 900 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done");
  RunScenario("controls", {{"TASK_ID", task_id}});
  EXPECT_EQ(Str(Obj(WaitForTaskState(task_id, "canceled"), "task"), "state"), "canceled");
}

TEST_F(BrowserTest, DiffViewOfACommittedTaskShowsTheFilesAndTheirLines) {
  StartRunner();
  const std::string task_id = CommandTask(
      "write notes",
      "printf 'alpha line\\nbeta line\\n' > notes.txt && printf 'Changed by the task.\\n' >> README.md",
      R"(,"autoCommit":true)");
  const Struct task = Obj(WaitForTaskState(task_id, "completed", 60000), "task");
  ASSERT_EQ(Str(Obj(task, "artifacts"), "commitSha").size(), 40u) << task.DebugString();
  RunScenario("diff", {{"TASK_ID", task_id},
                       {"COMMIT_SHA", Str(Obj(task, "artifacts"), "commitSha")},
                       {"BRANCH", Str(Obj(task, "artifacts"), "branch")}});
}

// Needs GET /api/runners (the broker's ListRunners through the gateway).
TEST_F(BrowserTest, RunnersViewShowsTheLocalRunnerWithItsSlots) {
  StartRunner();
  RunScenario("runners", {{"RUNNER_NAME", "laptop"}, {"RUNNER_SLOTS", "0 / 2 used"}});
}

TEST_F(BrowserTest, BoardResumesAfterTheGatewayRestartsWithoutDuplicateOrMissingRows) {
  StartRunner();
  const std::string first = CommandTask("before one", "echo one");
  const std::string second = CommandTask("before two", "echo two");
  WaitForTaskState(first, "completed", 60000);
  WaitForTaskState(second, "completed", 60000);
  const std::string slow =
      CommandTask("slow one", "i=0; while [ $i -lt 900 ]; do i=$((i+1)); sleep 0.1; done");
  std::string made_while_down, made_after;
  // While the browser's gateway is down, the changes go through another.
  std::unique_ptr<Process> other;
  int other_port = 0;
  auto call_other = [&](const std::string& method, const std::string& path,
                        const std::string& body) {
    return CallAt(absl::StrCat("http://127.0.0.1:", other_port), method, path, key_, body);
  };
  const Requests requests = [&](const std::string& request) -> std::string {
    if (request == "stop-gateway") {
      StopGateway();
      return "";
    }
    if (request == "change-while-down") {
      other_port = testing::FreePort();
      other = Process::Start(testing::BuiltBinary("gateway/buildd-gateway"),
                             {absl::StrCat("--listen=127.0.0.1:", other_port),
                              absl::StrCat("--accounts_addr=", mesh_.accounts_addr()),
                              absl::StrCat("--broker_addr=", mesh_.broker_addr())},
                             {}, mesh_.dir() + "/gateway-other.log");
      EXPECT_TRUE(other->WaitForLog("gateway listening on", 30000)) << other->Log();
      HttpResult made = call_other(
          "POST", "/api/tasks",
          absl::StrCat(R"({"workspaceId":")", workspace_id_,
                       R"(","title":"made while down","provider":"command","command":"echo down"})"));
      EXPECT_EQ(made.status, 201) << made.body;
      made_while_down = Str(Json(made.body), "id");
      HttpResult cancel = call_other("POST", absl::StrCat("/api/tasks/", slow, "/cancel"), "");
      EXPECT_EQ(cancel.status, 200) << cancel.body;
      // Both settle before the browser's gateway is back.
      for (const auto& [id, state] : {std::pair{made_while_down, "completed"},
                                      std::pair{slow, "canceled"}}) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (std::chrono::steady_clock::now() < deadline &&
               Str(Obj(Json(call_other("GET", "/api/tasks/" + id, "").body), "task"), "state") !=
                   state) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      return made_while_down;
    }
    if (request == "start-gateway") {
      StartGateway();
      return "";
    }
    if (request == "create-before") {
      return CommandTask("made before", "echo before");
    }
    if (request == "create-after") {
      made_after = CommandTask("made after", "echo after");
      return made_after;
    }
    ADD_FAILURE() << "unknown request " << request;
    return "";
  };
  RunScenario("restart", {{"TASK_IDS", absl::StrJoin({first, second, slow}, ",")}}, requests);
  if (other) other->Stop(SIGTERM, 10000);
}

TEST_F(BrowserTest, EveryPageLoadsWithoutConsoleErrorsAndTheLiveIndicatorSaysLive) {
  StartRunner();
  const std::string task_id = CommandTask("a finished task", "echo finished");
  WaitForTaskState(task_id, "completed", 60000);
  const std::string pending = CommandTask("needs a gpu", "nvidia-smi", R"(,"requiredLabels":["gpu"])");
  std::string failing;
  const Requests requests = [&](const std::string& request) -> std::string {
    EXPECT_EQ(request, "create-failing");
    failing = CommandTask("fails on purpose", "echo about to fail; exit 3");
    return failing;
  };
  RunScenario("pages", {{"TASK_ID", task_id}, {"PENDING_ID", pending}}, requests, admin_key());
  ASSERT_FALSE(failing.empty());
  EXPECT_EQ(Str(Obj(WaitForTaskState(failing, "failed"), "task"), "state"), "failed");
}

}  // namespace
}  // namespace buildd
