// Two broker replicas (each with a gateway) on one database, as a Helm
// install runs them: they wake each other through PostgreSQL's
// LISTEN/NOTIFY, never by polling. The brokers' heartbeat is a minute here,
// so nothing periodic could carry what these tests see within seconds.
#include <signal.h>

#include <algorithm>
#include <future>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/db.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/matchers.h"
#include "tests/testing/process.h"

namespace buildd {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::Process;

const std::vector<std::string> kSlowHeartbeat = {"--heartbeat_interval_ms=60000"};

class ReplicasTest : public MeshTest {
 protected:
  static Mesh::Options Options() {
    Mesh::Options options;
    options.broker_args = kSlowHeartbeat;
    options.lease_grace_ms = 3000;
    return options;
  }
  ReplicasTest() : MeshTest(Options()) {}

  Mesh::Replica& SecondReplica() {
    return mesh_.StartReplica(
        {kSlowHeartbeat[0], absl::StrCat("--lease_grace_ms=", 3000)});
  }

  std::vector<std::string> Column(const std::string& sql, const std::string& task_id) {
    auto pool = OpenPool(mesh_.database_url(), 1);
    EXPECT_THAT(pool, IsOk());
    soci::session session(**pool);
    std::vector<std::string> out(1000);
    session << sql, soci::use(task_id), soci::into(out);
    return out;
  }
};

TEST_F(ReplicasTest, ATaskCreatedOnOneReplicaRunsOnTheOthersRunnerAndBothStreamsSeeAllOfIt) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Mesh::Replica& b = SecondReplica();
  mesh_.StartRunnerAt(b.broker_addr(), *b.broker, s.api_key, "on-b");
  const testing::Headers auth = {{"Authorization", "Bearer " + s.api_key}};
  const std::string path = "/api/events?workspaceId=" + s.workspace_id;
  auto on_a = SseStream::Open(mesh_.gateway_url(), path, auth);
  auto on_b = SseStream::Open(b.gateway_url(), path, auth);
  ASSERT_THAT(on_a, IsOk());
  ASSERT_THAT(on_b, IsOk());

  // Through A, which has no runner: B's runner takes it.
  const std::string task = CreateTask(s.api_key, s.workspace_id, "echo across");
  const std::vector<SseItem> seen_a = ReadTaskEvents(**on_a, task, {"completed"});
  const std::vector<SseItem> seen_b = ReadTaskEvents(**on_b, task, {"completed"});
  EXPECT_EQ(Column("SELECT runner_name FROM workers WHERE task_id = :t", task),
            std::vector<std::string>{"on-b"});
  // Each stream has every event of the task, the same ids in the same order,
  // whichever replica committed them.
  const auto ids = [](const std::vector<SseItem>& items) {
    std::vector<std::string> out;
    for (const SseItem& i : items) out.push_back(i.id);
    return out;
  };
  EXPECT_EQ(ids(seen_a), ids(seen_b));
  EXPECT_EQ(ids(seen_a), Column("SELECT id::text FROM events WHERE task_id = :t ORDER BY id", task));
  std::set<std::string> types;
  for (const SseItem& i : seen_a) types.insert(i.event);
  EXPECT_TRUE(types.count("created") && types.count("assigned") && types.count("output"))
      << ::testing::PrintToString(types);
}

TEST_F(ReplicasTest, EveryReplicaListsAllRunnersWithWhatTheyHoldNowAndStatusCountsThem) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Mesh::Replica& b = SecondReplica();
  // A's own broker holds no runner: before, its gateway said unavailable.
  EXPECT_EQ(Call("GET", "/status", s.api_key).status, 503);
  Process& on_b = mesh_.StartRunnerAt(b.broker_addr(), *b.broker, s.api_key, "on-b", {"--max_tasks=1"});
  auto runners_named = [](const std::string& name) {
    return [name](const Struct& body) {
      const auto& list = body.fields().at("runners").list_value().values();
      return std::any_of(list.begin(), list.end(), [&](const auto& r) {
        return Str(r.struct_value(), "name") == name;
      });
    };
  };
  // Through A's gateway, the heartbeat a minute away.
  Struct listed = WaitForJson("/api/runners", runners_named("on-b"), "B's runner, through A", 10000);
  const Struct runner = listed.fields().at("runners").list_value().values(0).struct_value();
  EXPECT_EQ(Str(runner, "name"), "on-b");
  EXPECT_EQ(Str(runner, "accountId"), s.account_id);
  EXPECT_EQ(Num(runner, "maxTasks"), 1);
  EXPECT_EQ(Num(runner, "activeWorkers"), 0);
  HttpResult idle = Call("GET", "/status", s.api_key);
  EXPECT_EQ(idle.status, 200) << idle.body;
  EXPECT_EQ(Str(Json(idle.body), "status"), "idle");

  // What it holds is read when asked: busy at once, through A.
  const std::string task = CreateTask(s.api_key, s.workspace_id, "echo begin; sleep 60");
  WaitForTaskState(task, "running");
  listed = Json(Call("GET", "/api/runners", s.api_key).body);
  ASSERT_EQ(listed.fields().at("runners").list_value().values_size(), 1) << "listed once";
  EXPECT_EQ(Num(listed.fields().at("runners").list_value().values(0).struct_value(), "activeWorkers"), 1);
  HttpResult busy = Call("GET", "/status", s.api_key);
  EXPECT_EQ(busy.status, 429) << busy.body;
  ASSERT_EQ(Call("POST", "/api/tasks/" + task + "/cancel", s.api_key).status, 200);
  WaitForTaskState(task, "canceled", 15000);

  // Another account sees none of them.
  Setup other = CreateAccountAndWorkspace("service", true, true);
  EXPECT_EQ(Json(Call("GET", "/api/runners", other.api_key).body)
                .fields().at("runners").list_value().values_size(), 0);
  // Gone from B, gone from A's list.
  on_b.Stop(SIGTERM, 10000);
  WaitForJson("/api/runners", [](const Struct& body) {
    return body.fields().at("runners").list_value().values_size() == 0;
  }, "no runner, through A", 10000);
}

TEST_F(ReplicasTest, ACancelSentThroughOneReplicaStopsTheTaskOnTheOthersRunner) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Mesh::Replica& b = SecondReplica();
  mesh_.StartRunnerAt(b.broker_addr(), *b.broker, s.api_key, "holder");
  const std::string task = CreateTask(s.api_key, s.workspace_id, "echo begin; sleep 60");
  const Struct running = WaitForTaskState(task, "running");
  const std::string worker = Str(Obj(running, "task"), "workerId");
  // Another account, through A: refused before anything is passed on.
  Setup other = CreateAccountAndWorkspace("service", true, true);
  HttpResult theirs = Call("POST", "/api/workers/" + worker + "/cancel", other.api_key);
  EXPECT_EQ(theirs.status, 404) << theirs.body;
  // Nor may another account's runner on A take the work over by resuming it.
  RawRunner thief(mesh_.broker_addr(), other.api_key);
  const v1::BrokerMessage welcome =
      thief.Hello("thief", {{worker, 1}});  // the right epoch: a first attempt
  ASSERT_TRUE(welcome.has_welcome());
  EXPECT_THAT(welcome.welcome().stale_workers(), ::testing::Contains(worker));
  EXPECT_EQ(Column("SELECT runner_name FROM workers WHERE task_id = :t", task),
            std::vector<std::string>{"holder"});
  EXPECT_EQ(Str(Obj(Json(Call("GET", "/api/tasks/" + task, s.api_key).body), "task"), "state"), "running");
  // Through A, whose runners hold nothing.
  HttpResult cancel = Call("POST", "/api/workers/" + worker + "/cancel", s.api_key);
  EXPECT_EQ(cancel.status, 200) << cancel.body;
  WaitForTaskState(task, "canceled", 15000);
}

TEST_F(ReplicasTest, AReplicaKilledMidTaskLosesNothingItsRunnerMovesToTheOther) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Mesh::Replica& b = SecondReplica();
  // As behind a Service: B's address first, A's next.
  Process& runner = mesh_.StartRunnerAt(absl::StrCat("ipv4:", b.broker_addr(), ",", mesh_.broker_addr()),
                                        *b.broker, s.api_key, "mover");
  const std::string task =
      CreateTask(s.api_key, s.workspace_id, "for i in $(seq 1 30); do echo r$i; sleep 0.1; done");
  WaitForTaskState(task, "running");
  EXPECT_EQ(Column("SELECT runner_name FROM workers WHERE task_id = :t", task),
            std::vector<std::string>{"mover"});
  ASSERT_EQ(kill(b.broker->pid(), SIGKILL), 0);
  const Struct done = WaitForTaskState(task, "completed", 30000);
  EXPECT_EQ(done.fields().at("workers").list_value().values_size(), 1) << "the task ran once";
  std::vector<std::string> expected;
  for (int i = 1; i <= 30; ++i) expected.push_back(absl::StrCat("r", i));
  EXPECT_EQ(Column("SELECT body->>'text' FROM events WHERE task_id = :t AND type = 'output' ORDER BY id",
                   task),
            expected);
  EXPECT_TRUE(mesh_.broker().WaitForLog("name=mover account=", 1000)) << runner.Log();
}

TEST_F(ReplicasTest, TheWorkOfAReplicaThatIsGoneWithItsRunnerIsAdoptedAndRequeued) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  // Heartbeats of 300 ms here: a replica is gone after three missed ones.
  Mesh::Replica& b = mesh_.StartReplica({"--heartbeat_interval_ms=300", "--lease_grace_ms=1000"});
  Mesh::Replica& c = mesh_.StartReplica({"--heartbeat_interval_ms=300", "--lease_grace_ms=1000"});
  Process& lost = mesh_.StartRunnerAt(b.broker_addr(), *b.broker, s.api_key, "lost");
  const std::string task = CreateTask(s.api_key, s.workspace_id, "sleep 60");
  WaitForTaskState(task, "running");
  // The replica and its runner go together (a node lost).
  ASSERT_EQ(kill(lost.pid(), SIGKILL), 0);
  ASSERT_EQ(kill(b.broker->pid(), SIGKILL), 0);
  // C adopts the worker, its lease grace runs out, the task is requeued and
  // C's new runner takes it.
  mesh_.StartRunnerAt(c.broker_addr(), *c.broker, s.api_key, "next");
  ASSERT_TRUE(c.broker->WaitForLog("workers of a broker that is gone wait", 10000)) << c.broker->Log();
  WaitForJson(
      "/api/tasks/" + task,
      [](const Struct& got) { return got.fields().at("workers").list_value().values_size() == 2; },
      "a second attempt", 20000);
  EXPECT_EQ(Column("SELECT type FROM events WHERE task_id = :t AND type = 'requeued'", task),
            std::vector<std::string>{"requeued"});
  EXPECT_EQ(Column("SELECT runner_name FROM workers WHERE task_id = :t ORDER BY created_at", task),
            (std::vector<std::string>{"lost", "next"}));
  // A, with its minute-long heartbeat, adopted nothing.
  EXPECT_FALSE(mesh_.broker().WaitForLog("workers of a broker that is gone", 0));
  const Struct running = WaitForTaskState(task, "running");
  EXPECT_EQ(Call("POST", "/api/workers/" + Str(Obj(running, "task"), "workerId") + "/cancel", s.api_key).status,
            200);
  WaitForTaskState(task, "canceled", 15000);
}

TEST_F(ReplicasTest, AReplicaThatStartsLeavesTheOthersRunningWorkAlone) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "steady");
  const std::string task = CreateTask(s.api_key, s.workspace_id, "sleep 5; echo done");
  WaitForTaskState(task, "running");
  // Its lease grace (3 s) passes while the task still runs on A.
  SecondReplica();
  const Struct done = WaitForTaskState(task, "completed", 20000);
  EXPECT_EQ(done.fields().at("workers").list_value().values_size(), 1);
  EXPECT_TRUE(Column("SELECT type FROM events WHERE task_id = :t AND type IN ('requeued', 'error')", task)
                  .empty());
}

TEST_F(ReplicasTest, TasksOfOneBranchCreatedOnBothReplicasAtOnceRunOneAfterTheOther) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Mesh::Replica& b = SecondReplica();
  mesh_.StartRunner(s.api_key, "a-runner", {"--max_tasks=2"});
  mesh_.StartRunnerAt(b.broker_addr(), *b.broker, s.api_key, "b-runner", {"--max_tasks=2"});
  const std::string body = absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                        R"(","provider":"command","command":"sleep 0.5","workBranch":"feature/one"})");
  for (int round = 0; round < 3; ++round) {
    auto on_a = std::async(std::launch::async, [&] { return Call("POST", "/api/tasks", s.api_key, body); });
    auto on_b = std::async(std::launch::async,
                           [&] { return CallAt(b.gateway_url(), "POST", "/api/tasks", s.api_key, body); });
    const HttpResult ra = on_a.get(), rb = on_b.get();
    ASSERT_EQ(ra.status, 201) << ra.body;
    ASSERT_EQ(rb.status, 201) << rb.body;
    const std::string first = Str(Json(ra.body), "id"), second = Str(Json(rb.body), "id");
    WaitForTaskState(first, "completed", 20000);
    WaitForTaskState(second, "completed", 20000);
    // One holds the branch from its assignment to its end; the other is
    // assigned only after that.
    const auto span = [&](const std::string& id) {
      const std::vector<std::string> assigned =
          Column("SELECT id::text FROM events WHERE task_id = :t AND type = 'assigned'", id);
      const std::vector<std::string> ended =
          Column("SELECT id::text FROM events WHERE task_id = :t AND type = 'completed'", id);
      EXPECT_EQ(assigned.size(), 1u);
      EXPECT_EQ(ended.size(), 1u);
      return std::pair(std::stoll(assigned.at(0)), std::stoll(ended.at(0)));
    };
    const auto [a0, a1] = span(first);
    const auto [b0, b1] = span(second);
    EXPECT_TRUE(a1 < b0 || b1 < a0) << "round " << round << ": both held feature/one: [" << a0 << ", "
                                     << a1 << "] and [" << b0 << ", " << b1 << "]";
  }
}

}  // namespace
}  // namespace buildd
