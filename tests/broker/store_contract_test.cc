// The store contract: every BrokerStore implementation (PostgreSQL, and the
// in-memory one the dispatcher's unit tests use) passes the same cases.
#include <memory>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "common/db.h"
#include "common/ids.h"
#include "services/broker/conversions.h"
#include "services/broker/pg_broker_store.h"
#include "tests/broker/memory_broker_store.h"
#include "tests/testing/matchers.h"
#include "tests/testing/pg_fixture.h"

namespace buildd::broker {
namespace {

using ::buildd::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

enum class Kind { kPostgres, kMemory };

void PrintTo(Kind kind, std::ostream* os) { *os << (kind == Kind::kPostgres ? "postgres" : "memory"); }

SecretBox Box(char digit) { return *SecretBox::FromHex(std::string(64, digit)); }

class StoreContractTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    if (GetParam() == Kind::kPostgres) {
      db_ = std::make_unique<buildd::testing::TestDatabase>();
      pool_ = db_->Pool(2);
      ASSERT_THAT(ApplyMigrations(*pool_, "broker", BrokerMigrations()), IsOk());
      store_ = std::make_unique<PgBrokerStore>(*pool_, Box('a'), *ToConninfo(db_->url()));
    } else {
      store_ = std::make_unique<MemoryBrokerStore>(Box('a'));
    }
    auto writer = store_->OpenWriter();
    ASSERT_THAT(writer.status(), IsOk());
    writer_ = *std::move(writer);
  }

  std::string Workspace(const std::string& name) {
    WorkspaceRecord w;
    w.id = NewUuid();
    w.name = name;
    w.default_branch = "main";
    writer_->InsertWorkspace(w);
    return w.id;
  }

  static TaskRecord Task(const std::string& ws, const std::string& prompt, int priority = 0,
                         const std::string& key = "") {
    pb::Task spec;
    spec.set_workspace_id(ws);
    spec.set_provider("claude");
    spec.set_prompt(prompt);
    spec.set_priority(priority);
    spec.set_max_attempts(3);
    spec.set_concurrency_key(key);
    return TaskRecord::FromSpec(NewUuid(), spec, "");
  }

  void Insert(const std::vector<TaskRecord>& tasks, const std::vector<WorkerRecord>& workers = {}) {
    WriteBatch batch;
    for (const TaskRecord& t : tasks) batch.InsertTask(t);
    for (const WorkerRecord& w : workers) batch.InsertWorker(w);
    writer_->Write(batch, nullptr);
  }

  void Change(const WorkerChange& c) {
    WriteBatch batch;
    batch.ChangeWorker(c);
    writer_->Write(batch, nullptr);
  }

  // `t` assigned to a new worker of `account` at epoch 1; returns the worker.
  WorkerRecord Assigned(TaskRecord& t, const std::string& account = "") {
    WorkerRecord w;
    w.id = NewUuid();
    w.task_id = t.id;
    w.workspace_id = t.workspace_id;
    w.account_id = account;
    w.runner_id = "runner-1";
    w.runner_name = "one";
    w.epoch = 1;
    t.state = "assigned";
    t.epoch = 1;
    t.attempts = 1;
    t.worker_id = w.id;
    Insert({t}, {w});
    return w;
  }

  static pb::Event Event(const std::string& type, const std::string& task_id,
                         const std::string& ws) {
    pb::Event e;
    e.set_type(type);
    e.set_task_id(task_id);
    e.set_workspace_id(ws);
    return e;
  }

  static ClaimFilter Everything() {
    ClaimFilter f;
    f.claim_all = true;
    f.account_type = "service";
    f.providers = {"claude", "codex", "command"};
    return f;
  }

  std::vector<std::string> Ids(const std::vector<TaskRecord>& tasks) {
    std::vector<std::string> ids;
    for (const TaskRecord& t : tasks) ids.push_back(t.id);
    return ids;
  }

  std::unique_ptr<buildd::testing::TestDatabase> db_;
  std::unique_ptr<soci::connection_pool> pool_;
  std::unique_ptr<BrokerStore> store_;
  std::unique_ptr<StoreWriter> writer_;
};

TEST_P(StoreContractTest, ATaskReadsBackAsWritten) {
  const std::string ws = Workspace("one");
  TaskRecord t = Task(ws, "fix the tests", 7);
  t.required_labels = {"gpu", "linux"};
  t.created_by = NewUuid();
  Insert({t});
  absl::StatusOr<TaskRecord> read = store_->GetTask(t.id);
  ASSERT_THAT(read.status(), IsOk());
  EXPECT_EQ(read->workspace_id, ws);
  EXPECT_EQ(read->state, "pending");
  EXPECT_EQ(read->priority, 7);
  EXPECT_EQ(read->provider, "claude");
  EXPECT_EQ(read->created_by, t.created_by);
  EXPECT_THAT(read->required_labels, ElementsAre("gpu", "linux"));
  ASSERT_NE(read->spec, nullptr);
  EXPECT_EQ(read->spec->prompt(), "fix the tests");
  EXPECT_EQ(read->spec->work_branch(), TaskRecord::DefaultWorkBranch(t.id));
  EXPECT_EQ(read->concurrency_key, TaskRecord::DefaultWorkBranch(t.id));
  EXPECT_FALSE(read->created_at.empty());

  absl::StatusOr<TaskRecord> missing = store_->GetTask(NewUuid());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("task "));
}

TEST_P(StoreContractTest, ATaskOfAMissingWorkspaceIsRefused) {
  try {
    Insert({Task(NewUuid(), "nowhere")});
    FAIL() << "the write went through";
  } catch (const std::exception& e) {
    EXPECT_EQ(writer_->StatusOf(e).code(), absl::StatusCode::kFailedPrecondition) << e.what();
  }
  EXPECT_EQ(store_->CountPending().value_or(-1), 0);
}

TEST_P(StoreContractTest, TasksListNewestFirstFilteredByWorkspaceStateAndVisibility) {
  const std::string a = Workspace("a"), b = Workspace("b");
  TaskRecord t1 = Task(a, "one"), t2 = Task(b, "two"), t3 = Task(a, "three");
  Insert({t1});
  Insert({t2});
  Assigned(t3);
  EXPECT_EQ(Ids(*store_->ListTasks("", "", 10, std::nullopt)),
            (std::vector<std::string>{t3.id, t2.id, t1.id}));
  EXPECT_EQ(Ids(*store_->ListTasks(a, "", 10, std::nullopt)), (std::vector<std::string>{t3.id, t1.id}));
  EXPECT_EQ(Ids(*store_->ListTasks("", "pending", 10, std::nullopt)),
            (std::vector<std::string>{t2.id, t1.id}));
  EXPECT_EQ(Ids(*store_->ListTasks("", "", 10, std::set<std::string>{b})),
            (std::vector<std::string>{t2.id}));
  EXPECT_EQ(Ids(*store_->ListTasks("", "", 1, std::nullopt)), (std::vector<std::string>{t3.id}));
  EXPECT_TRUE(store_->ListTasks("", "", 10, std::set<std::string>{})->empty());

  const auto workspaces = *store_->ListWorkspaces(std::set<std::string>{b});
  ASSERT_EQ(workspaces.size(), 1u);
  EXPECT_EQ(workspaces[0].name, "b");
  EXPECT_EQ(store_->ListWorkspaces(std::nullopt)->size(), 2u);
  EXPECT_EQ(store_->GetWorkspace(a)->default_branch, "main");
}

TEST_P(StoreContractTest, EventIdsAreGapFreeAndReadBackFiltered) {
  const std::string ws = Workspace("w");
  TaskRecord t = Task(ws, "x");
  Insert({t});
  std::vector<pb::Event> first = {Event("created", t.id, ws), Event("output", t.id, ws)};
  WriteBatch none;
  writer_->Write(none, &first);
  std::vector<pb::Event> second = {Event("output", "", ws), Event("completed", t.id, ws)};
  writer_->Write(none, &second);
  EXPECT_EQ(first[0].id(), 1);
  EXPECT_EQ(first[1].id(), 2);
  EXPECT_EQ(second[0].id(), 3);
  EXPECT_EQ(second[1].id(), 4);
  EXPECT_EQ(*store_->LastEventId(), 4);

  EventFilter of_task;
  of_task.task_id = t.id;
  auto events = *store_->ReadEvents(0, of_task, 100);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].type(), "completed");
  EXPECT_EQ(events[2].id(), 4);
  EXPECT_EQ(store_->ReadEvents(1, EventFilter{}, 2)->size(), 2u);
  EXPECT_EQ(store_->ReadEvents(0, EventFilter{}, 100, 2)->back().id(), 2);
  EventFilter hidden;
  hidden.allowed_workspaces = std::set<std::string>{};
  EXPECT_TRUE(store_->ReadEvents(0, hidden, 100)->empty());

  // In id order past 9 and 99 too (not as text).
  std::vector<pb::Event> many;
  for (int i = 0; i < 120; ++i) many.push_back(Event("output", t.id, ws));
  writer_->Write(none, &many);
  const auto all = *store_->ReadEvents(0, of_task, 1000);
  ASSERT_EQ(all.size(), 123u);
  for (size_t i = 1; i < all.size(); ++i) ASSERT_LT(all[i - 1].id(), all[i].id()) << i;
  EXPECT_EQ(store_->ReadEvents(8, EventFilter{}, 3)->front().id(), 9);
}

TEST_P(StoreContractTest, AWriteThatFailsInATransactionLeavesNothing) {
  const std::string ws = Workspace("w");
  const int64_t last = *store_->LastEventId();
  TaskRecord t = Task(ws, "x");
  writer_->Begin();
  Insert({t});
  std::vector<pb::Event> events = {Event("created", t.id, ws)};
  WriteBatch none;
  writer_->Write(none, &events);
  writer_->Rollback();
  EXPECT_EQ(store_->GetTask(t.id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*store_->LastEventId(), last);
  // The next write draws the same id: none is lost.
  std::vector<pb::Event> again = {Event("created", "", ws)};
  writer_->Write(none, &again);
  EXPECT_EQ(again[0].id(), last + 1);
}

TEST_P(StoreContractTest, AWorkerChangeAppliesOnlyAtItsEpoch) {
  const std::string ws = Workspace("w");
  TaskRecord t = Task(ws, "x");
  const WorkerRecord w = Assigned(t);

  WorkerChange stale;
  stale.worker_id = w.id;
  stale.epoch = 2;
  stale.worker_state = "running";
  stale.task_state = "running";
  stale.seq = 9;
  Change(stale);
  EXPECT_EQ(store_->GetWorker(w.id)->state, "idle");
  EXPECT_EQ(store_->GetTask(t.id)->state, "assigned");

  WorkerChange running = stale;
  running.epoch = 1;
  running.seq = 5;
  Change(running);
  WorkerChange older;
  older.worker_id = w.id;
  older.epoch = 1;
  older.seq = 3;
  Change(older);
  EXPECT_EQ(store_->GetWorker(w.id)->state, "running");
  EXPECT_EQ(store_->GetWorker(w.id)->last_seq, 5) << "a lower seq never moves it back";
  EXPECT_EQ(store_->GetTask(t.id)->state, "running");

  WorkerChange done;
  done.worker_id = w.id;
  done.epoch = 1;
  done.worker_state = "error";
  done.task_state = "failed";
  done.exit_code = 3;
  done.error = "boom";
  Change(done);
  const TaskRecord failed = *store_->GetTask(t.id);
  EXPECT_EQ(failed.state, "failed");
  EXPECT_EQ(failed.exit_code, 3);
  EXPECT_EQ(failed.error, "boom");
  EXPECT_EQ(store_->GetWorker(w.id)->error, "boom");
  const auto workers = *store_->ListWorkers(t.id, "", std::nullopt);
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].runner_name, "one");
}

TEST_P(StoreContractTest, ClaimsTakeTheBestPendingTasksTheFilterAllows) {
  const std::string a = Workspace("a"), b = Workspace("b");
  TaskRecord low = Task(a, "low", 1), high = Task(a, "high", 5), later_high = Task(a, "later", 5);
  TaskRecord elsewhere = Task(b, "b", 9);
  TaskRecord gpu = Task(a, "gpu", 9);
  gpu.required_labels = {"gpu"};
  TaskRecord codex = Task(a, "codex", 9);
  codex.provider = "codex";
  TaskRecord users = Task(a, "user", 9);
  users.runner_preference = "user";
  for (const TaskRecord& t : {low, high, later_high, elsewhere, gpu, codex, users}) Insert({t});

  ClaimFilter f = Everything();
  f.claim_all = false;
  f.claim_workspaces = {a};
  f.providers = {"claude"};
  writer_->Begin();
  EXPECT_EQ(Ids(writer_->ClaimPending(f, 2)), (std::vector<std::string>{high.id, later_high.id}));
  EXPECT_EQ(Ids(writer_->ClaimPending(f, 10)),
            (std::vector<std::string>{high.id, later_high.id, low.id}));
  f.labels = {"gpu"};
  f.providers = {"claude", "codex"};
  f.account_type = "user";
  EXPECT_EQ(writer_->ClaimPending(f, 10).size(), 6u) << "gpu, codex and user tasks too";
  f.only_workspaces = {b};
  EXPECT_TRUE(writer_->ClaimPending(f, 10).empty()) << "b is not granted";
  EXPECT_EQ(Ids(writer_->ClaimPending(Everything(), 1)), (std::vector<std::string>{elsewhere.id}));
  writer_->Rollback();
}

TEST_P(StoreContractTest, AClaimForOneTaskTakesThatTaskAlone) {
  const std::string ws = Workspace("w");
  TaskRecord older = Task(ws, "older", 9), wanted = Task(ws, "wanted", 0);
  Insert({older, wanted});
  ClaimFilter f = Everything();
  f.only_task = wanted.id;
  writer_->Begin();
  EXPECT_EQ(Ids(writer_->ClaimPending(f, 10)), (std::vector<std::string>{wanted.id}));
  f.only_task = NewUuid();
  EXPECT_TRUE(writer_->ClaimPending(f, 10).empty());
  writer_->Rollback();
}

TEST_P(StoreContractTest, ATasksSealedCredentialsAreKeptApartFromItsSpec) {
  const std::string ws = Workspace("w");
  TaskRecord t = Task(ws, "with credentials");
  t.sealed_credentials = store_->SealTaskCredentials(t.id, {{"GIT_TOKEN", "ghp_contract"}});
  ASSERT_FALSE(t.sealed_credentials.empty());
  Insert({t});
  const TaskRecord read = *store_->GetTask(t.id);
  EXPECT_TRUE(read.spec->credentials().empty());
  EXPECT_EQ(store_->OpenTaskCredentials(read)->at("GIT_TOKEN"), "ghp_contract");
  // Claimed, it still carries them to its Assign.
  writer_->Begin();
  const std::vector<TaskRecord> claimed = writer_->ClaimPending(Everything(), 10);
  writer_->Rollback();
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(store_->OpenTaskCredentials(claimed[0])->at("GIT_TOKEN"), "ghp_contract");
  // Bound to their task: another's record does not open them.
  TaskRecord other = Task(ws, "other");
  other.sealed_credentials = read.sealed_credentials;
  EXPECT_EQ(store_->OpenTaskCredentials(other).status().code(), absl::StatusCode::kDataLoss);
}

TEST_P(StoreContractTest, AWebhookDeliveryIsRecordedOnceAndOnlyWithItsTransaction) {
  EXPECT_TRUE(writer_->RecordDelivery("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
  EXPECT_FALSE(writer_->RecordDelivery("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
  // Its task could not be stored: the redelivery counts.
  writer_->Begin();
  EXPECT_TRUE(writer_->RecordDelivery("another"));
  writer_->Rollback();
  EXPECT_TRUE(writer_->RecordDelivery("another"));
}

TEST_P(StoreContractTest, ATaskWaitsBehindAnUnfinishedOneWithItsKey) {
  const std::string ws = Workspace("w");
  TaskRecord first = Task(ws, "first", 0, "deploy"), second = Task(ws, "second", 0, "deploy");
  TaskRecord other = Task(ws, "other", 0, "docs");
  Insert({first});
  Insert({second});
  Insert({other});
  writer_->Begin();
  EXPECT_EQ(Ids(writer_->ClaimPending(Everything(), 10)), (std::vector<std::string>{first.id, other.id}));
  EXPECT_TRUE(writer_->KeyIsBusy(ws, "deploy"));
  EXPECT_FALSE(writer_->KeyIsBusy(ws, "nobody"));
  // The key's other task holds it; "other" alone does not hold its own.
  EXPECT_TRUE(writer_->KeyIsBusy(ws, "deploy", first.id));
  EXPECT_FALSE(writer_->KeyIsBusy(ws, "docs", other.id));
  writer_->Rollback();
  EXPECT_TRUE(*store_->HasPendingWithKey(ws, "deploy"));

  // The first one running still holds the key.
  first.state = "running";
  first.epoch = 1;
  writer_->UpdateTask(first);
  writer_->Begin();
  EXPECT_EQ(Ids(writer_->ClaimPending(Everything(), 10)), (std::vector<std::string>{other.id}));
  writer_->Rollback();
  first.state = "completed";
  writer_->UpdateTask(first);
  writer_->Begin();
  EXPECT_EQ(Ids(writer_->ClaimPending(Everything(), 10)), (std::vector<std::string>{second.id, other.id}));
  writer_->Rollback();
}

TEST_P(StoreContractTest, OnlyAPendingTaskIsCanceledAtOnce) {
  const std::string ws = Workspace("w");
  TaskRecord pending = Task(ws, "p"), assigned = Task(ws, "a");
  Insert({pending});
  Assigned(assigned);
  EXPECT_EQ(*store_->CountPending(), 1);
  std::optional<TaskRecord> canceled = writer_->CancelPending(pending.id);
  ASSERT_TRUE(canceled.has_value());
  EXPECT_EQ(canceled->state, "canceled");
  EXPECT_EQ(canceled->spec->prompt(), "p");
  EXPECT_FALSE(writer_->CancelPending(pending.id).has_value());
  EXPECT_FALSE(writer_->CancelPending(assigned.id).has_value());
  EXPECT_EQ(store_->GetTask(assigned.id)->state, "assigned");
  EXPECT_EQ(*store_->CountPending(), 0);
}

TEST_P(StoreContractTest, TheQueueCountsUnfinishedTasksByRouteAndWhetherTheyWait) {
  const std::string ws = Workspace("w");
  TaskRecord a = Task(ws, "a"), b = Task(ws, "b"), running = Task(ws, "r"), done = Task(ws, "d");
  TaskRecord gpu = Task(ws, "gpu");
  gpu.required_labels = {"gpu", "linux"};
  done.state = "completed";
  Insert({a, b, gpu, done});
  Assigned(running);
  std::vector<QueueGroup> queue = *store_->Queue();
  std::sort(queue.begin(), queue.end(), [](const QueueGroup& x, const QueueGroup& y) {
    return std::tie(x.route.required_labels, x.pending) < std::tie(y.route.required_labels, y.pending);
  });
  ASSERT_EQ(queue.size(), 3u);
  EXPECT_EQ(queue[0].route.required_labels, std::vector<std::string>{});
  EXPECT_FALSE(queue[0].pending);
  EXPECT_EQ(queue[0].tasks, 1);
  EXPECT_TRUE(queue[1].pending);
  EXPECT_EQ(queue[1].tasks, 2);
  EXPECT_EQ(queue[1].route.provider, "claude");
  EXPECT_EQ(queue[1].route.workspace_id, ws);
  EXPECT_EQ(queue[1].route.runner_preference, "any");
  EXPECT_EQ(queue[2].route.required_labels, (std::vector<std::string>{"gpu", "linux"}));
  EXPECT_TRUE(queue[2].pending);
  EXPECT_EQ(queue[2].tasks, 1);
}

TEST_P(StoreContractTest, PendingTasksGroupByProviderAndLabelSetTheOldestGroupFirst) {
  const std::string ws = Workspace("w"), other = Workspace("o");
  TaskRecord plain = Task(ws, "p"), gpu1 = Task(ws, "g1"), gpu2 = Task(ws, "g2", 9);
  TaskRecord both1 = Task(ws, "b1"), both2 = Task(ws, "b2"), elsewhere = Task(other, "e");
  TaskRecord running = Task(ws, "r"), codex = Task(ws, "c");
  gpu1.required_labels = gpu2.required_labels = {"gpu"};
  both1.required_labels = {"linux", "gpu"};
  both2.required_labels = {"gpu", "linux"};
  running.required_labels = {"gpu"};
  codex.provider = "codex";
  for (const TaskRecord& t : {gpu1, plain, gpu2, both1, both2, elsewhere, codex}) Insert({t});
  Assigned(running);

  std::vector<PendingGroup> groups = *store_->PendingGroups("", std::nullopt);
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0].provider, "claude");
  EXPECT_EQ(groups[0].labels, std::vector<std::string>{"gpu"});
  EXPECT_EQ(groups[0].tasks, 2);
  EXPECT_EQ(groups[0].oldest_task_id, gpu1.id);
  EXPECT_FALSE(groups[0].oldest_created_at.empty());
  EXPECT_EQ(groups[1].labels, std::vector<std::string>{});
  EXPECT_EQ(groups[1].tasks, 2) << "plain and elsewhere";
  EXPECT_EQ(groups[1].oldest_task_id, plain.id);
  EXPECT_EQ(groups[2].labels, (std::vector<std::string>{"gpu", "linux"}));
  EXPECT_EQ(groups[2].tasks, 2);
  EXPECT_EQ(groups[2].oldest_task_id, both1.id);
  EXPECT_EQ(groups[3].provider, "codex");
  EXPECT_EQ(groups[3].tasks, 1);

  // Narrowed to the workspaces one may see, or to one.
  std::vector<PendingGroup> seen = *store_->PendingGroups("", std::set<std::string>{other});
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].oldest_task_id, elsewhere.id);
  EXPECT_EQ(store_->PendingGroups(ws, std::nullopt)->at(1).tasks, 1);
  EXPECT_TRUE(store_->PendingGroups(ws, std::set<std::string>{other})->empty());
}

TEST_P(StoreContractTest, QueuePositionsFollowTheOrderOfClaims) {
  const std::string ws = Workspace("w"), other = Workspace("o");
  TaskRecord a = Task(ws, "a"), b = Task(other, "b", 5), c = Task(ws, "c"), d = Task(ws, "d", -1);
  TaskRecord running = Task(ws, "r", 50);
  for (const TaskRecord& t : {a, b, c, d}) Insert({t});
  Assigned(running);
  std::map<std::string, int> at = *store_->QueuePositions({a.id, c.id, d.id, running.id, NewUuid()});
  EXPECT_EQ(at, (std::map<std::string, int>{{a.id, 2}, {c.id, 3}, {d.id, 4}}));
  EXPECT_EQ(store_->QueuePositions({b.id})->at(b.id), 1);
  EXPECT_TRUE(store_->QueuePositions({})->empty());
  writer_->Begin();
  EXPECT_EQ(Ids(writer_->ClaimPending(Everything(), 10)), (std::vector<std::string>{b.id, a.id, c.id, d.id}));
  writer_->Rollback();
}

TEST_P(StoreContractTest, AKeysHolderIsTheTaskAClaimWaitsFor) {
  const std::string ws = Workspace("w");
  TaskRecord first = Task(ws, "first", 0, "deploy"), second = Task(ws, "second", 0, "deploy");
  TaskRecord urgent = Task(ws, "urgent", 5, "deploy"), alone = Task(ws, "alone", 0, "docs");
  for (const TaskRecord& t : {first, second, urgent, alone}) Insert({t});
  // Pending ones: one ahead in the claim order holds the key (the oldest).
  EXPECT_EQ(*store_->KeyHolder(first), urgent.id);
  EXPECT_EQ(*store_->KeyHolder(second), first.id);
  EXPECT_EQ(*store_->KeyHolder(urgent), "");
  EXPECT_EQ(*store_->KeyHolder(alone), "");
  // A running one holds it before any pending one.
  first.state = "running";
  first.epoch = 1;
  writer_->UpdateTask(first);
  EXPECT_EQ(*store_->KeyHolder(urgent), first.id);
  EXPECT_EQ(*store_->KeyHolder(second), first.id);
  first.state = "completed";
  writer_->UpdateTask(first);
  EXPECT_EQ(*store_->KeyHolder(urgent), "");
  EXPECT_EQ(*store_->KeyHolder(second), urgent.id);
}

TEST_P(StoreContractTest, OnlyTheLeaseHoldersAccountReattachesALiveWorker) {
  const std::string ws = Workspace("w");
  const std::string account = NewUuid(), other = NewUuid();
  const std::string broker = NewUuid();
  TaskRecord t = Task(ws, "x");
  const WorkerRecord w = Assigned(t, account);

  EXPECT_FALSE(writer_->Reattach(w.id, 1, other, "runner-2", broker).has_value());
  EXPECT_FALSE(writer_->Reattach(w.id, 2, account, "runner-2", broker).has_value());
  const std::optional<LiveWorker> held = writer_->Reattach(w.id, 1, account, "runner-2", broker);
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->task_id, t.id);
  EXPECT_EQ(held->concurrency_key, t.concurrency_key);
  EXPECT_EQ(held->account_id, account);
  EXPECT_EQ(held->runner_id, "runner-2");
  EXPECT_EQ(store_->GetWorker(w.id)->runner_id, "runner-2");
  EXPECT_EQ(store_->GetWorker(w.id)->broker_id, broker);

  WorkerRecord done = *store_->GetWorker(w.id);
  done.state = "completed";
  writer_->UpdateWorker(done);
  EXPECT_FALSE(writer_->Reattach(w.id, 1, account, "runner-3", broker).has_value());
}

TEST_P(StoreContractTest, MessagesKeepTheirAttachmentsAndCommentsTheirPlace) {
  const std::string ws = Workspace("w");
  TaskRecord t = Task(ws, "p");
  const WorkerRecord w = Assigned(t, NewUuid());
  pb::Message m;
  m.set_id(NewUuid());
  m.set_worker_id(w.id);
  m.set_account_id(w.account_id);
  m.set_text("use the v2 endpoint\nplease");
  m.set_delivered(true);
  m.set_created_at("2026-12-01T10:00:00.000Z");
  pb::Attachment* a = m.add_attachments();
  a->set_name("trace.bin");
  a->set_content_type("application/octet-stream");
  a->set_data(std::string("\0\x01\xff binary", 10));
  writer_->InsertMessage(m);
  pb::Comment c;
  c.set_id(NewUuid());
  c.set_task_id(t.id);
  c.set_artifact("patch");
  c.set_path("src/api.ts");
  c.set_line(42);
  c.set_text("this needs a test");
  c.set_created_at("2026-12-01T10:00:01.000Z");
  writer_->InsertComment(c);

  auto listed = store_->ListMessages(w.id);
  ASSERT_THAT(listed.status(), IsOk());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].text(), m.text());
  EXPECT_EQ((*listed)[0].role(), "human");
  EXPECT_TRUE((*listed)[0].delivered());
  ASSERT_EQ((*listed)[0].attachments_size(), 1);
  EXPECT_EQ((*listed)[0].attachments(0).size(), 10);
  EXPECT_TRUE((*listed)[0].attachments(0).data().empty()) << "lists leave the data out";
  auto got = store_->GetAttachment(m.id(), 0);
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_EQ(got->data(), a->data());
  EXPECT_EQ(got->name(), "trace.bin");
  EXPECT_EQ(store_->GetAttachment(m.id(), 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*store_->MessageWorker(m.id()), w.id);
  EXPECT_TRUE(store_->ListMessages(NewUuid())->empty());

  auto comments = store_->ListComments(t.id);
  ASSERT_THAT(comments.status(), IsOk());
  ASSERT_EQ(comments->size(), 1u);
  EXPECT_EQ((*comments)[0].path(), "src/api.ts");
  EXPECT_EQ((*comments)[0].line(), 42);
  EXPECT_EQ((*comments)[0].artifact(), "patch");
}

TEST_P(StoreContractTest, EachReplicaListsTheRunnersTheOthersLastTold) {
  const std::string a = NewUuid(), b = NewUuid(), c = NewUuid();
  pb::ListRunnersResponse on_a, on_b;
  on_a.add_runners()->set_name("laptop");
  on_b.add_runners()->set_name("ci-1");
  on_b.add_runners()->set_name("ci-2");
  writer_->BeatBroker(a, RunnersJson(on_a));
  writer_->BeatBroker(b, RunnersJson(on_b));
  writer_->BeatBroker(c, "{}");
  auto names = [&](const std::string& asking) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<pb::RunnerInfo>> runners = store_->OtherReplicasRunners(asking, 60000);
    EXPECT_THAT(runners, IsOk());
    for (const pb::RunnerInfo& r : runners.value_or(std::vector<pb::RunnerInfo>{})) out.push_back(r.name());
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(names(c), (std::vector<std::string>{"ci-1", "ci-2", "laptop"}));
  EXPECT_EQ(names(a), (std::vector<std::string>{"ci-1", "ci-2"})) << "its own are not the others'";
  // b's next beat tells its runners now; a replica that left tells none.
  writer_->BeatBroker(b, "{}");
  writer_->LeaveBrokers(a);
  EXPECT_TRUE(names(c).empty());
}

TEST_P(StoreContractTest, AGoneReplicasLiveWorkersAreAdoptedByOneReplicaOnce) {
  const std::string ws = Workspace("w");
  const std::string account = NewUuid();
  const std::string a = NewUuid(), b = NewUuid(), c = NewUuid();
  TaskRecord t = Task(ws, "x"), finished = Task(ws, "f");
  const WorkerRecord w = Assigned(t, account);
  WorkerRecord ended = Assigned(finished, account);
  ended.state = "completed";
  writer_->UpdateWorker(ended);
  // Written before replicas were recorded: anyone's.
  writer_->BeatBroker(a, "{}");
  std::vector<LiveWorker> adopted = writer_->AdoptOrphans(a, 60000);
  ASSERT_EQ(adopted.size(), 1u);
  EXPECT_EQ(adopted[0].worker_id, w.id);
  EXPECT_EQ(adopted[0].task_id, t.id);
  EXPECT_EQ(adopted[0].epoch, 1);
  EXPECT_EQ(store_->GetWorker(w.id)->broker_id, a);
  // a is alive: b takes nothing, nor does a take its own again.
  writer_->BeatBroker(b, "{}");
  EXPECT_TRUE(writer_->AdoptOrphans(b, 60000).empty());
  EXPECT_TRUE(writer_->AdoptOrphans(a, 60000).empty());
  // a leaves: b adopts, once.
  writer_->LeaveBrokers(a);
  ASSERT_EQ(writer_->AdoptOrphans(b, 60000).size(), 1u);
  EXPECT_TRUE(writer_->AdoptOrphans(c, 60000).empty());
  EXPECT_EQ(store_->GetWorker(w.id)->broker_id, b);
  // b not seen for longer than c's patience: gone too.
  ASSERT_EQ(writer_->AdoptOrphans(c, 0).size(), 1u);
  EXPECT_EQ(store_->GetWorker(w.id)->broker_id, c);
}

TEST_P(StoreContractTest, CostsAddUpPerAccount) {
  const std::string a = NewUuid(), b = NewUuid();
  EXPECT_DOUBLE_EQ(writer_->AddCost(a, 0.25), 0.25);
  EXPECT_DOUBLE_EQ(writer_->AddCost(a, 0.5), 0.75);
  EXPECT_DOUBLE_EQ(writer_->AddCost(b, 1), 1);
  EXPECT_DOUBLE_EQ(*store_->CostToday(a), 0.75);
  EXPECT_DOUBLE_EQ(*store_->CostToday(NewUuid()), 0);
  EXPECT_EQ(*store_->CostsToday(), (std::map<std::string, double>{{a, 0.75}, {b, 1}}));
}

TEST_P(StoreContractTest, ASessionIsKeptSealedAndOpensAgain) {
  const std::string ws = Workspace("w");
  TaskRecord t = Task(ws, "x");
  Insert({t});
  const std::string transcript(100000, 'z');
  const SealedSession sealed = store_->SealSession(AgentSession{t.id, "claude", "sess-1", transcript, "", ""});
  EXPECT_EQ(sealed.sealed.find(transcript), std::string::npos);
  writer_->SaveSession(sealed);
  auto meta = *store_->GetSession(t.id, false);
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(meta->session_id, "sess-1");
  EXPECT_TRUE(meta->data.empty());
  auto full = *store_->GetSession(t.id, true);
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(full->data, transcript);
  EXPECT_FALSE(store_->GetSession(NewUuid(), true)->has_value());
  writer_->SetArtifacts(t.id, R"({"commitSha":"abc1234"})");
  EXPECT_THAT(store_->GetTask(t.id)->artifacts_json, HasSubstr("abc1234"));
}

TEST_P(StoreContractTest, ACheckpointKeepsItsPromptAndPlanUntilTheTasksLastSessionReplacesIt) {
  const std::string ws = Workspace("w");
  TaskRecord t = Task(ws, "x");
  Insert({t});
  writer_->SaveSession(store_->SealSession(
      AgentSession{t.id, "claude", "sess-plan", "planned", "The plan is approved.", "Plan: a."}));
  auto checkpoint = *store_->GetSession(t.id, true);
  ASSERT_TRUE(checkpoint.has_value());
  EXPECT_EQ(checkpoint->session_id, "sess-plan");
  EXPECT_EQ(checkpoint->data, "planned");
  EXPECT_EQ(checkpoint->continue_prompt, "The plan is approved.");
  EXPECT_EQ(checkpoint->plan, "Plan: a.");
  writer_->SaveSession(store_->SealSession(AgentSession{t.id, "claude", "sess-plan", "all", "", ""}));
  auto last = *store_->GetSession(t.id, true);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->data, "all");
  EXPECT_EQ(last->continue_prompt, "");
  EXPECT_EQ(last->plan, "");
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreContractTest,
                         ::testing::Values(Kind::kPostgres, Kind::kMemory),
                         [](const auto& info) {
                           return info.param == Kind::kPostgres ? "Postgres" : "Memory";
                         });

}  // namespace
}  // namespace buildd::broker
