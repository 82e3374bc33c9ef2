// The seeds' polling agent (seed 000's buildd-agent: POST /api/workers/claim,
// then PATCH /api/workers/:id) beside a pushed runner, through the real
// gateway: claims routed like pushed work and atomic, reports recorded as
// events, a lease that each report renews and that lapses like a runner's,
// controls handed over in the answer to a report, and the refusals.
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/db.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/matchers.h"
#include "tests/testing/process.h"

namespace buildd {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::Process;
using ::google::protobuf::Struct;
using ::testing::HasSubstr;
using ::testing::Not;

// Seed 001's task body: title and description, a runner preference; the
// agent's tasks need the label its agent claims with.
std::string SeedTask(const std::string& workspace_id, const std::string& title,
                     const std::string& description) {
  return absl::StrCat(R"({"workspaceId":")", workspace_id, R"(","title":")", title,
                      R"(","description":")", description,
                      R"(","runnerPreference":"user","requiredLabels":["laptop"]})");
}

class PollingAgentTest : public MeshTest {
 protected:
  explicit PollingAgentTest(Mesh::Options options = {}) : MeshTest(options) {}

  std::string CreateSeedTask(const std::string& key, const std::string& workspace_id,
                             const std::string& title, const std::string& description) {
    HttpResult r = Call("POST", "/api/tasks", key, SeedTask(workspace_id, title, description));
    EXPECT_EQ(r.status, 201) << r.body;
    return Str(Json(r.body), "id");
  }

  // A claim as the agent makes it; the answer's body.
  Struct Claim(const std::string& key, const std::string& body) {
    HttpResult r = Call("POST", "/api/workers/claim", key, body);
    EXPECT_EQ(r.status, 200) << r.body;
    return Json(r.body);
  }

  HttpResult Patch(const std::string& key, const std::string& worker_id, const std::string& body) {
    return Call("PATCH", "/api/workers/" + worker_id, key, body);
  }

  std::unique_ptr<Process> StartAgent(const std::string& key, const std::vector<std::string>& args) {
    std::vector<std::string> all = {testing::SourceFile("tests/e2e/polling_agent.sh")};
    all.insert(all.end(), args.begin(), args.end());
    return Process::Start("/bin/bash", all,
                          {{"BUILDD_SERVER", mesh_.gateway_url()}, {"BUILDD_API_KEY", key}},
                          mesh_.dir() + "/agent.log");
  }

  int Workers(const std::string& task_id) {
    auto pool = OpenPool(mesh_.database_url(), 1);
    EXPECT_THAT(pool, IsOk());
    soci::session sql(**pool);
    int n = 0;
    sql << "SELECT count(*) FROM workers WHERE task_id = :t", soci::use(task_id), soci::into(n);
    return n;
  }
};

TEST_F(PollingAgentTest, AgentClaimsReportsAndCompletesBesideAPushedRunner) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  mesh_.StartRunner(s.api_key, "pushed");
  std::vector<std::string> agent_tasks, pushed_tasks;
  for (int i = 0; i < 3; ++i) {
    agent_tasks.push_back(CreateSeedTask(s.api_key, s.workspace_id, absl::StrCat("Fix ", i),
                                         absl::StrCat("Add error handling to handler ", i)));
    pushed_tasks.push_back(CreateTask(s.api_key, s.workspace_id, absl::StrCat("echo pushed ", i)));
  }
  auto agent = StartAgent(s.api_key, {"--workspace=" + s.workspace_id, "--max-tasks=2",
                                      "--labels=laptop", "--interval=0.2", "--name=laptop-1",
                                      "--exit-after=3"});
  for (const std::string& t : agent_tasks) WaitForTaskState(t, "completed", 30000);
  for (const std::string& t : pushed_tasks) WaitForTaskState(t, "completed", 30000);
  EXPECT_EQ(agent->Wait(15000), 0) << agent->Log();

  for (const std::string& t : agent_tasks) {
    Struct got = Json(Call("GET", "/api/tasks/" + t, s.api_key).body);
    const auto& workers = got.fields().at("workers").list_value().values();
    ASSERT_EQ(workers.size(), 1) << "claimed once: " << got.DebugString();
    EXPECT_EQ(Str(workers[0].struct_value(), "runnerName"), "laptop-1");
    EXPECT_EQ(Str(workers[0].struct_value(), "state"), "completed");
    EXPECT_DOUBLE_EQ(Num(Obj(Obj(got, "task"), "artifacts"), "costUsd"), 0.02);
    EXPECT_EQ(absl::StrJoin(EventTypes(t), ","),
              "created,assigned,started,progress,progress,assistant_message,progress,result,"
              "completed");
  }
  for (const std::string& t : pushed_tasks) {
    Struct got = Json(Call("GET", "/api/tasks/" + t, s.api_key).body);
    EXPECT_EQ(Str(got.fields().at("workers").list_value().values(0).struct_value(), "runnerName"),
              "pushed");
  }
}

TEST_F(PollingAgentTest, ConcurrentClaimsTakeEachTaskOnceUpToTheAccountsWorkerLimit) {
  // The account may hold 8 workers (maxConcurrentWorkers); 4 agents ask
  // for 3 tasks each at once, of 10.
  Setup s = CreateAccountAndWorkspace("user", true, true);
  std::set<std::string> created;
  for (int i = 0; i < 10; ++i) {
    created.insert(CreateSeedTask(s.api_key, s.workspace_id, absl::StrCat("t", i), "do it"));
  }
  absl::Mutex mu;
  std::vector<std::string> claimed;
  std::vector<std::thread> agents;
  for (int a = 0; a < 4; ++a) {
    agents.emplace_back([&, a] {
      Struct got = Claim(s.api_key, absl::StrCat(R"({"maxTasks":3,"labels":["laptop"],"runner":"a)",
                                                 a, R"("})"));
      absl::MutexLock lock(&mu);
      for (const auto& t : got.fields().at("tasks").list_value().values()) {
        claimed.push_back(Str(t.struct_value(), "id"));
      }
    });
  }
  for (auto& t : agents) t.join();
  const std::set<std::string> distinct(claimed.begin(), claimed.end());
  EXPECT_EQ(claimed.size(), 8u);
  EXPECT_EQ(distinct.size(), claimed.size()) << "a task was handed out twice";
  for (const std::string& t : created) EXPECT_EQ(Workers(t), distinct.count(t)) << t;
  // At its limit, a claim answers empty lists, and the rest stays pending.
  HttpResult empty = Call("POST", "/api/workers/claim", s.api_key, R"({"labels":["laptop"]})");
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.body, R"({"workers":[],"tasks":[]})");
  for (const std::string& t : created) {
    if (distinct.count(t) == 0) {
      EXPECT_EQ(Str(Obj(Json(Call("GET", "/api/tasks/" + t, s.api_key).body), "task"), "state"),
                "pending");
    }
  }
}

TEST_F(PollingAgentTest, CancelReachesTheAgentInTheAnswerToItsNextReport) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  const std::string task = CreateSeedTask(s.api_key, s.workspace_id, "Slow", "a slow change");
  auto agent = StartAgent(s.api_key, {"--labels=laptop", "--interval=0.2", "--exit-after=1"});
  WaitForTaskState(task, "running", 20000);
  HttpResult cancel = Call("POST", "/api/tasks/" + task + "/cancel", s.api_key, "");
  EXPECT_EQ(cancel.status, 200) << cancel.body;
  WaitForTaskState(task, "canceled", 20000);
  EXPECT_EQ(agent->Wait(15000), 0) << agent->Log();
  const std::string types = absl::StrJoin(EventTypes(task), ",");
  EXPECT_THAT(types, HasSubstr("assistant_message,canceled")) << types;
}

TEST_F(PollingAgentTest, RefusesBadReportsOtherAccountsAndEndedWorkers) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  Setup other = CreateAccountAndWorkspace("user", true, true);
  const std::string task = CreateSeedTask(s.api_key, s.workspace_id, "T", "do it");
  EXPECT_EQ(Call("POST", "/api/workers/claim", "", "{}").status, 401);
  Struct got = Claim(s.api_key, R"({"labels":["laptop"]})");
  ASSERT_EQ(got.fields().at("workers").list_value().values_size(), 1);
  const std::string worker = Str(got.fields().at("workers").list_value().values(0).struct_value(), "id");
  EXPECT_EQ(Str(got.fields().at("workers").list_value().values(0).struct_value(), "state"),
            "starting");

  struct Bad {
    std::string body;
    int status;
    std::string says;
  };
  for (const Bad& bad : std::vector<Bad>{
           {R"({"status":"done"})", 400, "status"},
           {R"({"progress":140})", 400, "progress"},
           {R"({"cost":-1})", 400, "cost"},
           {R"({"colour":"red"})", 400, "colour"},
           {R"({"runner":"a b"})", 400, "runner"},
       }) {
    HttpResult r = Patch(s.api_key, worker, bad.body);
    EXPECT_EQ(r.status, bad.status) << bad.body << " → " << r.body;
    EXPECT_THAT(r.body, HasSubstr(bad.says));
  }
  for (const Bad& bad : std::vector<Bad>{
           {R"({"maxTasks":101})", 400, "maxTasks"},
           {R"({"maxTasks":-1})", 400, "maxTasks"},
           {R"({"providers":["cobol"]})", 400, "providers"},
       }) {
    HttpResult r = Call("POST", "/api/workers/claim", s.api_key, bad.body);
    EXPECT_EQ(r.status, bad.status) << bad.body << " → " << r.body;
    EXPECT_THAT(r.body, HasSubstr(bad.says));
  }
  // Another account cannot report on it, nor learn it exists.
  HttpResult foreign = Patch(other.api_key, worker, R"({"status":"completed"})");
  EXPECT_EQ(foreign.status, 404) << foreign.body;
  EXPECT_EQ(Str(Obj(Json(Call("GET", "/api/tasks/" + task, s.api_key).body), "task"), "state"),
            "assigned");

  HttpResult done = Patch(s.api_key, worker, R"({"status":"completed","result":"ok"})");
  EXPECT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(Str(Obj(Json(done.body), "worker"), "state"), "completed");
  HttpResult again = Patch(s.api_key, worker, R"({"status":"running"})");
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_THAT(again.body, HasSubstr("already completed"));

  // A revoked key claims nothing more.
  HttpResult revoked =
      Call("DELETE", absl::StrCat("/api/accounts/", s.account_id, "/keys"), admin_key(), "");
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  CreateSeedTask(admin_key(), s.workspace_id, "After", "after the revocation");
  int status = 0;
  for (int i = 0; i < 100 && status != 401; ++i) {
    status = Call("POST", "/api/workers/claim", s.api_key, R"({"labels":["laptop"]})").status;
    if (status != 401) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(status, 401);
}

// POST /api/workers and /start: a person picks the runner.
TEST_F(PollingAgentTest, AWorkerCreatedByHandIdlesUntilStartedThenRunsOnThatRunner) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Setup stranger = CreateAccountAndWorkspace("service", false, false);
  mesh_.StartRunner(s.api_key, "build-box");
  mesh_.StartRunner(stranger.api_key, "elsewhere");
  // It needs a label no runner has: it waits.
  const std::string task = CreateTask(s.api_key, s.workspace_id, "echo by hand",
                                      R"(,"requiredLabels":["gpu"])");
  WaitForTaskState(task, "pending");

  HttpResult bad = Call("POST", "/api/workers", s.api_key, R"({"taskId":")" + task + R"("})");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_THAT(bad.body, HasSubstr("runnerId"));
  HttpResult nobody = Call("POST", "/api/workers", s.api_key,
                           R"({"taskId":")" + task + R"(","runnerId":"no-such-runner"})");
  EXPECT_EQ(nobody.status, 404) << nobody.body;
  // A runner whose account may not claim from the workspace is refused.
  HttpResult foreign = Call("POST", "/api/workers", s.api_key,
                            R"({"taskId":")" + task + R"(","runnerId":"elsewhere"})");
  EXPECT_EQ(foreign.status, 409) << foreign.body;
  EXPECT_THAT(foreign.body, HasSubstr("may not take task"));
  // Nor may an account without canCreate there assign it.
  HttpResult outsider = Call("POST", "/api/workers", stranger.api_key,
                             R"({"taskId":")" + task + R"(","runnerId":"build-box"})");
  EXPECT_EQ(outsider.status, 404) << outsider.body;

  HttpResult made = Call("POST", "/api/workers", s.api_key,
                         R"({"taskId":")" + task + R"(","runnerId":"build-box"})");
  ASSERT_EQ(made.status, 201) << made.body;
  const std::string worker = Str(Json(made.body), "id");
  EXPECT_EQ(Str(Json(made.body), "state"), "idle");
  EXPECT_EQ(Str(Json(made.body), "runnerName"), "build-box");
  HttpResult twice = Call("POST", "/api/workers", s.api_key,
                          R"({"taskId":")" + task + R"(","runnerId":"build-box"})");
  EXPECT_EQ(twice.status, 409) << twice.body;
  EXPECT_THAT(twice.body, HasSubstr("only a pending task"));
  // Idle until started: nothing ran.
  EXPECT_EQ(Str(Obj(Json(Call("GET", "/api/tasks/" + task, s.api_key).body), "task"), "state"),
            "assigned");
  EXPECT_EQ(absl::StrJoin(EventTypes(task), ","), "created,assigned");

  // Nor start the worker someone else made.
  EXPECT_EQ(Call("POST", "/api/workers/" + worker + "/start", stranger.api_key, "").status, 404);
  HttpResult started = Call("POST", "/api/workers/" + worker + "/start", s.api_key, "");
  EXPECT_EQ(started.status, 200) << started.body;
  WaitForTaskState(task, "completed");
  EXPECT_EQ(Call("POST", "/api/workers/" + worker + "/start", s.api_key, "").status, 409);

  // An idle worker canceled before it starts cancels its task.
  const std::string other = CreateTask(s.api_key, s.workspace_id, "echo never",
                                       R"(,"requiredLabels":["gpu"])");
  HttpResult held = Call("POST", "/api/workers", s.api_key,
                         R"({"taskId":")" + other + R"(","runnerId":"build-box"})");
  ASSERT_EQ(held.status, 201) << held.body;
  HttpResult cancel =
      Call("POST", "/api/workers/" + Str(Json(held.body), "id") + "/cancel", s.api_key, "");
  EXPECT_EQ(cancel.status, 200) << cancel.body;
  WaitForTaskState(other, "canceled");
}

// The data model's messages (human ↔ agent on a worker, with attachments)
// and comments on artifacts, over REST.
TEST_F(PollingAgentTest, AMessageAnswersAWaitingAgentAndCommentsAttachToTheTasksPatch) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  Setup other = CreateAccountAndWorkspace("user", true, true);
  const std::string task = CreateSeedTask(s.api_key, s.workspace_id, "Ask", "ask first");
  Struct claimed = Claim(s.api_key, R"({"labels":["laptop"]})");
  ASSERT_EQ(claimed.fields().at("workers").list_value().values_size(), 1) << claimed.DebugString();
  const std::string worker =
      Str(claimed.fields().at("workers").list_value().values(0).struct_value(), "id");
  ASSERT_EQ(Patch(s.api_key, worker,
                  R"({"status":"waiting_input","question":"Which endpoint, v1 or v2?"})")
                .status,
            200);

  // "hello" and 3 binary bytes, as protobuf's JSON writes bytes (base64).
  HttpResult posted = Call("POST", "/api/workers/" + worker + "/messages", s.api_key,
                           R"({"text":"v2, see the trace","attachments":[)"
                           R"({"name":"trace one.bin","contentType":"application/octet-stream","data":"AP8B"},)"
                           R"({"name":"notes.txt","contentType":"text/plain","data":"aGVsbG8="}]})");
  ASSERT_EQ(posted.status, 201) << posted.body;
  const Struct message = Json(posted.body);
  EXPECT_TRUE(message.fields().at("delivered").bool_value()) << posted.body;
  EXPECT_EQ(Str(message, "role"), "human");
  EXPECT_THAT(posted.body, Not(HasSubstr("AP8B"))) << "the answer leaves the data out";
  // The agent's next report gets it as its input.
  HttpResult next = Patch(s.api_key, worker, R"({"status":"running","message":"using v2"})");
  ASSERT_EQ(next.status, 200) << next.body;
  EXPECT_THAT(next.body, HasSubstr(R"("controls":[{"action":"input","text":"v2, see the trace"}])"));

  HttpResult file = Call("GET",
                         absl::StrCat("/api/workers/", worker, "/messages/", Str(message, "id"),
                                      "/attachments/0"),
                         s.api_key);
  ASSERT_EQ(file.status, 200) << file.body;
  EXPECT_EQ(file.body, std::string("\x00\xff\x01", 3));
  EXPECT_EQ(file.Header("Content-Disposition"), "attachment; filename*=UTF-8''trace%20one.bin");
  EXPECT_EQ(file.Header("Content-Type"), "application/octet-stream");
  EXPECT_EQ(file.Header("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(Call("GET",
                 absl::StrCat("/api/workers/", worker, "/messages/", Str(message, "id"),
                              "/attachments/2"),
                 s.api_key)
                .status,
            404);
  EXPECT_EQ(Call("GET",
                 absl::StrCat("/api/workers/", worker, "/messages/", Str(message, "id"),
                              "/attachments/0"),
                 other.api_key)
                .status,
            404);

  // The conversation: the person's message, then what the agent said.
  HttpResult list = Call("GET", "/api/workers/" + worker + "/messages", s.api_key);
  ASSERT_EQ(list.status, 200) << list.body;
  const Struct conversation = Json(list.body);
  const auto& messages = conversation.fields().at("messages").list_value().values();
  ASSERT_EQ(messages.size(), 2) << list.body;
  EXPECT_EQ(Str(messages[0].struct_value(), "text"), "v2, see the trace");
  EXPECT_EQ(messages[0].struct_value().fields().at("attachments").list_value().values_size(), 2);
  EXPECT_EQ(Str(messages[1].struct_value(), "role"), "agent");
  EXPECT_EQ(Str(messages[1].struct_value(), "text"), "using v2");
  EXPECT_EQ(Call("GET", "/api/workers/" + worker + "/messages", other.api_key).status, 404);
  // Nor may it write to the worker, even to answer it.
  EXPECT_EQ(Call("POST", "/api/workers/" + worker + "/messages", other.api_key, R"({"text":"x"})")
                .status,
            404);

  ASSERT_EQ(Patch(s.api_key, worker,
                  R"({"status":"completed","artifacts":{"branch":"buildd/ask","commitSha":"abc123"}})")
                .status,
            200);
  HttpResult comment = Call("POST", "/api/tasks/" + task + "/comments", s.api_key,
                            R"({"artifact":"patch","path":"src/api.ts","line":12,"text":"needs a test"})");
  ASSERT_EQ(comment.status, 201) << comment.body;
  HttpResult comments = Call("GET", "/api/tasks/" + task + "/comments", s.api_key);
  EXPECT_THAT(comments.body, HasSubstr(R"("path":"src/api.ts","line":12,"text":"needs a test")"));
  EXPECT_EQ(Call("GET", "/api/tasks/" + task + "/comments", other.api_key).status, 404);
  EXPECT_THAT(absl::StrJoin(EventTypes(task), ","),
              HasSubstr("question,status,message,status,assistant_message,completed,comment"));

  struct Bad {
    std::string path, body, says;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"/api/workers/" + worker + "/messages", R"({"text":""})", "text"},
           {"/api/workers/" + worker + "/messages",
            R"({"text":"x","attachments":[{"name":"../etc/passwd","data":"AA=="}]})", "attachments.name"},
           {"/api/workers/" + worker + "/messages",
            R"({"text":"x","attachments":[{"name":"a","contentType":"text/html\r\nX: y","data":"AA=="}]})",
            "attachments.contentType"},
           {"/api/workers/" + worker + "/messages",
            R"({"text":"x","attachments":[{"name":"a"},{"name":"b"},{"name":"c"},{"name":"d"},{"name":"e"}]})",
            "attachments"},
           {"/api/tasks/" + task + "/comments", R"({"artifact":"log","text":"x"})", "artifact"},
           {"/api/tasks/" + task + "/comments", R"({"artifact":"patch","line":-1,"text":"x"})", "line"},
       }) {
    HttpResult r = Call("POST", bad.path, s.api_key, bad.body);
    EXPECT_EQ(r.status, 400) << bad.body << " → " << r.body;
    EXPECT_THAT(r.body, HasSubstr(bad.says)) << bad.body;
  }
  EXPECT_EQ(Call("POST", "/api/tasks/" + task + "/comments", other.api_key,
                 R"({"artifact":"patch","text":"x"})")
                .status,
            404);
}

Mesh::Options ShortLease() {
  Mesh::Options options;
  options.lease_grace_ms = 500;
  options.broker_args = {"--poll_lease_ms=1000", "--heartbeat_interval_ms=200"};
  return options;
}

class PollingLeaseTest : public PollingAgentTest {
 protected:
  PollingLeaseTest() : PollingAgentTest(ShortLease()) {}
};

TEST_F(PollingLeaseTest, ASilentAgentLosesItsClaimAndReportsKeepOneAlive) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  const std::string lost = CreateSeedTask(s.api_key, s.workspace_id, "Lost", "left behind");
  Struct first = Claim(s.api_key, R"({"labels":["laptop"],"runner":"gone"})");
  ASSERT_EQ(first.fields().at("workers").list_value().values_size(), 1);
  const std::string lost_worker =
      Str(first.fields().at("workers").list_value().values(0).struct_value(), "id");
  EXPECT_EQ(Patch(s.api_key, lost_worker, R"({"status":"running","runner":"gone"})").status, 200);
  // Silent for the lease and its grace: the task goes back to the queue.
  WaitForJson(
      "/api/tasks/" + lost,
      [](const Struct& got) {
        return Str(Obj(got, "task"), "state") == "pending";
      },
      "requeued", 10000);
  // Another agent takes it; the silent one's late report is refused.
  Struct second = Claim(s.api_key, R"({"labels":["laptop"],"runner":"next"})");
  ASSERT_EQ(second.fields().at("tasks").list_value().values_size(), 1);
  EXPECT_EQ(Str(second.fields().at("tasks").list_value().values(0).struct_value(), "id"), lost);
  HttpResult late = Patch(s.api_key, lost_worker, R"({"status":"completed","runner":"gone"})");
  EXPECT_EQ(late.status, 409) << late.body;

  // One that reports every 300 ms keeps its claim for three leases.
  const std::string kept = CreateSeedTask(s.api_key, s.workspace_id, "Kept", "kept alive");
  Struct third = Claim(s.api_key, R"({"labels":["laptop"],"runner":"busy"})");
  ASSERT_EQ(third.fields().at("workers").list_value().values_size(), 1);
  const std::string kept_worker =
      Str(third.fields().at("workers").list_value().values(0).struct_value(), "id");
  for (int i = 0; i < 10; ++i) {
    HttpResult r = Patch(s.api_key, kept_worker,
                         absl::StrCat(R"({"status":"running","progress":)", i * 10, R"(,"runner":"busy"})"));
    ASSERT_EQ(r.status, 200) << r.body;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  HttpResult done = Patch(s.api_key, kept_worker, R"({"status":"completed","runner":"busy"})");
  EXPECT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(Workers(kept), 1);
  WaitForTaskState(kept, "completed");
}

}  // namespace
}  // namespace buildd
