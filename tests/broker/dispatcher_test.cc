// The dispatcher on its own: the real journal over the in-memory store, and
// runner links that record what they are sent.
#include "services/broker/dispatcher.h"

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/ids.h"
#include "tests/broker/memory_broker_store.h"
#include "tests/testing/matchers.h"

namespace buildd::broker {
namespace {

using ::buildd::testing::IsOk;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr auto kWait = std::chrono::seconds(10);

// A runner stream as the dispatcher sees it: every message it is sent.
class FakeLink final : public RunnerLink {
 public:
  void Send(pb::BrokerMessage message) override {
    std::lock_guard<std::mutex> lock(mu_);
    messages_.push_back(std::move(message));
    cv_.notify_all();
  }
  void Close(const absl::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = status;
    cv_.notify_all();
  }

  // The first message from `from` on that `match` accepts; fails the test
  // when none comes in time.
  template <typename Match>
  pb::BrokerMessage WaitFor(Match match, size_t* from = nullptr) {
    std::unique_lock<std::mutex> lock(mu_);
    size_t i = from != nullptr ? *from : 0;
    const auto deadline = Clock::now() + kWait;
    while (true) {
      for (; i < messages_.size(); ++i) {
        if (match(messages_[i])) {
          if (from != nullptr) *from = i + 1;
          return messages_[i];
        }
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) break;
    }
    ADD_FAILURE() << "no such message among " << messages_.size();
    return pb::BrokerMessage();
  }
  pb::Assign WaitForAssign(size_t* from) {
    return WaitFor([](const pb::BrokerMessage& m) { return m.has_assign(); }, from).assign();
  }
  int64_t WaitForAck(const std::string& worker_id, int64_t up_to) {
    return WaitFor([&](const pb::BrokerMessage& m) {
             return m.has_ack() && m.ack().worker_id() == worker_id && m.ack().up_to_seq() >= up_to;
           })
        .ack()
        .up_to_seq();
  }
  int Count(bool (pb::BrokerMessage::*has)() const) {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(std::count_if(messages_.begin(), messages_.end(),
                                          [&](const pb::BrokerMessage& m) { return (m.*has)(); }));
  }
  absl::Status WaitClosed() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kWait, [&] { return closed_.has_value(); });
    return closed_.value_or(absl::DeadlineExceededError("the link was not closed"));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<pb::BrokerMessage> messages_;
  std::optional<absl::Status> closed_;
};

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest()
      : store_(*SecretBox::FromHex(std::string(64, 'b'))),
        journal_(*store_.OpenWriter(),
                 [this](const std::vector<pb::Event>& events) {
                   std::lock_guard<std::mutex> lock(mu_);
                   for (const auto& e : events) events_.push_back(e);
                   cv_.notify_all();
                 }),
        work_(boost::asio::make_work_guard(timers_)),
        timer_thread_([this] { timers_.run(); }),
        dispatcher_(journal_, store_, timers_, pool_, Options()) {}

  ~DispatcherTest() override {
    dispatcher_.Stop();
    pool_.join();
    journal_.Stop();
    work_.reset();
    timers_.stop();
    timer_thread_.join();
  }

  static DispatcherOptions Options() {
    DispatcherOptions o;
    o.lease_grace_ms = 300;
    o.accept_timeout_ms = 400;
    o.max_streams_per_key = 2;
    return o;
  }

  void SetUp() override {
    ASSERT_THAT(dispatcher_.Start(), IsOk());
    WorkspaceRecord w{NewUuid(), "ws", "", "main", "", "", ""};
    ws_ = w.id;
    ASSERT_THAT(journal_.Run([&](JournalTx& tx) {
      tx.store().InsertWorkspace(w);
      return absl::OkStatus();
    }), IsOk());
  }

  struct Runner {
    std::string id;
    std::shared_ptr<FakeLink> link;
    size_t seen = 0;  // messages already looked at
  };

  Runner Connect(const std::string& account, int max_tasks = 1,
                 std::set<std::string> providers = {"command", "claude"},
                 const std::vector<pb::ResumeWorker>& resume = {}, double max_cost = 0,
                 const std::string& key = "") {
    Runner r{NewUuid(), std::make_shared<FakeLink>()};
    ConnectedRunner c;
    c.slot.runner_id = r.id;
    c.slot.name = "runner-" + r.id.substr(0, 4);
    c.slot.account_id = account;
    c.slot.account_type = "service";
    c.slot.access.claim_all = true;
    c.slot.access.account_max_cost_per_day = max_cost;
    c.slot.providers = std::move(providers);
    c.slot.max_tasks = max_tasks;
    c.link = r.link;
    c.key = key.empty() ? NewUuid() : key;
    c.credentials = {{"ANTHROPIC_API_KEY", "secret-" + account}};
    pb::Hello hello;
    for (const auto& w : resume) *hello.add_resume() = w;
    status_ = dispatcher_.Connect(std::move(c), hello);
    if (status_.ok()) r.link->WaitFor([](const pb::BrokerMessage& m) { return m.has_welcome(); }, &r.seen);
    return r;
  }

  TaskRecord Create(const std::string& provider = "command", const std::string& key = "",
                    const std::string& created_by = "") {
    pb::Task spec;
    spec.set_workspace_id(ws_);
    spec.set_provider(provider);
    if (provider == "command") spec.set_command("true");
    else spec.set_prompt("do it");
    spec.set_max_attempts(3);
    spec.set_concurrency_key(key);
    std::promise<absl::StatusOr<TaskRecord>> done;
    dispatcher_.CreateTask(TaskRecord::FromSpec(NewUuid(), spec, created_by),
                           [&done](absl::StatusOr<TaskRecord> t) { done.set_value(std::move(t)); });
    absl::StatusOr<TaskRecord> t = done.get_future().get();
    EXPECT_THAT(t.status(), IsOk());
    return t.value_or(TaskRecord());
  }

  void Send(const Runner& r, pb::RunnerMessage m) { dispatcher_.OnMessage(r.id, m); }
  void Event(const Runner& r, const pb::Assign& a, int64_t seq, const std::string& type,
             const std::string& status = "", int64_t epoch = 0) {
    pb::RunnerMessage m;
    pb::RunnerEvent* e = m.mutable_event();
    e->set_worker_id(a.worker().id());
    e->set_epoch(epoch != 0 ? epoch : a.epoch());
    e->set_seq(seq);
    e->mutable_event()->set_type(type);
    e->mutable_event()->set_status(status);
    e->mutable_event()->set_text("line " + std::to_string(seq));
    Send(r, m);
  }
  void Finish(const Runner& r, const pb::Assign& a, int64_t last_seq, double cost = 0,
              pb::Finished::Outcome outcome = pb::Finished::completed) {
    pb::RunnerMessage m;
    pb::Finished* f = m.mutable_finished();
    f->set_worker_id(a.worker().id());
    f->set_epoch(a.epoch());
    f->set_outcome(outcome);
    f->set_last_seq(last_seq);
    if (cost > 0) f->mutable_artifacts()->set_cost_usd(cost);
    Send(r, m);
  }

  // The first published event of `type` for `task_id` (after `from`).
  pb::Event WaitForEvent(const std::string& type, const std::string& task_id) {
    std::unique_lock<std::mutex> lock(mu_);
    const pb::Event* found = nullptr;
    cv_.wait_for(lock, kWait, [&] {
      for (const auto& e : events_) {
        if (e.type() == type && e.task_id() == task_id) {
          found = &e;
          return true;
        }
      }
      return false;
    });
    if (found == nullptr) {
      ADD_FAILURE() << "no " << type << " event for task " << task_id;
      return pb::Event();
    }
    return *found;
  }
  int CountEvents(const std::string& type, const std::string& task_id) {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(std::count_if(events_.begin(), events_.end(), [&](const pb::Event& e) {
      return e.type() == type && e.task_id() == task_id;
    }));
  }
  std::string StateOf(const std::string& task_id) { return store_.GetTask(task_id)->state; }
  // Waits until the stored task is in `state`.
  bool WaitForState(const std::string& task_id, const std::string& state) {
    const auto deadline = Clock::now() + kWait;
    while (Clock::now() < deadline) {
      if (StateOf(task_id) == state) return true;
      // The journal's next commit is the only thing that can change it.
      journal_.Run([](JournalTx&) { return absl::OkStatus(); }).IgnoreError();
    }
    return StateOf(task_id) == state;
  }
  // Every operation queued so far has run.
  void Drain() { ASSERT_THAT(journal_.Run([](JournalTx&) { return absl::OkStatus(); }), IsOk()); }

  MemoryBrokerStore store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<pb::Event> events_;
  Journal journal_;
  boost::asio::io_context timers_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread timer_thread_;
  boost::asio::thread_pool pool_{2};
  Dispatcher dispatcher_;
  std::string ws_;
  absl::Status status_;
};

TEST_F(DispatcherTest, ATaskCreatedWhileARunnerIsFreeIsPushedInTheSameTransaction) {
  Runner r = Connect("acc-1");
  const TaskRecord t = Create();
  EXPECT_EQ(t.state, "assigned");
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  EXPECT_EQ(a.task().id(), t.id);
  EXPECT_EQ(a.task().command(), "true");
  EXPECT_EQ(a.epoch(), 1);
  EXPECT_EQ(a.workspace().id(), ws_);
  EXPECT_EQ(a.task().work_branch(), TaskRecord::DefaultWorkBranch(t.id));
  EXPECT_EQ(StateOf(t.id), "assigned");
  EXPECT_EQ(store_.GetWorker(a.worker().id())->runner_id, r.id);
  const pb::Event created = WaitForEvent("created", t.id), assigned = WaitForEvent("assigned", t.id);
  EXPECT_EQ(assigned.id(), created.id() + 1) << "one commit, consecutive ids";
  EXPECT_EQ(dispatcher_.workers().CountLoads().by_runner[r.id], 1);
}

TEST_F(DispatcherTest, APendingTaskIsClaimedByTheNextRunnerThatConnects) {
  const TaskRecord t = Create();
  EXPECT_EQ(t.state, "pending");
  EXPECT_EQ(dispatcher_.pending_hint(), 1);
  Runner r = Connect("acc-1");
  EXPECT_EQ(r.link->WaitForAssign(&r.seen).task().id(), t.id);
  EXPECT_TRUE(WaitForState(t.id, "assigned"));
  Drain();  // the count changes after the commit
  EXPECT_EQ(dispatcher_.pending_hint(), 0);
}

TEST_F(DispatcherTest, AFullRunnerTakesTheNextTaskWhenItsSlotFrees) {
  Runner r = Connect("acc-1", /*max_tasks=*/1);
  const TaskRecord first = Create(), second = Create();
  EXPECT_EQ(second.state, "pending");
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  ASSERT_EQ(a.task().id(), first.id);
  Event(r, a, 1, "started");
  r.link->WaitForAck(a.worker().id(), 1);
  EXPECT_EQ(StateOf(first.id), "running");
  Finish(r, a, 1);
  EXPECT_EQ(r.link->WaitForAck(a.worker().id(), 2), 2) << "a Finished is acked after its last seq";
  EXPECT_EQ(r.link->WaitForAssign(&r.seen).task().id(), second.id);
  EXPECT_EQ(StateOf(first.id), "completed");
  EXPECT_EQ(WaitForEvent("completed", first.id).status(), "completed");
}

TEST_F(DispatcherTest, EventsAreRecordedOnceAndOnlyFromTheWorkersHolder) {
  Runner r = Connect("acc-1"), other = Connect("acc-2");
  const TaskRecord t = Create();
  Runner* holder = &r;
  pb::Assign a;
  for (Runner* candidate : {&r, &other}) {
    if (candidate->link->Count(&pb::BrokerMessage::has_assign) > 0) {
      holder = candidate;
      a = candidate->link->WaitForAssign(&candidate->seen);
    }
  }
  ASSERT_EQ(a.task().id(), t.id);
  Runner& intruder = holder == &r ? other : r;
  Event(*holder, a, 1, "output");
  Event(*holder, a, 1, "output");  // replayed after a reconnect
  Event(*holder, a, 2, "output", "", /*epoch=*/a.epoch() + 1);  // a fenced-off attempt
  Event(intruder, a, 3, "output");  // not its worker
  Event(*holder, a, 2, "completed");  // the broker's own type
  Event(*holder, a, 3, "output");
  EXPECT_EQ(holder->link->WaitForAck(a.worker().id(), 3), 3);
  Drain();
  EXPECT_EQ(CountEvents("output", t.id), 2);
  EXPECT_EQ(CountEvents("completed", t.id), 0);
  EXPECT_EQ(store_.GetWorker(a.worker().id())->last_seq, 3);
  EXPECT_EQ(intruder.link->Count(&pb::BrokerMessage::has_ack), 1) << "acked, so it stops resending";
}

TEST_F(DispatcherTest, ARejectedTaskGoesToAnotherRunnerWithoutSpendingAnAttempt) {
  Runner r = Connect("acc-1");
  const TaskRecord t = Create();
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  Runner other = Connect("acc-2");
  pb::RunnerMessage reject;
  reject.mutable_reject()->set_worker_id(a.worker().id());
  reject.mutable_reject()->set_epoch(a.epoch());
  reject.mutable_reject()->set_reason("disk full");
  Send(r, reject);
  const pb::Assign again = other.link->WaitForAssign(&other.seen);
  EXPECT_EQ(again.task().id(), t.id);
  EXPECT_EQ(again.epoch(), 2);
  EXPECT_EQ(again.task().attempts(), 1) << "the refused attempt does not count";
  EXPECT_THAT(WaitForEvent("rejected", t.id).text(), HasSubstr("disk full"));
}

TEST_F(DispatcherTest, ARunnerThatNeverAcceptsLosesTheTaskToAnother) {
  Runner r = Connect("acc-1");
  const TaskRecord t = Create();
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  Runner other = Connect("acc-2");
  r.link->WaitFor([&](const pb::BrokerMessage& m) {
    return m.has_control() && m.control().action() == pb::Control::cancel &&
           m.control().worker_id() == a.worker().id();
  });
  EXPECT_EQ(other.link->WaitForAssign(&other.seen).task().id(), t.id);
  EXPECT_THAT(WaitForEvent("requeued", t.id).text(), HasSubstr("did not accept"));
}

TEST_F(DispatcherTest, ALostRunnersWorkIsRequeuedAfterTheLeaseGraceAndItsLateReportsIgnored) {
  Runner r = Connect("acc-1");
  const TaskRecord t = Create();
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  pb::RunnerMessage accept;
  accept.mutable_accept()->set_worker_id(a.worker().id());
  accept.mutable_accept()->set_epoch(a.epoch());
  Send(r, accept);
  Event(r, a, 1, "started");
  r.link->WaitForAck(a.worker().id(), 1);
  dispatcher_.Disconnect(r.id);
  EXPECT_EQ(WaitForEvent("requeued", t.id).status(), "pending");
  EXPECT_EQ(store_.GetWorker(a.worker().id())->state, "error");
  Runner next = Connect("acc-2");
  const pb::Assign second = next.link->WaitForAssign(&next.seen);
  EXPECT_EQ(second.task().id(), t.id);
  EXPECT_EQ(second.epoch(), 2);
  // The first attempt's Finished arrives late, on its old stream's id.
  Finish(r, a, 1);
  Drain();
  EXPECT_EQ(StateOf(t.id), "assigned");
  EXPECT_EQ(CountEvents("completed", t.id), 0);
}

TEST_F(DispatcherTest, ARunnerThatComesBackInTimeKeepsItsWorkButOnlyForItsAccount) {
  Runner r = Connect("acc-1");
  const TaskRecord t = Create();
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  Event(r, a, 1, "started");
  r.link->WaitForAck(a.worker().id(), 1);
  dispatcher_.Disconnect(r.id);
  pb::ResumeWorker resume;
  resume.set_worker_id(a.worker().id());
  resume.set_epoch(a.epoch());
  // Another account's runner claims the worker: it is stale for it.
  Runner thief = Connect("acc-2", 1, {"command"}, {resume});
  EXPECT_EQ(thief.link->WaitFor([](const pb::BrokerMessage& m) { return m.has_welcome(); })
                .welcome()
                .stale_workers_size(),
            1);
  Runner back = Connect("acc-1", 1, {"command"}, {resume});
  EXPECT_EQ(back.link->WaitFor([](const pb::BrokerMessage& m) { return m.has_welcome(); })
                .welcome()
                .stale_workers_size(),
            0);
  Event(back, a, 2, "output");
  back.link->WaitForAck(a.worker().id(), 2);
  Finish(back, a, 2);
  back.link->WaitForAck(a.worker().id(), 3);
  EXPECT_EQ(StateOf(t.id), "completed");
  EXPECT_EQ(CountEvents("requeued", t.id), 0);
}

TEST_F(DispatcherTest, AnEventThatCannotBeStoredBecomesAnErrorEventAndIsAcked) {
  Runner r = Connect("acc-1");
  const TaskRecord t = Create();
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  Drain();
  store_.FailWrites(absl::InvalidArgumentError("value too long"), 1);
  Event(r, a, 1, "output");
  EXPECT_EQ(r.link->WaitForAck(a.worker().id(), 1), 1);
  EXPECT_THAT(WaitForEvent("error", t.id).text(), HasSubstr("could not be stored"));
  EXPECT_EQ(CountEvents("output", t.id), 0);
}

TEST_F(DispatcherTest, AStoreThatIsAwayClosesTheStreamSoTheRunnerReplays) {
  Runner r = Connect("acc-1");
  Create();
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  Drain();
  store_.FailWrites(absl::UnavailableError("database unavailable"), 1);
  Event(r, a, 1, "output");
  EXPECT_EQ(r.link->WaitClosed().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.link->Count(&pb::BrokerMessage::has_ack), 0);
}

TEST_F(DispatcherTest, TasksWithOneConcurrencyKeyRunOneAtATime) {
  Runner r = Connect("acc-1", /*max_tasks=*/4);
  const TaskRecord first = Create("command", "deploy"), second = Create("command", "deploy");
  const TaskRecord other = Create("command", "docs");
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  EXPECT_EQ(a.task().id(), first.id);
  EXPECT_EQ(r.link->WaitForAssign(&r.seen).task().id(), other.id);
  EXPECT_EQ(second.state, "pending");
  EXPECT_THAT(WaitForEvent("created", second.id).text(), HasSubstr("waits for the unfinished task"));
  Finish(r, a, 0);
  EXPECT_EQ(r.link->WaitForAssign(&r.seen).task().id(), second.id);
}

TEST_F(DispatcherTest, ControlsFollowTheWorkersState) {
  Runner r = Connect("acc-1");
  Create();
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  const std::string w = a.worker().id();
  EXPECT_EQ(dispatcher_.Control(w, pb::Control::pause, "").code(), absl::StatusCode::kFailedPrecondition);
  Event(r, a, 1, "started");
  r.link->WaitForAck(w, 1);
  EXPECT_EQ(dispatcher_.Control(w, pb::Control::input, "hi").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dispatcher_.Control(w, pb::Control::pause, ""), IsOk());
  EXPECT_EQ(r.link->WaitFor([](const pb::BrokerMessage& m) { return m.has_control(); }).control().action(),
            pb::Control::pause);
  Event(r, a, 2, "status", "waiting_input");
  r.link->WaitForAck(w, 2);
  EXPECT_THAT(dispatcher_.Control(w, pb::Control::input, "yes"), IsOk());
  EXPECT_EQ(StateOf(a.task().id()), "waiting_input");
  EXPECT_EQ(dispatcher_.Control(NewUuid(), pb::Control::cancel, "").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DispatcherTest, CancelingEndsAPendingTaskAtOnceAndAsksTheRunnerOfARunningOne) {
  const TaskRecord pending = Create();
  absl::StatusOr<TaskRecord> canceled = dispatcher_.CancelTask(pending.id);
  ASSERT_THAT(canceled.status(), IsOk());
  EXPECT_EQ(canceled->state, "canceled");
  EXPECT_EQ(dispatcher_.CancelTask(pending.id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(dispatcher_.pending_hint(), 0);

  Runner r = Connect("acc-1");
  const TaskRecord running = Create();
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  ASSERT_THAT(dispatcher_.CancelTask(running.id).status(), IsOk());
  EXPECT_EQ(r.link->WaitFor([](const pb::BrokerMessage& m) { return m.has_control(); }).control().action(),
            pb::Control::cancel);
  Finish(r, a, 0, 0, pb::Finished::canceled);
  EXPECT_TRUE(WaitForState(running.id, "canceled"));
  EXPECT_EQ(dispatcher_.CancelTask(NewUuid()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DispatcherTest, ProviderCredentialsGoOnlyToTheAccountsOwnTasks) {
  Runner r = Connect("acc-1", 2);
  Create("command", "", "acc-1");
  Create("command", "", "acc-other");
  const pb::Assign own = r.link->WaitForAssign(&r.seen), foreign = r.link->WaitForAssign(&r.seen);
  const pb::Assign& mine = own.task().created_by() == "acc-1" ? own : foreign;
  const pb::Assign& theirs = own.task().created_by() == "acc-1" ? foreign : own;
  EXPECT_EQ(mine.credentials().env().at("ANTHROPIC_API_KEY"), "secret-acc-1");
  EXPECT_TRUE(theirs.credentials().env().empty());
}

TEST_F(DispatcherTest, AKeyHoldsABoundedNumberOfStreams) {
  Connect("acc-1", 1, {"command"}, {}, 0, "the-key");
  Connect("acc-1", 1, {"command"}, {}, 0, "the-key");
  ASSERT_THAT(status_, IsOk());
  Connect("acc-1", 1, {"command"}, {}, 0, "the-key");
  EXPECT_EQ(status_.code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(DispatcherTest, AnAccountAtItsDailyBudgetTakesOnlyCommandsUntilItsLimitIsRaised) {
  Runner r = Connect("acc-1", 2, {"command", "claude"}, {}, /*max_cost=*/1.0);
  const TaskRecord first = Create("claude");
  const pb::Assign a = r.link->WaitForAssign(&r.seen);
  Finish(r, a, 0, /*cost=*/1.5);
  EXPECT_THAT(WaitForEvent("budget", first.id).text(), HasSubstr("acc-1 spent $1.5000 of its $1.0000"));
  EXPECT_DOUBLE_EQ(*store_.CostToday("acc-1"), 1.5);
  const TaskRecord agent = Create("claude"), command = Create("command");
  EXPECT_EQ(agent.state, "pending");
  EXPECT_EQ(command.state, "assigned");
  EXPECT_EQ(r.link->WaitForAssign(&r.seen).task().id(), command.id);

  // The account's limit goes up: its connected runner sees it at once.
  dispatcher_.RefreshAccount("acc-1", [](const std::string&) -> absl::StatusOr<RunnerAccess> {
    RunnerAccess access;
    access.claim_all = true;
    access.account_max_cost_per_day = 10;
    return access;
  });
  EXPECT_EQ(r.link->WaitForAssign(&r.seen).task().id(), agent.id);
}

TEST_F(DispatcherTest, ALoweredBudgetStopsAgentTasksOfARunnerAlreadyConnected) {
  Runner r = Connect("acc-1", 2, {"command", "claude"});
  const TaskRecord first = Create("claude");
  Finish(r, r.link->WaitForAssign(&r.seen), 0, /*cost=*/0.5);
  EXPECT_TRUE(WaitForState(first.id, "completed"));
  dispatcher_.RefreshAccount("acc-1", [](const std::string&) -> absl::StatusOr<RunnerAccess> {
    RunnerAccess access;
    access.claim_all = true;
    access.account_max_cost_per_day = 0.25;
    return access;
  });
  EXPECT_EQ(Create("claude").state, "pending") << "it spent 0.5 today, over the new 0.25";
  EXPECT_EQ(Create("command").state, "assigned");
}

TEST_F(DispatcherTest, ARunnerConnectingWithoutALimitIsNotHeldToAnEarlierOne) {
  Runner r = Connect("acc-1", 1, {"command", "claude"}, {}, /*max_cost=*/1.0);
  const TaskRecord first = Create("claude");
  Finish(r, r.link->WaitForAssign(&r.seen), 0, /*cost=*/1.5);
  WaitForEvent("budget", first.id);
  EXPECT_EQ(Create("claude").state, "pending") << "spent for today";
  dispatcher_.Disconnect(r.id);
  // The account's limit was lifted while none of its runners was here.
  Runner next = Connect("acc-1", 1, {"command", "claude"}, {}, /*max_cost=*/0);
  EXPECT_TRUE(next.link->WaitForAssign(&next.seen).has_task()) << "the pending agent task goes";
}

TEST_F(DispatcherTest, ARefreshThatFindsTheKeyRevokedClosesTheRunnersStream) {
  Runner r = Connect("acc-1");
  dispatcher_.RefreshAccount("", [](const std::string&) -> absl::StatusOr<RunnerAccess> {
    return absl::UnauthenticatedError("key revoked");
  });
  EXPECT_EQ(r.link->WaitClosed().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace buildd::broker
