// The attacks of a key that may create and claim tasks in its own
// workspace, each made as an attacker would, over real HTTP and gRPC against
// the real binaries: tasks reaching out of their sandbox, a runner stream
// taking over another account's worker, credentials and transcripts of
// another account, the accounts service without a service key, caches shared
// between workspaces, and the database without its password.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "buildd/v1/accounts.grpc.pb.h"
#include "buildd/v1/runner.grpc.pb.h"
#include "common/db.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/files.h"

namespace buildd {
namespace {

namespace pb = ::buildd::v1;
using ::testing::HasSubstr;
using ::testing::Not;

class SecurityTest : public MeshTest {
 protected:
  // Runs `command` as a task of `s` and returns its events once it ended.
  std::vector<SseItem> RunTask(const Setup& s, const std::string& command,
                               const std::string& extra = "") {
    auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                                  {{"Authorization", "Bearer " + mesh_.admin_key()}});
    EXPECT_TRUE(stream.ok());
    const std::string id = CreateTask(s.api_key, s.workspace_id, command, extra);
    return ReadTaskEvents(**stream, id, {"completed", "error", "failed", "canceled"});
  }


  std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
    return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  }

  // A fake `claude` that prints its environment's ANTHROPIC_API_KEY as its
  // result and leaves a transcript where Claude Code keeps one.
  std::string FakeClaude() {
    const std::string dir = mesh_.dir() + "/fake-cli";
    std::filesystem::create_directories(dir);
    const std::string path = dir + "/claude";
    testing::WriteFile(path, R"SH(#!/bin/sh
if [ "$1" = "--version" ]; then echo "2.0.0 (Claude Code)"; exit 0; fi
sid=5e55a1d0-0000-4000-8000-000000000001
project=$(pwd | sed 's/[^A-Za-z0-9]/-/g')
mkdir -p "$CLAUDE_CONFIG_DIR/projects/$project"
echo '{"type":"user","message":{"role":"user","content":"hello"}}' > "$CLAUDE_CONFIG_DIR/projects/$project/$sid.jsonl"
echo "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"$sid\",\"model\":\"m\"}"
echo "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"key=[${ANTHROPIC_API_KEY:-none}]\",\"session_id\":\"$sid\",\"total_cost_usd\":0}"
)SH");
    chmod(path.c_str(), 0755);
    return path;
  }

  Setup SecondAccountIn(const std::string& workspace_id, bool claim, bool create,
                        const std::string& extra = "") {
    Setup s;
    HttpResult acc = Call("POST", "/api/accounts", mesh_.admin_key(),
                          absl::StrCat(R"({"type":"service","name":"other")", extra, "}"));
    EXPECT_EQ(acc.status, 201) << acc.body;
    s.account_id = Str(Json(acc.body), "id");
    s.api_key = Str(Json(acc.body), "apiKey");
    s.workspace_id = workspace_id;
    Grant(s.account_id, workspace_id, claim, create);
    return s;
  }

  void Grant(const std::string& account_id, const std::string& workspace_id, bool claim,
             bool create, bool share = false) {
    HttpResult grant = Call(
        "POST", absl::StrCat("/api/accounts/", account_id, "/workspaces"), mesh_.admin_key(),
        absl::StrCat(R"({"workspaceId":")", workspace_id, R"(","canClaim":)", claim ? "true" : "false",
                     R"(,"canCreate":)", create ? "true" : "false", R"(,"shareCredentials":)",
                     share ? "true" : "false", "}"));
    ASSERT_EQ(grant.status, 200) << grant.body;
  }
};

// 1. The sandbox: the runner's environment and files, other processes.
TEST_F(SecurityTest, ATaskCannotReadTheRunnersKeyOrFilesNorSeeOrKillItsProcesses) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  // What a runner's machine holds next to its work directory.
  const std::string planted = "planted-secret-7d1f";
  testing::WriteFile(mesh_.dir() + "/secrets", planted + "\n");
  testing::Process& runner = mesh_.StartRunner(s.api_key, "victim");
  const std::vector<SseItem> events =
      RunTask(s, "tr '\\0' '\\n' </proc/$PPID/environ; cat ../../../secrets; printenv;"
                 " echo procs=$(ls /proc | grep -c '^[0-9]'); kill -9 $PPID; echo uid=$(id -u);"
                 " echo listing; ls -a " + mesh_.dir() + "; ls /root || echo no-root");
  const std::string out = OutputOf(events);
  EXPECT_THAT(out, Not(HasSubstr(s.api_key)));
  EXPECT_THAT(out, Not(HasSubstr(planted)));
  EXPECT_THAT(out, Not(HasSubstr("BUILDD_API_KEY")));
  EXPECT_THAT(out, Not(HasSubstr(mesh_.admin_key())));
  // Only the empty directories leading to its own mounts.
  EXPECT_THAT(out.substr(out.find("listing")), Not(HasSubstr("secrets")));
  EXPECT_THAT(out.substr(out.find("listing")), Not(HasSubstr("broker")));
  EXPECT_THAT(out, HasSubstr("no-root"));
  EXPECT_THAT(out, Not(HasSubstr("uid=0")));
  // Only the sandbox's own processes: bwrap's init, the shell, ls, grep.
  const size_t at = out.find("procs=");
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_LE(std::stoi(out.substr(at + 6)), 6) << out;
  // The runner survived `kill -9 $PPID` and takes the next task.
  EXPECT_TRUE(runner.Running());
  EXPECT_THAT(OutputOf(RunTask(s, "echo still-here")), HasSubstr("still-here"));
  EXPECT_THAT(AllLogs(), Not(HasSubstr(s.api_key)));
}

// 1. A task's memory and processes are bounded (its own cgroups).
TEST_F(SecurityTest, ATasksMemoryAndProcessesAreBounded) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "bounded", {"--task_memory=67108864", "--task_pids=40"});
  // One line of 256 MiB: tail holds all of it.
  const std::string hog = OutputOf(RunTask(s, "head -c 268435456 /dev/zero | tail -n 1 >/dev/null"));
  EXPECT_THAT(hog, HasSubstr("memory limit of 67108864 bytes")) << hog;
  const std::string forks =
      OutputOf(RunTask(s, "for i in $(seq 1 80); do sleep 5 & done; echo started-all"));
  EXPECT_THAT(forks, HasSubstr("fork")) << forks;
  // The limits are the task's own: the next one runs as before.
  EXPECT_THAT(OutputOf(RunTask(s, "head -c 16777216 /dev/zero | tail -n 1 | wc -c")),
              HasSubstr("16777216"));
}

// 1. Another task's worktree and environment are out of sight.
TEST_F(SecurityTest, ATaskCannotSeeAnotherRunningTasksDirectoryOrEnvironment) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "shared", {"--max_tasks=2"});
  auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                                {{"Authorization", "Bearer " + mesh_.admin_key()}});
  ASSERT_TRUE(stream.ok());
  const std::string victim =
      CreateTask(s.api_key, s.workspace_id, "echo victim-data > mine.txt; echo ready; sleep 60");
  ReadTaskEvents(**stream, victim, {"output"});
  const std::string victim_dir = absl::StrCat(mesh_.dir(), "/shared/tasks/", victim);
  ASSERT_TRUE(std::filesystem::exists(victim_dir + "/mine.txt"));
  const std::string out = OutputOf(RunTask(
      s, absl::StrCat("cat ", victim_dir, "/mine.txt || echo no-file; ",
                      "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c ", victim,
                      " || true; echo listing; ls ", mesh_.dir(), "/shared/tasks")));
  EXPECT_THAT(out, Not(HasSubstr("victim-data")));
  EXPECT_THAT(out, HasSubstr("no-file"));
  EXPECT_THAT(out.substr(out.find("listing")), Not(HasSubstr(victim)));
  EXPECT_THAT(out, HasSubstr("\n0\n")) << "another task's environment was readable: " << out;
  ASSERT_EQ(Call("POST", "/api/tasks/" + victim + "/cancel", s.api_key).status, 200);
}

int CountEvents(const std::string& database_url, const std::string& task,
                const std::string& condition) {
  soci::session sql(soci::postgresql, *ToConninfo(database_url));
  int count = -1;
  sql << absl::StrCat("SELECT count(*) FROM events WHERE task_id = :t AND (", condition, ")"),
      soci::use(task), soci::into(count);
  return count;
}

// 3. A runner stream of another account cannot take over a running worker.
TEST_F(SecurityTest, HelloResumeOfAnotherAccountsWorkerIsRefusedAndItsFinishedIgnored) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "owner");
  const std::string task = CreateTask(s.api_key, s.workspace_id, "sleep 60");
  const Struct running = WaitForTaskState(task, "running");
  const std::string worker = Str(Obj(running, "task"), "workerId");
  ASSERT_FALSE(worker.empty());
  const int64_t epoch = 1;

  // Any valid key of another account, with the ids GET /api/tasks shows.
  Setup thief = CreateAccountAndWorkspace("service", true, true);
  RawRunner stream(mesh_.broker_addr(), thief.api_key);
  const pb::BrokerMessage welcome = stream.Hello("thief", {{worker, epoch}});
  ASSERT_TRUE(welcome.has_welcome());
  EXPECT_THAT(std::vector<std::string>(welcome.welcome().stale_workers().begin(),
                                       welcome.welcome().stale_workers().end()),
              ::testing::Contains(worker));
  // A forged ending with forged artifacts.
  pb::RunnerMessage finished;
  finished.mutable_finished()->set_worker_id(worker);
  finished.mutable_finished()->set_epoch(epoch);
  finished.mutable_finished()->set_outcome(pb::Finished::completed);
  finished.mutable_finished()->mutable_artifacts()->set_commit_sha("forged");
  stream.Write(finished);
  stream.Event(worker, epoch, 1000, "output", "forged-line");
  // A forged approval carrying a checkpoint: a session of its own for the
  // task's next attempt to continue.
  pb::RunnerMessage approval;
  pb::RunnerEvent* forged = approval.mutable_event();
  forged->set_worker_id(worker);
  forged->set_epoch(epoch);
  forged->set_seq(1001);
  forged->mutable_event()->set_type("input");
  forged->mutable_event()->set_text("forged-approval");
  forged->mutable_checkpoint()->mutable_session()->set_provider("claude");
  forged->mutable_checkpoint()->mutable_session()->set_session_id("forged-session");
  forged->mutable_checkpoint()->mutable_session()->set_data("forged transcript");
  forged->mutable_checkpoint()->set_prompt("forged prompt");
  stream.Write(approval);
  // Each is acked and dropped; the last ack covers the approval.
  bool acked = false;
  for (int i = 0; i < 5 && !acked; ++i) {
    const pb::BrokerMessage m = stream.Read();
    ASSERT_TRUE(m.has_ack()) << m.DebugString();
    acked = m.ack().up_to_seq() == 1001;
  }
  EXPECT_TRUE(acked);
  stream.Close();
  {
    soci::session sql(soci::postgresql, *ToConninfo(mesh_.database_url()));
    int sessions = -1;
    sql << "SELECT count(*) FROM session_snapshots WHERE task_id = :t", soci::use(task),
        soci::into(sessions);
    EXPECT_EQ(sessions, 0) << "a stranger's checkpoint was kept";
  }

  const Struct after = Json(Call("GET", "/api/tasks/" + task, mesh_.admin_key()).body);
  EXPECT_EQ(Str(Obj(after, "task"), "state"), "running") << after.DebugString();
  EXPECT_THAT(after.DebugString(), Not(HasSubstr("forged")));
  EXPECT_EQ(CountEvents(mesh_.database_url(), task, "body::text LIKE '%forged%'"), 0);
  ASSERT_EQ(Call("POST", "/api/tasks/" + task + "/cancel", s.api_key).status, 200);
  WaitForTaskState(task, "canceled");
}

// 3. A runner's own worker cannot be given broker events (created,
// completed, budget) nor a runner name.
TEST_F(SecurityTest, ARunnerCannotWriteTheBrokersEventTypes) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  RawRunner stream(mesh_.broker_addr(), s.api_key);
  ASSERT_TRUE(stream.Hello("liar").has_welcome());
  const std::string task = CreateTask(s.api_key, s.workspace_id, "true");
  const pb::BrokerMessage in = stream.Read();
  ASSERT_TRUE(in.has_assign());
  const std::string worker = in.assign().worker().id();
  const int64_t epoch = in.assign().epoch();
  int64_t seq = 0;
  for (const char* type : {"completed", "budget", "created", "assigned"}) {
    stream.Event(worker, epoch, ++seq, type, "forged");
    ASSERT_TRUE(stream.Read().has_ack());
  }
  stream.Event(worker, epoch, ++seq, "started", "");
  ASSERT_TRUE(stream.Read().has_ack());
  stream.Close();

  // The broker's own created and assigned are the task's first two events.
  EXPECT_EQ(CountEvents(mesh_.database_url(), task,
                        absl::StrCat("body::text LIKE '%forged%' OR type IN ('completed', 'budget') "
                                     "OR (type IN ('created', 'assigned') AND id > (SELECT min(id) "
                                     "+ 1 FROM events WHERE task_id = '", task, "'))")),
            0);
  EXPECT_EQ(CountEvents(mesh_.database_url(), task, "body::text LIKE '%someone-else%'"), 0);
  EXPECT_NE(Str(Obj(Json(Call("GET", "/api/tasks/" + task, s.api_key).body), "task"), "state"),
            "completed");
}

// 3. A stream that never says Hello is closed; one key holds a bounded
// number of streams.
class StreamLimitsTest : public MeshTest {
 protected:
  static Mesh::Options Limits() {
    Mesh::Options options;
    options.broker_args = {"--hello_timeout_ms=500", "--max_streams_per_key=2"};
    return options;
  }
  StreamLimitsTest() : MeshTest(Limits()) {}
};

TEST_F(StreamLimitsTest, ASilentStreamIsClosedAndAKeyHoldsAtMostItsLimit) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  {
    RawRunner silent(mesh_.broker_addr(), s.api_key);
    const auto start = std::chrono::steady_clock::now();
    const grpc::Status closed = silent.Finish();
    EXPECT_EQ(closed.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << closed.error_message();
    EXPECT_THAT(closed.error_message(), HasSubstr("Hello"));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  }
  RawRunner first(mesh_.broker_addr(), s.api_key), second(mesh_.broker_addr(), s.api_key);
  ASSERT_TRUE(first.Hello("one").has_welcome());
  ASSERT_TRUE(second.Hello("two").has_welcome());
  RawRunner third(mesh_.broker_addr(), s.api_key);
  EXPECT_FALSE(third.Hello("three").has_welcome());
  const grpc::Status refused = third.Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  // Another key is not held up by this one's streams.
  Setup other = CreateAccountAndWorkspace("service", true, true);
  RawRunner fine(mesh_.broker_addr(), other.api_key);
  EXPECT_TRUE(fine.Hello("other").has_welcome());
}

// 2. A claimAll account's runner takes tasks of every workspace without a
// grant or admin rights; only an admin makes such an account.
TEST_F(SecurityTest, AClaimAllAccountClaimsEverywhereAndOnlyAnAdminMakesOne) {
  Setup s = CreateAccountAndWorkspace("service", false, true);
  HttpResult denied = Call("POST", "/api/accounts", s.api_key,
                           R"({"type":"service","name":"sneaky","claimAll":true})");
  EXPECT_EQ(denied.status, 403) << denied.body;
  HttpResult made = Call("POST", "/api/accounts", mesh_.admin_key(),
                         R"({"type":"service","name":"everywhere","claimAll":true})");
  ASSERT_EQ(made.status, 201) << made.body;
  const std::string key = Str(Json(made.body), "apiKey");
  EXPECT_TRUE(Obj(Json(made.body), "account").fields().at("claimAll").bool_value());
  mesh_.StartRunner(key, "everywhere");
  const std::string task = CreateTask(s.api_key, s.workspace_id, "echo claimed");
  const Struct done = WaitForTaskState(task, "completed");
  EXPECT_THAT(done.DebugString(), HasSubstr("everywhere"));
  // It is not an admin.
  EXPECT_EQ(Call("GET", "/api/accounts", key).status, 403);
}

// 1. network: "none" leaves a task without network; the setting is checked.
TEST_F(SecurityTest, ATaskWithNetworkNoneReachesNothing) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "offline");
  const std::string probe =
      absl::StrCat("curl -s -o /dev/null -w 'http=%{http_code}\\n' --max-time 5 ",
                   mesh_.gateway_url(), "/health || true");
  EXPECT_THAT(OutputOf(RunTask(s, probe)), HasSubstr("http=200"));
  EXPECT_THAT(OutputOf(RunTask(s, probe, R"(,"network":"none")")), HasSubstr("http=000"));
  HttpResult bad = Call("POST", "/api/tasks", s.api_key,
                        absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                     R"(","provider":"command","command":"true","network":"off"})"));
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_THAT(bad.body, HasSubstr("network"));
  // A workspace's setting reaches its tasks.
  HttpResult ws = Call("POST", "/api/workspaces", mesh_.admin_key(),
                       R"({"name":"offline","network":"none"})");
  ASSERT_EQ(ws.status, 201) << ws.body;
  EXPECT_EQ(Str(Json(ws.body), "network"), "none");
  Setup offline = s;
  offline.workspace_id = Str(Json(ws.body), "id");
  Grant(s.account_id, offline.workspace_id, true, true);
  EXPECT_THAT(OutputOf(RunTask(offline, probe)), HasSubstr("http=000"));
}

// 4. An account's provider key reaches only its own tasks, or those its
// grant shares it with.
TEST_F(SecurityTest, ProviderCredentialsReachOnlyTheAccountsOwnOrSharedTasks) {
  const std::string key = "sk-ant-api03-runner-owners-key";
  Setup owner = CreateAccountAndWorkspace(
      "service", true, true, absl::StrCat(R"(,"anthropicApiKey":")", key, R"(")"));
  mesh_.StartRunner(owner.api_key, "keyholder",
                    {absl::StrCat("--claude=", FakeClaude()), "--codex=/nonexistent/codex"});
  Setup other = SecondAccountIn(owner.workspace_id, /*claim=*/false, /*create=*/true);
  const auto agent_task = [&](const Setup& as) {
    auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + as.workspace_id,
                                  {{"Authorization", "Bearer " + mesh_.admin_key()}});
    HttpResult r = Call("POST", "/api/tasks", as.api_key,
                        absl::StrCat(R"({"workspaceId":")", as.workspace_id,
                                     R"(","provider":"claude","prompt":"printenv ANTHROPIC_API_KEY"})"));
    EXPECT_EQ(r.status, 201) << r.body;
    return OutputOf(ReadTaskEvents(**stream, Str(Json(r.body), "id"),
                                   {"completed", "error", "failed"}));
  };
  EXPECT_THAT(agent_task(owner), HasSubstr(absl::StrCat("key=[", key, "]")));
  const std::string stranger = agent_task(other);
  EXPECT_THAT(stranger, Not(HasSubstr(key)));
  EXPECT_THAT(stranger, HasSubstr("key=[none]"));
  // Shared by the owner's grant: now it reaches the other account's task.
  Grant(owner.account_id, owner.workspace_id, true, true, /*share=*/true);
  std::string shared;
  for (int i = 0; i < 100 && !absl::StrContains(shared, key); ++i) {
    shared = agent_task(other);
  }
  EXPECT_THAT(shared, HasSubstr(absl::StrCat("key=[", key, "]")));
  EXPECT_THAT(AllLogs(), Not(HasSubstr(key)));
}

// 4. The accounts service answers WatchChanges and RunnerCredentials to
// the services' key only.
TEST_F(SecurityTest, AccountsServiceCallsForServicesRefuseAccountKeys) {
  Setup s = CreateAccountAndWorkspace("service", true, true,
                                      R"(,"anthropicApiKey":"sk-ant-api03-watched")");
  auto stub = pb::AccountService::NewStub(Channel(mesh_.accounts_addr()));
  for (const std::string& key : {std::string(), mesh_.admin_key(), s.api_key}) {
    grpc::ClientContext watch;
    if (!key.empty()) watch.AddMetadata("authorization", "Bearer " + key);
    watch.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    auto reader = stub->WatchChanges(&watch, pb::WatchChangesRequest());
    pb::AccountChange change;
    EXPECT_FALSE(reader->Read(&change)) << "WatchChanges answered key '" << key << "'";
    const grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                status.error_code() == grpc::StatusCode::PERMISSION_DENIED)
        << status.error_code();

    grpc::ClientContext creds;
    if (!key.empty()) creds.AddMetadata("authorization", "Bearer " + key);
    pb::RunnerCredentialsRequest request;
    request.set_api_key(s.api_key);
    pb::RunnerCredentialsResponse response;
    const grpc::Status answered = stub->RunnerCredentials(&creds, request, &response);
    EXPECT_FALSE(answered.ok()) << "RunnerCredentials answered key '" << key << "'";
    EXPECT_TRUE(response.env().empty());
  }
  // The broker's key is the service key: it gets them.
  grpc::ClientContext creds;
  creds.AddMetadata("authorization", "Bearer " + mesh_.service_key());
  pb::RunnerCredentialsRequest request;
  request.set_api_key(s.api_key);
  pb::RunnerCredentialsResponse response;
  ASSERT_TRUE(stub->RunnerCredentials(&creds, request, &response).ok());
  EXPECT_EQ(response.env().at("ANTHROPIC_API_KEY"), "sk-ant-api03-watched");
}

// 4. A transcript goes only to the account that made it.
TEST_F(SecurityTest, ResumeFromAnotherAccountsTaskIsRefused) {
  Setup owner = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(owner.api_key, "agents",
                    {absl::StrCat("--claude=", FakeClaude()), "--codex=/nonexistent/codex"});
  HttpResult created = Call("POST", "/api/tasks", owner.api_key,
                            absl::StrCat(R"({"workspaceId":")", owner.workspace_id,
                                         R"(","provider":"claude","prompt":"remember this"})"));
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string first = Str(Json(created.body), "id");
  WaitForTaskState(first, "completed");
  Setup thief = SecondAccountIn(owner.workspace_id, /*claim=*/true, /*create=*/true);
  const std::string body = absl::StrCat(R"({"workspaceId":")", owner.workspace_id,
                                        R"(","resumeFrom":")", first,
                                        R"(","prompt":"what did I say?","requiredLabels":["mine"]})");
  HttpResult stolen = Call("POST", "/api/tasks", thief.api_key, body);
  EXPECT_EQ(stolen.status, 403) << stolen.body;
  EXPECT_THAT(stolen.body, HasSubstr("resumeFrom"));
  // Its owner may continue it.
  EXPECT_EQ(Call("POST", "/api/tasks", owner.api_key,
                 absl::StrCat(R"({"workspaceId":")", owner.workspace_id, R"(","resumeFrom":")",
                              first, R"(","prompt":"go on"})"))
                .status,
            201);
}

// 5. Two workspaces of one repository never share a branch or a stash.
TEST_F(SecurityTest, WorkspacesOfOneRepositoryDoNotShareBranchesOrStashes) {
  const std::string origin = mesh_.dir() + "/origin.git";
  const std::string seed = mesh_.dir() + "/seed";
  testing::Sh(absl::StrCat("git init -q --bare -b main ", origin, " && git init -q -b main ", seed,
                           " && cd ", seed, " && echo x > README.md && git add README.md",
                           " && git -c user.name=S -c user.email=s@x commit -q -m first",
                           " && git push -q ", origin, " main"));
  Setup s = CreateAccountAndWorkspace("service", true, true);
  std::vector<Setup> spaces;
  for (const char* name : {"victim", "attacker"}) {
    HttpResult ws = Call("POST", "/api/workspaces", mesh_.admin_key(),
                         absl::StrCat(R"({"name":")", name, R"(","repoUrl":"file://)", origin,
                                      R"(","defaultBranch":"main"})"));
    ASSERT_EQ(ws.status, 201) << ws.body;
    Setup in = s;
    in.workspace_id = Str(Json(ws.body), "id");
    Grant(s.account_id, in.workspace_id, true, true);
    spaces.push_back(in);
  }
  mesh_.StartRunner(s.api_key, "cached");
  // The victim's task leaves uncommitted work on its branch.
  OutputOf(RunTask(spaces[0], "echo victim-secret > secret.txt",
                   R"(,"workBranch":"feature/shared")"));
  const std::string out = OutputOf(RunTask(
      spaces[1], "cat secret.txt || echo no-secret; git stash list; git log --all --oneline",
      R"(,"workBranch":"feature/shared")"));
  EXPECT_THAT(out, Not(HasSubstr("victim-secret")));
  EXPECT_THAT(out, HasSubstr("no-secret"));
  EXPECT_THAT(out, Not(HasSubstr("left uncommitted")));
}

// Point 2: the database asks for its password.
TEST(DatabaseTest, RefusesALoginWithoutThePassword) {
  const char* url = std::getenv("BUILDD_TEST_DATABASE_URL");
  ASSERT_NE(url, nullptr);
  std::string no_password = url;
  const size_t at = no_password.find('@');
  const size_t colon = no_password.find(':', std::string("postgresql://").size());
  ASSERT_NE(at, std::string::npos);
  ASSERT_LT(colon, at) << "the test database URL carries a password";
  no_password.erase(colon, at - colon);
  std::string message;
  try {
    soci::session sql(soci::postgresql, *ToConninfo(no_password));
    ADD_FAILURE() << "logged in without a password: " << no_password;
  } catch (const soci::soci_error& e) {
    message = e.what();
  }
  EXPECT_THAT(message, HasSubstr("password"));
}

}  // namespace
}  // namespace buildd
