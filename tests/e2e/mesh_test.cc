// The four real binaries as processes, driven through the gateway's REST API
// and SSE stream with real HTTP, over a private PostgreSQL.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <soci/soci.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/db.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/files.h"
#include "tests/testing/http_client.h"
#include "tests/testing/matchers.h"

namespace buildd {
namespace {

using ::buildd::testing::HttpResult;
using ::buildd::testing::IsOk;
using ::buildd::testing::Mesh;
using ::buildd::testing::SseItem;
using ::buildd::testing::SseStream;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Struct = google::protobuf::Struct;

// Established TCP connections of process `pid` to local port `port`.
int ConnectionsTo(pid_t pid, int port) {
  std::set<std::string> inodes;
  const std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
  if (DIR* d = opendir(fd_dir.c_str())) {
    while (dirent* e = readdir(d)) {
      char target[256];
      const ssize_t n = readlink((fd_dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      std::string t(target, n);
      if (absl::StartsWith(t, "socket:[")) inodes.insert(t.substr(8, t.size() - 9));
    }
    closedir(d);
  }
  char port_hex[8];
  std::snprintf(port_hex, sizeof port_hex, "%04X", port);
  int count = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 10) continue;
      // remote address ends with :PORT, state 01 = ESTABLISHED
      if (absl::EndsWith(f[2], std::string(":") + port_hex) && f[3] == "01" && inodes.count(f[9])) {
        ++count;
      }
    }
  }
  return count;
}

TEST_F(MeshTest, RestFlowRunsACommandTaskAndStreamsItsEventsResumably) {
  Setup s = CreateAccountAndWorkspace("service", true, true,
                                      R"(,"authType":"api","anthropicApiKey":"sk-ant-e2e-secret")");
  EXPECT_THAT(s.api_key, StartsWith("buildd_service_"));
  testing::Process& runner = mesh_.StartRunner(s.api_key, "laptop", {"--max_tasks=2"});

  auto live = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                              {{"Authorization", "Bearer " + mesh_.admin_key()}});
  ASSERT_THAT(live, IsOk());
  ASSERT_EQ((*live)->status(), 200);
  EXPECT_THAT((*live)->Header("Content-Type"), HasSubstr("text/event-stream"));

  const int64_t streams_before = Metric("buildd_broker_runner_streams_total");
  const auto created_at = std::chrono::steady_clock::now();
  const std::string task_id =
      CreateTask(s.api_key, s.workspace_id,
                 "echo line-1; echo line-2; echo to-stderr >&2; echo line-3; pwd");
  std::vector<SseItem> events = ReadTaskEvents(**live, task_id, {"completed", "error"});
  const auto finished_at = std::chrono::steady_clock::now();

  std::vector<std::string> types, texts;
  for (const auto& e : events) {
    types.push_back(e.event);
    Struct body = Json(e.data);
    EXPECT_EQ(e.id, Str(body, "id")) << "the SSE id is the event id";
    if (e.event == "output") texts.push_back(Str(body, "stream") + ":" + Str(body, "text"));
  }
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.front(), "created");
  EXPECT_EQ(types[1], "assigned");
  EXPECT_EQ(types.back(), "completed");
  EXPECT_THAT(types, ::testing::Contains("started"));
  ASSERT_GE(texts.size(), 5u);
  EXPECT_EQ(texts[0], "stdout:line-1");
  EXPECT_EQ(texts[1], "stdout:line-2");
  EXPECT_THAT(texts, ::testing::Contains("stderr:to-stderr"));
  EXPECT_THAT(texts, ::testing::Contains("stdout:line-3"));
  // The command ran in the task's own directory (pwd, its last stdout line;
  // stderr comes through its own pipe and may interleave anywhere).
  std::vector<std::string> stdout_lines;
  for (const auto& t : texts) {
    if (absl::StartsWith(t, "stdout:")) stdout_lines.push_back(t);
  }
  ASSERT_EQ(stdout_lines.size(), 4u);
  EXPECT_EQ(stdout_lines[2], "stdout:line-3");
  EXPECT_THAT(stdout_lines[3], HasSubstr(task_id));
  Struct completed = Json(events.back().data);
  EXPECT_EQ(Num(completed, "exitCode"), 0);

  // Ids increase without gaps across this task's events... and the events
  // of the whole stream never repeat.
  int64_t prev = 0;
  for (const auto& e : events) {
    int64_t id = 0;
    ASSERT_TRUE(absl::SimpleAtoi(e.id, &id));
    EXPECT_GT(id, prev);
    prev = id;
  }

  // Pushed, not polled: the runner holds exactly one TCP connection to the
  // broker, opened one stream, and got the task long before a poll interval
  // (its heartbeat is 10 s) could have passed.
  EXPECT_EQ(ConnectionsTo(runner.pid(), std::stoi(mesh_.broker_addr().substr(10))), 1);
  EXPECT_EQ(Metric("buildd_broker_runner_streams_total"), streams_before);
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(finished_at - created_at).count(),
            5000);

  Struct final_state = WaitForTaskState(task_id, "completed");
  const auto& workers = final_state.fields().at("workers").list_value();
  ASSERT_EQ(workers.values_size(), 1);
  const Struct& worker = workers.values(0).struct_value();
  EXPECT_EQ(Str(worker, "state"), "completed");
  EXPECT_EQ(Str(worker, "runnerName"), "laptop");
  EXPECT_EQ(Str(Obj(final_state, "task"), "workerId"), Str(worker, "id"));

  // Secrets: nowhere in responses, logs or the database in plain text.
  HttpResult accounts = Call("GET", "/api/accounts", mesh_.admin_key());
  EXPECT_THAT(accounts.body, Not(HasSubstr("sk-ant-e2e-secret")));
  EXPECT_THAT(accounts.body, Not(HasSubstr(s.api_key)));
  for (testing::Process* p : {&mesh_.accounts(), &mesh_.broker(), &mesh_.gateway(), &runner}) {
    EXPECT_THAT(p->Log(), Not(HasSubstr("sk-ant-e2e-secret")));
    EXPECT_THAT(p->Log(), Not(HasSubstr(s.api_key)));
    EXPECT_THAT(p->Log(), Not(HasSubstr(mesh_.admin_key())));
  }
  auto pool = OpenPool(mesh_.database_url(), 1);
  ASSERT_THAT(pool, IsOk());
  soci::session sql(**pool);
  int plain = 0;
  sql << "SELECT count(*) FROM accounts a, api_keys k WHERE position('sk-ant-e2e-secret' in"
         " encode(a.credentials, 'escape')) > 0 OR k.key_hash = :k",
      soci::use(s.api_key), soci::into(plain);
  EXPECT_EQ(plain, 0);
}

TEST_F(MeshTest, SseResumesFromLastEventIdWithoutGapsOrRepeats) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "resumer");
  const std::string task_id = CreateTask(
      s.api_key, s.workspace_id, "for i in $(seq 1 40); do echo n$i; done");
  WaitForTaskState(task_id, "completed");

  const testing::Headers auth = {{"Authorization", "Bearer " + mesh_.admin_key()}};
  // The reference: the whole history in one read.
  auto whole = SseStream::Open(mesh_.gateway_url(), "/api/events?taskId=" + task_id, auth);
  ASSERT_THAT(whole, IsOk());
  std::vector<SseItem> all = ReadTaskEvents(**whole, task_id, {"completed"});
  ASSERT_GT(all.size(), 40u);

  // Read part, go away, come back with Last-Event-ID, then with ?lastEventId=.
  std::vector<std::string> ids;
  auto first = SseStream::Open(mesh_.gateway_url(), "/api/events?taskId=" + task_id, auth);
  ASSERT_THAT(first, IsOk());
  for (int i = 0; i < 15; ++i) {
    auto e = (*first)->NextEvent(absl::Seconds(10));
    ASSERT_THAT(e, IsOk());
    ids.push_back(e->id);
  }
  (*first)->Close();
  testing::Headers resume = auth;
  resume.push_back({"Last-Event-ID", ids.back()});
  auto second = SseStream::Open(mesh_.gateway_url(), "/api/events?taskId=" + task_id, resume);
  ASSERT_THAT(second, IsOk());
  for (int i = 0; i < 15; ++i) {
    auto e = (*second)->NextEvent(absl::Seconds(10));
    ASSERT_THAT(e, IsOk());
    ids.push_back(e->id);
  }
  (*second)->Close();
  auto third = SseStream::Open(
      mesh_.gateway_url(), absl::StrCat("/api/events?taskId=", task_id, "&lastEventId=", ids.back()),
      auth);
  ASSERT_THAT(third, IsOk());
  for (const SseItem& e : ReadTaskEvents(**third, task_id, {"completed"})) ids.push_back(e.id);

  std::vector<std::string> expected;
  for (const auto& e : all) expected.push_back(e.id);
  EXPECT_EQ(ids, expected);
}

TEST_F(MeshTest, LiveStreamReconnectInTheMiddleOfARunLosesAndRepeatsNothing) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "live");
  const testing::Headers auth = {{"Authorization", "Bearer " + mesh_.admin_key()}};
  auto first = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id, auth);
  ASSERT_THAT(first, IsOk());
  const std::string task_id = CreateTask(
      s.api_key, s.workspace_id, "for i in $(seq 1 60); do echo tick$i; sleep 0.01; done");
  std::vector<std::string> seen;
  std::vector<SseItem> part = ReadTaskEvents(**first, task_id, {}, 10);
  for (const auto& e : part) seen.push_back(e.id);
  (*first)->Close();
  testing::Headers resume = auth;
  resume.push_back({"Last-Event-ID", seen.back()});
  auto second = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id, resume);
  ASSERT_THAT(second, IsOk());
  for (const auto& e : ReadTaskEvents(**second, task_id, {"completed"})) seen.push_back(e.id);

  auto pool = OpenPool(mesh_.database_url(), 1);
  ASSERT_THAT(pool, IsOk());
  soci::session sql(**pool);
  std::vector<long long> stored(200);
  sql << "SELECT id FROM events WHERE task_id = :t ORDER BY id", soci::use(task_id), soci::into(stored);
  std::vector<std::string> expected;
  for (long long id : stored) expected.push_back(std::to_string(id));
  EXPECT_EQ(seen, expected);
  int ticks = 0;
  for (const auto& id : seen) ticks += id.empty() ? 0 : 1;
  EXPECT_GE(ticks, 60);
}

TEST_F(MeshTest, ATaskBodyAsTheSeedsWriteItWithTitleAndDescriptionIsTaken) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  HttpResult created = Call("POST", "/api/tasks", s.api_key,
                            absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                         R"(","title":"Fix login","description":"The login form accepts an empty password","runnerPreference":"any","priority":5})"));
  ASSERT_EQ(created.status, 201) << created.body;
  const Struct task = Obj(Json(Call("GET", "/api/tasks/" + Str(Json(created.body), "id"), s.api_key).body), "task");
  EXPECT_EQ(Str(task, "title"), "Fix login");
  EXPECT_EQ(Str(task, "prompt"), "The login form accepts an empty password");
  EXPECT_EQ(Num(task, "priority"), 5);
  EXPECT_EQ(Str(task, "state"), "pending");
  HttpResult differ = Call("POST", "/api/tasks", s.api_key,
                           absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                        R"(","prompt":"one","description":"two"})"));
  EXPECT_EQ(differ.status, 400);
  EXPECT_THAT(differ.body, HasSubstr("description"));
}

TEST_F(MeshTest, BadInputGetsTheRightStatusAndNamesTheField) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  // No key, unknown key.
  EXPECT_EQ(Call("GET", "/api/tasks", "").status, 401);
  EXPECT_EQ(Call("GET", "/api/tasks", "buildd_user_notakeynotakeynotakeynotakey").status, 401);
  // Malformed JSON.
  HttpResult bad = Call("POST", "/api/tasks", s.api_key, R"({"workspaceId": )");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(Str(Obj(Json(bad.body), "error"), "code"), "INVALID_ARGUMENT");
  // Unknown runnerPreference, unknown field: the message names the field.
  HttpResult pref = Call("POST", "/api/tasks", s.api_key,
                         absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                      R"(","provider":"command","command":"true","runnerPreference":"sometimes"})"));
  EXPECT_EQ(pref.status, 400);
  EXPECT_THAT(Str(Obj(Json(pref.body), "error"), "message"), HasSubstr("runnerPreference"));
  HttpResult numeric = Call("POST", "/api/tasks", s.api_key,
                            absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                         R"(","provider":"command","command":"true","runnerPreference":7})"));
  EXPECT_EQ(numeric.status, 400);
  EXPECT_THAT(Str(Obj(Json(numeric.body), "error"), "message"), HasSubstr("runnerPreference"));
  HttpResult unknown = Call("POST", "/api/tasks", s.api_key,
                            absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                         R"(","provider":"command","command":"true","colour":"red"})"));
  EXPECT_EQ(unknown.status, 400);
  EXPECT_THAT(Str(Obj(Json(unknown.body), "error"), "message"), HasSubstr("colour"));
  // Missing command names the field.
  HttpResult missing = Call("POST", "/api/tasks", s.api_key,
                            absl::StrCat(R"({"workspaceId":")", s.workspace_id, R"(","provider":"command"})"));
  EXPECT_EQ(missing.status, 400);
  EXPECT_THAT(Str(Obj(Json(missing.body), "error"), "message"), HasSubstr("command"));
  // Fields of agent tasks and workspaces; each message names its field.
  const std::string task_prefix = absl::StrCat(R"({"workspaceId":")", s.workspace_id, R"(",)");
  for (const auto& [body, field] : std::vector<std::pair<std::string, std::string>>{
           {R"("prompt":"x","workBranch":"../escape"})", "workBranch"},
           {R"("prompt":"x","baseBranch":"-x"})", "baseBranch"},
           {R"("prompt":"x","kind":"deploy"})", "kind"},
           {R"("kind":"revert","workBranch":"b","revertCommit":"not-a-sha"})", "revertCommit"},
           {R"("kind":"revert","revertCommit":"abcdef1"})", "workBranch"},
           {R"("prompt":"x","resumeFrom":"yesterday"})", "resumeFrom"},
           {absl::StrCat(R"("prompt":")", std::string(200 * 1024, 'p'), R"("})"), "prompt"}}) {
    HttpResult r = Call("POST", "/api/tasks", s.api_key, task_prefix + body);
    EXPECT_EQ(r.status, 400) << body.substr(0, 80);
    EXPECT_THAT(Str(Obj(Json(r.body), "error"), "message"), HasSubstr(field)) << body.substr(0, 80);
  }
  // A revert needs a repository to revert in.
  HttpResult no_repo = Call("POST", "/revert", s.api_key,
                            absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                         R"(","branch":"b","commit":"abcdef1"})"));
  EXPECT_EQ(no_repo.status, 400);
  EXPECT_THAT(no_repo.body, HasSubstr("repoUrl"));
  for (const std::string url : {"https://ghp_secret@github.com/a/b.git",
                                "https://me:pw@example.com/x.git", "--upload-pack=touch /tmp/x"}) {
    HttpResult r = Call("POST", "/api/workspaces", mesh_.admin_key(),
                        absl::StrCat(R"({"name":"w","repoUrl":")", url, R"("})"));
    EXPECT_EQ(r.status, 400) << url;
    EXPECT_THAT(Str(Obj(Json(r.body), "error"), "message"), HasSubstr("repoUrl")) << url;
    EXPECT_THAT(r.body, Not(HasSubstr("secret"))) << "the error does not echo it";
  }
  // 2 MiB body.
  HttpResult big = Call("POST", "/api/tasks", s.api_key,
                        absl::StrCat(R"({"title":")", std::string(2 << 20, 'x'), R"("})"));
  EXPECT_EQ(big.status, 413);
  // Unknown ids.
  EXPECT_EQ(Call("GET", "/api/tasks/00000000-0000-4000-8000-000000000000", s.api_key).status, 404);
  EXPECT_EQ(Call("GET", "/api/workers/00000000-0000-4000-8000-000000000000", s.api_key).status, 404);
  EXPECT_EQ(Call("GET", "/api/tasks/not-a-uuid", s.api_key).status, 400);
  // Only admins create accounts and workspaces.
  EXPECT_EQ(Call("POST", "/api/accounts", s.api_key, R"({"type":"user","name":"x"})").status, 403);
  EXPECT_EQ(Call("POST", "/api/workspaces", s.api_key, R"({"name":"x"})").status, 403);
  HttpResult no_type = Call("POST", "/api/accounts", mesh_.admin_key(), R"({"name":"x"})");
  EXPECT_EQ(no_type.status, 400);
  EXPECT_THAT(no_type.body, HasSubstr("type"));
  // Nothing was created by any of it.
  HttpResult tasks = Call("GET", "/api/tasks?workspaceId=" + s.workspace_id, mesh_.admin_key());
  EXPECT_EQ(Json(tasks.body).fields().at("tasks").list_value().values_size(), 0) << tasks.body;
}

TEST_F(MeshTest, KeyWithoutCreateGrantGets403AndItsRunnerGetsNothing) {
  Setup owner = CreateAccountAndWorkspace("service", true, true);
  // A second account that may claim but not create in the same workspace.
  HttpResult acc = Call("POST", "/api/accounts", mesh_.admin_key(), R"({"type":"user","name":"claimer"})");
  ASSERT_EQ(acc.status, 201);
  Struct claimer = Json(acc.body);
  ASSERT_EQ(Call("POST", absl::StrCat("/api/accounts/", Str(claimer, "id"), "/workspaces"),
                 mesh_.admin_key(),
                 absl::StrCat(R"({"workspaceId":")", owner.workspace_id, R"(","canClaim":true})"))
                .status,
            200);
  // And one with no grant at all, with a runner of its own.
  HttpResult stranger_acc = Call("POST", "/api/accounts", mesh_.admin_key(), R"({"type":"service","name":"stranger"})");
  ASSERT_EQ(stranger_acc.status, 201);
  const std::string stranger_key = Str(Json(stranger_acc.body), "apiKey");
  testing::Process& stranger_runner = mesh_.StartRunner(stranger_key, "stranger");

  HttpResult denied = Call("POST", "/api/tasks", Str(claimer, "apiKey"),
                           absl::StrCat(R"({"workspaceId":")", owner.workspace_id,
                                        R"(","provider":"command","command":"true"})"));
  EXPECT_EQ(denied.status, 403);
  EXPECT_THAT(denied.body, HasSubstr("canCreate"));
  EXPECT_EQ(Call("POST", "/api/tasks", stranger_key,
                 absl::StrCat(R"({"workspaceId":")", owner.workspace_id,
                              R"(","provider":"command","command":"true"})"))
                .status,
            403);

  // A task the owner creates while only the stranger's runner is up stays
  // pending: the stranger has no canClaim grant.
  const std::string task_id = CreateTask(owner.api_key, owner.workspace_id, "echo hi");
  HttpResult t = Call("GET", "/api/tasks/" + task_id, mesh_.admin_key());
  EXPECT_EQ(Str(Obj(Json(t.body), "task"), "state"), "pending");
  // Then the claimer's runner connects and the task is pushed to it.
  mesh_.StartRunner(Str(claimer, "apiKey"), "claimer");
  Struct done = WaitForTaskState(task_id, "completed");
  EXPECT_EQ(Str(done.fields().at("workers").list_value().values(0).struct_value(), "runnerName"),
            "claimer");
  EXPECT_THAT(stranger_runner.Log(), Not(HasSubstr(task_id)));
}

TEST_F(MeshTest, RunnerPreferenceRoutesByAccountType) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "svc");
  const std::string for_users = CreateTask(s.api_key, s.workspace_id, "echo u",
                                           R"(,"runnerPreference":"user")");
  const std::string for_services = CreateTask(s.api_key, s.workspace_id, "echo s",
                                              R"(,"runnerPreference":"service")");
  WaitForTaskState(for_services, "completed");
  EXPECT_EQ(Str(Obj(Json(Call("GET", "/api/tasks/" + for_users, mesh_.admin_key()).body), "task"), "state"),
            "pending");
  HttpResult user = Call("POST", "/api/accounts", mesh_.admin_key(), R"({"type":"user","name":"me"})");
  ASSERT_EQ(user.status, 201);
  Struct u = Json(user.body);
  ASSERT_EQ(Call("POST", absl::StrCat("/api/accounts/", Str(u, "id"), "/workspaces"), mesh_.admin_key(),
                 absl::StrCat(R"({"workspaceId":")", s.workspace_id, R"(","canClaim":true})"))
                .status,
            200);
  mesh_.StartRunner(Str(u, "apiKey"), "mine");
  Struct done = WaitForTaskState(for_users, "completed");
  EXPECT_EQ(Str(done.fields().at("workers").list_value().values(0).struct_value(), "runnerName"), "mine");
}

TEST_F(MeshTest, RevokedKeyStopsWorkingForRestAndRunnerStream) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  testing::Process& runner = mesh_.StartRunner(s.api_key, "revoked");
  EXPECT_EQ(Call("GET", "/api/workspaces", s.api_key).status, 200);
  HttpResult revoke = Call("DELETE", absl::StrCat("/api/accounts/", s.account_id, "/keys"), mesh_.admin_key());
  EXPECT_EQ(revoke.status, 200) << revoke.body;
  // The revocation travels to the broker's cache on the accounts service's
  // change stream: it takes effect within moments.
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((status = Call("GET", "/api/workspaces", s.api_key).status) == 200 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(status, 401);
  // The broker closes the revoked runner's stream; its reconnects are refused.
  EXPECT_TRUE(mesh_.broker().WaitForLog("key no longer valid", 10000)) << mesh_.broker().Log();
  const std::string task_id = CreateTask(mesh_.admin_key(), s.workspace_id, "echo never");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Str(Obj(Json(Call("GET", "/api/tasks/" + task_id, mesh_.admin_key()).body), "task"), "state"),
            "pending");
  EXPECT_THAT(runner.Log(), Not(HasSubstr(task_id)));
}

TEST_F(MeshTest, FailingCommandEndsInErrorWithItsExitCode) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "fails");
  const std::string task_id = CreateTask(s.api_key, s.workspace_id, "echo oops >&2; exit 7");
  Struct done = WaitForTaskState(task_id, "failed");
  EXPECT_EQ(Num(Obj(done, "task"), "exitCode"), 7);
  const Struct& worker = done.fields().at("workers").list_value().values(0).struct_value();
  EXPECT_EQ(Str(worker, "state"), "error");
  EXPECT_EQ(Num(worker, "exitCode"), 7);
}

TEST_F(MeshTest, TasksOfOneBranchOrConcurrencyKeyRunOneAtATimeInOrder) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  const std::string dir = mesh_.dir();
  // A task that appends its name to `log` once `gate` exists.
  const auto step = [&](const std::string& name, const std::string& log, const std::string& gate) {
    std::string command = absl::StrCat("echo ", name, " >> ", dir, "/", log);
    if (!gate.empty()) {
      command = absl::StrCat("while [ ! -e ", dir, "/", gate, " ]; do sleep 0.02; done; ", command);
    }
    return command;
  };
  const auto state = [&](const std::string& id) {
    return Str(Obj(Json(Call("GET", "/api/tasks/" + id, s.api_key).body), "task"), "state");
  };
  // Queued before any runner is there: claimed in order when one comes.
  const std::string p1 = CreateTask(s.api_key, s.workspace_id, step("p1", "queue.log", "gate-1"),
                                    R"(,"workBranch":"feature/queue")");
  const std::string p2 = CreateTask(s.api_key, s.workspace_id, step("p2", "queue.log", ""),
                                    R"(,"workBranch":"feature/queue")");
  // The tasks share files of the test (a log, gates) outside their sandboxes.
  mesh_.StartRunner(s.api_key, "roomy", {"--max_tasks=4", "--sandbox=none"});
  WaitForTaskState(p1, "running");
  // Created while the branch is busy: it waits too, behind p2.
  HttpResult third = Call("POST", "/api/tasks", s.api_key,
                          absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                       R"(","provider":"command","workBranch":"feature/queue",)"
                                       R"("command":)", JsonString(step("p3", "queue.log", "")), "}"));
  ASSERT_EQ(third.status, 201) << third.body;
  const std::string p3 = Str(Json(third.body), "id");
  EXPECT_EQ(Str(Json(third.body), "concurrencyKey"), "") << "the default: the work branch";
  // Another branch, and another key, are not held up: the runner has room.
  const std::string d1 = CreateTask(s.api_key, s.workspace_id, step("d1", "deploy.log", "gate-2"),
                                    R"(,"workBranch":"feature/one","concurrencyKey":"deploy")");
  const std::string d2 = CreateTask(s.api_key, s.workspace_id, step("d2", "deploy.log", ""),
                                    R"(,"workBranch":"feature/two","concurrencyKey":"deploy")");
  const std::string other = CreateTask(s.api_key, s.workspace_id, "echo free",
                                       R"(,"workBranch":"feature/other")");
  WaitForTaskState(other, "completed");
  WaitForTaskState(d1, "running");
  for (const std::string& waiting : {p2, p3, d2}) {
    const Struct task = Obj(Json(Call("GET", "/api/tasks/" + waiting, s.api_key).body), "task");
    EXPECT_EQ(Str(task, "state"), "pending") << waiting;
    EXPECT_EQ(Num(task, "attempts"), 0) << waiting;
  }

  testing::WriteFile(dir + "/gate-1", "");
  WaitForTaskState(p3, "completed");
  EXPECT_EQ(testing::ReadFile(dir + "/queue.log"), "p1\np2\np3\n");
  EXPECT_EQ(state(d2), "pending") << "still behind d1";
  testing::WriteFile(dir + "/gate-2", "");
  WaitForTaskState(d2, "completed");
  EXPECT_EQ(testing::ReadFile(dir + "/deploy.log"), "d1\nd2\n");

  // Canceling the task in front lets the next one go.
  const std::string blocker = CreateTask(s.api_key, s.workspace_id, step("b", "cancel.log", "gate-3"),
                                         R"(,"workBranch":"feature/cancel")");
  WaitForTaskState(blocker, "running");
  const std::string queued = CreateTask(s.api_key, s.workspace_id, step("q", "cancel.log", ""),
                                        R"(,"workBranch":"feature/cancel")");
  const std::string last = CreateTask(s.api_key, s.workspace_id, step("l", "cancel.log", ""),
                                      R"(,"workBranch":"feature/cancel")");
  ASSERT_EQ(Call("POST", "/api/tasks/" + queued + "/cancel", s.api_key).status, 200);
  // The claims the cancel set off are done once a task created after them is.
  WaitForTaskState(CreateTask(s.api_key, s.workspace_id, "true"), "completed");
  EXPECT_EQ(state(last), "pending") << "the running one still holds the branch";
  ASSERT_EQ(Call("POST", "/api/tasks/" + blocker + "/cancel", s.api_key).status, 200);
  WaitForTaskState(last, "completed");
  EXPECT_EQ(testing::ReadFile(dir + "/cancel.log"), "l\n");
  EXPECT_EQ(state(queued), "canceled");

  // A task may name another task's default branch; when that one ends, the
  // waiting one goes to whichever runner can take it.
  const Struct front = Json(Call("POST", "/api/tasks", s.api_key,
                                 absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                              R"(","provider":"command","command":)",
                                              JsonString(step("f", "labels.log", "gate-4")), "}"))
                                .body);
  WaitForTaskState(Str(front, "id"), "running");
  mesh_.StartRunner(s.api_key, "other", {"--labels=gpu", "--sandbox=none"});
  const std::string behind = CreateTask(
      s.api_key, s.workspace_id, step("g", "labels.log", ""),
      absl::StrCat(R"(,"requiredLabels":["gpu"],"workBranch":")", Str(front, "workBranch"), R"(")"));
  WaitForTaskState(CreateTask(s.api_key, s.workspace_id, "true", R"(,"requiredLabels":["gpu"])"),
                   "completed");
  EXPECT_EQ(state(behind), "pending");
  testing::WriteFile(dir + "/gate-4", "");
  const Struct done_behind = WaitForTaskState(behind, "completed");
  EXPECT_EQ(Str(done_behind.fields().at("workers").list_value().values(0).struct_value(),
                "runnerName"),
            "other");
  EXPECT_EQ(testing::ReadFile(dir + "/labels.log"), "f\ng\n");

  // Bad keys are refused, naming the field.
  HttpResult bad = Call("POST", "/api/tasks", s.api_key,
                        absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                     R"(","provider":"command","command":"true","concurrencyKey":")",
                                     std::string(201, 'k'), R"("})"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("concurrencyKey"));
}

TEST_F(MeshTest, CancelStopsARunningCommand) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "cancels");
  const std::string task_id = CreateTask(s.api_key, s.workspace_id, "echo begin; sleep 60; echo end");
  Struct running = WaitForTaskState(task_id, "running");
  const std::string worker_id = Str(Obj(running, "task"), "workerId");
  HttpResult cancel = Call("POST", "/api/workers/" + worker_id + "/cancel", s.api_key);
  EXPECT_EQ(cancel.status, 200) << cancel.body;
  Struct done = WaitForTaskState(task_id, "canceled", 15000);
  EXPECT_EQ(Str(done.fields().at("workers").list_value().values(0).struct_value(), "state"), "canceled");
  HttpResult w = Call("GET", "/api/workers/" + worker_id, s.api_key);
  EXPECT_EQ(Str(Json(w.body), "state"), "canceled");
}

class LeaseTest : public MeshTest {
 protected:
  static Mesh::Options ShortLease() {
    Mesh::Options options;
    options.lease_grace_ms = 1500;
    return options;
  }
  LeaseTest() : MeshTest(ShortLease()) {}
};

TEST_F(LeaseTest, WorkOfARunnerThatNeverComesBackIsRequeuedToAnother) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  // The attempts share a marker file of the test, outside any sandbox.
  testing::Process& doomed = mesh_.StartRunner(s.api_key, "doomed", {"--sandbox=none"});
  // The first attempt hangs; the second finds its marker and finishes.
  const std::string marker = mesh_.dir() + "/first-attempt";
  const std::string task_id = CreateTask(
      s.api_key, s.workspace_id,
      absl::StrCat("if [ ! -e ", marker, " ]; then touch ", marker, "; sleep 60; fi; echo done"));
  WaitForTaskState(task_id, "running");
  doomed.Stop(SIGKILL, 5000);
  mesh_.StartRunner(s.api_key, "rescuer", {"--sandbox=none"});
  Struct done = WaitForTaskState(task_id, "completed", 30000);
  const auto& workers = done.fields().at("workers").list_value();
  ASSERT_EQ(workers.values_size(), 2);
  EXPECT_EQ(Str(workers.values(0).struct_value(), "state"), "error");
  EXPECT_EQ(Str(workers.values(1).struct_value(), "runnerName"), "rescuer");
  EXPECT_EQ(Num(Obj(done, "task"), "attempts"), 2);
}

TEST_F(MeshTest, RunnerReattachesAfterABrokerRestartAndNothingIsLost) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "steady");
  const std::string task_id = CreateTask(
      s.api_key, s.workspace_id, "for i in $(seq 1 30); do echo r$i; sleep 0.1; done");
  WaitForTaskState(task_id, "running");
  mesh_.RestartBroker();
  Struct done = WaitForTaskState(task_id, "completed", 30000);
  EXPECT_EQ(done.fields().at("workers").list_value().values_size(), 1);
  auto pool = OpenPool(mesh_.database_url(), 1);
  ASSERT_THAT(pool, IsOk());
  soci::session sql(**pool);
  std::vector<std::string> lines(100);
  sql << "SELECT body->>'text' FROM events WHERE task_id = :t AND type = 'output' ORDER BY id",
      soci::use(task_id), soci::into(lines);
  std::vector<std::string> expected;
  for (int i = 1; i <= 30; ++i) expected.push_back(absl::StrCat("r", i));
  EXPECT_EQ(lines, expected);
}

}  // namespace
}  // namespace buildd
