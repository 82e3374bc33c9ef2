#include "services/broker/dispatcher.h"

#include <algorithm>

#include <google/protobuf/util/json_util.h>

#include <boost/asio/post.hpp>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status.h"
#include "services/broker/conversions.h"
#include "services/broker/placement.h"
#include "services/broker/runner_reports.h"
#include "services/broker/task_states.h"

namespace buildd::broker {
namespace {

DispatcherOptions WithBrokerId(DispatcherOptions options) {
  if (options.broker_id.empty()) options.broker_id = NewUuid();
  return options;
}

}  // namespace

Dispatcher::Dispatcher(Journal& journal, BrokerStore& store, boost::asio::io_context& timers,
                       boost::asio::thread_pool& pool, DispatcherOptions options)
    : journal_(journal),
      store_(store),
      pool_(pool),
      options_(WithBrokerId(std::move(options))),
      budget_(timers, [this] { ClaimForAll(); }),
      leases_(timers,
              Leases::Durations{options.lease_grace_ms, options.accept_timeout_ms,
                                options.heartbeat_interval_ms},
              Leases::Callbacks{
                  [this](const std::vector<std::string>& ids) { ExpireWorkers(ids); },
                  [this](const std::string& runner_id, const std::string& worker_id,
                         int64_t epoch) { AcceptDue(runner_id, worker_id, epoch); },
                  [this] {
                    CloseSilentRunners();
                    AdoptOrphans();
                  }}),
      recorder_(journal, store, pool, registry_, workers_, budget_,
                [this](const std::string& runner_id, const LiveWorker& w) { Ended(runner_id, w); }) {}

Dispatcher::~Dispatcher() = default;

absl::Status Dispatcher::Start() {
  absl::StatusOr<int64_t> pending = store_.CountPending();
  if (!pending.ok()) return pending.status();
  pending_ = *pending;
  AdoptOrphans();
  leases_.StartHeartbeats();
  budget_.Start();
  return absl::OkStatus();
}

void Dispatcher::Stop() {
  leases_.Stop();
  budget_.Stop();
  const absl::Status left = journal_.Run([this](JournalTx& tx) -> absl::Status {
    tx.store().LeaveBrokers(options_.broker_id);
    return absl::OkStatus();
  });
  if (!left.ok()) Log()->warn("could not sign this replica off: {}", left.message());
}

void Dispatcher::AdoptOrphans() {
  // Another replica is gone once it missed as many heartbeats as a runner may.
  const int64_t dead_after = int64_t{options_.heartbeat_interval_ms} * options_.missed_heartbeats;
  journal_.Submit([this, dead_after](JournalTx& tx) -> absl::Status {
    tx.store().BeatBroker(options_.broker_id, RunnersJson(LocalRunners()));
    std::vector<LiveWorker> adopted = tx.store().AdoptOrphans(options_.broker_id, dead_after);
    if (adopted.empty()) return absl::OkStatus();
    tx.OnCommit([this, adopted = std::move(adopted)]() mutable {
      std::vector<std::string> ids;
      for (LiveWorker& w : adopted) {
        // Its runner, if it comes back, reconnects to a replica that knows
        // it only as away.
        w.runner_id.clear();
        ids.push_back(w.worker_id);
        workers_.Put(std::move(w));
      }
      Log()->info("{} workers of a broker that is gone wait {} ms for their runners", ids.size(),
                  options_.lease_grace_ms);
      leases_.Grace(std::move(ids));
    });
    return absl::OkStatus();
  });
}

void Dispatcher::PublishRunners() {
  if (publish_queued_.exchange(true)) return;
  journal_.Submit([this](JournalTx& tx) -> absl::Status {
    // Read when written: the runners that came while it waited count too.
    publish_queued_ = false;
    tx.store().BeatBroker(options_.broker_id, RunnersJson(LocalRunners()));
    return absl::OkStatus();
  });
}

pb::ListRunnersResponse Dispatcher::LocalRunners() const {
  pb::ListRunnersResponse out;
  // Counted from the live workers, not kept beside the runner.
  const WorkerTable::Loads loads = workers_.CountLoads();
  for (const auto& [slot, details] : registry_.List()) {
    pb::RunnerInfo* r = out.add_runners();
    r->set_id(slot.runner_id);
    r->set_name(slot.name);
    r->set_account_id(slot.account_id);
    for (const std::string& label : slot.labels) r->add_labels(label);
    for (const auto& c : details.capabilities) *r->add_capabilities() = c;
    r->set_version(details.version);
    r->set_max_tasks(slot.max_tasks);
    auto it = loads.by_runner.find(slot.runner_id);
    r->set_active_workers(it == loads.by_runner.end() ? 0 : it->second);
    r->set_draining(slot.draining);
    r->set_connected_at(details.connected_at);
    r->set_load(details.load);
  }
  return out;
}

absl::StatusOr<std::vector<pb::RunnerInfo>> Dispatcher::AllRunners() {
  pb::ListRunnersResponse local = LocalRunners();
  std::vector<pb::RunnerInfo> all(local.runners().begin(), local.runners().end());
  // A replica is gone once it missed as many heartbeats as a runner may.
  BUILDD_ASSIGN_OR_RETURN(
      std::vector<pb::RunnerInfo> others,
      store_.OtherReplicasRunners(options_.broker_id,
                                  int64_t{options_.heartbeat_interval_ms} * options_.missed_heartbeats));
  std::set<std::string> seen;
  for (const pb::RunnerInfo& r : all) seen.insert(r.id());
  for (pb::RunnerInfo& r : others) {
    if (seen.insert(r.id()).second) all.push_back(std::move(r));
  }
  std::sort(all.begin(), all.end(), [](const pb::RunnerInfo& a, const pb::RunnerInfo& b) {
    return a.connected_at() != b.connected_at() ? a.connected_at() < b.connected_at() : a.id() < b.id();
  });
  return all;
}

void Dispatcher::OnCommittedElsewhere(const std::vector<pb::Event>& events) {
  for (const pb::Event& e : events) {
    if (!QueuesOrEndsATask(e.type())) continue;
    // This replica's count of pending tasks does not see the others';
    // claiming finds out.
    for (const RunnerSlot& runner : registry_.Slots()) {
      if (FreeSlotsOf(runner) > 0) Claim(runner.runner_id);
    }
    return;
  }
}

void Dispatcher::Send(const std::string& runner_id, pb::BrokerMessage message) {
  if (auto link = registry_.Link(runner_id)) link->Send(std::move(message));
}

absl::StatusOr<WorkspaceRecord> Dispatcher::Workspace(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = workspaces_.find(id);
    if (it != workspaces_.end()) return it->second;
  }
  absl::StatusOr<WorkspaceRecord> ws = store_.GetWorkspace(id);
  if (!ws.ok()) return ws.status();
  absl::MutexLock lock(&mu_);
  workspaces_[id] = *ws;
  return *ws;
}

void Dispatcher::CountPending(JournalTx& tx, int64_t delta) {
  if (delta != 0) tx.OnCommit([this, delta] { pending_ += delta; });
}

int Dispatcher::FreeSlotsOf(const RunnerSlot& runner) {
  const auto [active, account_active] = workers_.LoadOf(runner.runner_id, runner.account_id);
  return FreeSlots(Candidate{&runner, active, account_active, budget_.Spent(runner.account_id)});
}

std::optional<RunnerSlot> Dispatcher::Place(const TaskRoute& route) {
  const WorkerTable::Loads loads = workers_.CountLoads();
  return registry_.Choose([&](const std::vector<const RunnerSlot*>& slots) {
    std::vector<Candidate> candidates;
    candidates.reserve(slots.size());
    for (const RunnerSlot* s : slots) {
      auto r = loads.by_runner.find(s->runner_id);
      auto a = loads.by_account.find(s->account_id);
      candidates.push_back(Candidate{s, r == loads.by_runner.end() ? 0 : r->second,
                                     a == loads.by_account.end() ? 0 : a->second,
                                     budget_.Spent(s->account_id)});
    }
    return PickRunner(route, candidates, turn_++);
  });
}

WorkerRecord Dispatcher::AssignInTx(JournalTx& tx, TaskRecord& task, const RunnerSlot& runner,
                                    bool stored, bool hold) {
  WorkerRecord worker;
  worker.id = NewUuid();
  worker.task_id = task.id;
  worker.workspace_id = task.workspace_id;
  worker.account_id = runner.account_id;
  worker.runner_id = runner.runner_id;
  worker.runner_name = runner.name;
  worker.broker_id = options_.broker_id;
  worker.state = "idle";
  worker.epoch = task.epoch + 1;

  task.epoch = worker.epoch;
  task.attempts += 1;
  task.state = TaskStateFor(worker.state);
  task.worker_id = worker.id;
  if (stored) {
    tx.store().UpdateTask(task);
  } else {
    tx.writes().InsertTask(task);
  }
  tx.writes().InsertWorker(worker);

  pb::Event e = EventOf("assigned", task.id, worker.id, task.workspace_id);
  e.set_runner_name(runner.name);
  e.set_status(worker.state);
  tx.Append(std::move(e));

  workers_.Put(LiveWorker{worker.id, runner.runner_id, runner.account_id, worker.epoch, task.id,
                          task.workspace_id, 0, worker.state, task.concurrency_key});
  tx.OnAbort([this, worker_id = worker.id] { workers_.Erase(worker_id); });

  worker.created_at = worker.updated_at = NowRfc3339();
  task.updated_at = worker.updated_at;
  const bool shares = task.created_by == runner.account_id ||
                      runner.access.share_workspaces.count(task.workspace_id) > 0;
  const absl::StatusOr<WorkspaceRecord> ws = Workspace(task.workspace_id);
  // The task's own credentials over those its runner's account gives it.
  absl::StatusOr<CredentialMap> own = store_.OpenTaskCredentials(task);
  if (!own.ok()) Log()->warn("task={} its credentials do not open: {}", task.id, own.status().message());
  pb::BrokerMessage message = AssignOf(
      task, worker,
      AssignCredentials(shares ? registry_.Credentials(runner.runner_id) : CredentialMap{},
                        own.ok() ? *own : CredentialMap{}),
      ws.ok() ? &*ws : nullptr);
  SessionSource session{task.spec->resume_from(),
                        task.spec->plan_first() && task.attempts > 1 ? task.id : ""};
  if (hold) {
    tx.OnCommit([this, runner_id = runner.runner_id, worker_id = worker.id, epoch = worker.epoch,
                 session, message = std::move(message)]() mutable {
      absl::MutexLock lock(&mu_);
      held_[worker_id] = HeldAssign{runner_id, epoch, std::move(session), std::move(message)};
    });
  } else {
    tx.OnCommit([this, runner_id = runner.runner_id, worker_id = worker.id, epoch = worker.epoch,
                 session, message = std::move(message)]() mutable {
      SendAssign(runner_id, worker_id, epoch, std::move(session), std::move(message));
    });
  }
  Log()->debug("assign task={} worker={} runner={}", task.id, worker.id, runner.name);
  return worker;
}

void Dispatcher::SendAssign(const std::string& runner_id, const std::string& worker_id,
                            int64_t epoch, SessionSource source, pb::BrokerMessage message) {
  leases_.AcceptBy(runner_id, worker_id, epoch);
  if (source.resume_from.empty() && source.checkpoint_of.empty()) {
    return Send(runner_id, std::move(message));
  }
  // A session transcript can be megabytes: read it off the journal's
  // thread. One gone since the task was created (or unreadable) leaves the
  // runner to start a new session, or to plan again.
  boost::asio::post(pool_, [this, runner_id, source, message = std::move(message)]() mutable {
    auto read = [this](const std::string& task_id) -> std::optional<AgentSession> {
      auto session = store_.GetSession(task_id, /*with_data=*/true);
      if (session.ok()) return *std::move(session);
      Log()->warn("task={} cannot read its stored session: {}", task_id, session.status().message());
      return std::nullopt;
    };
    auto fill = [](AgentSession& from, pb::SessionSnapshot* s) {
      s->set_task_id(from.task_id);
      s->set_provider(from.provider);
      s->set_session_id(from.session_id);
      s->set_data(std::move(from.data));
    };
    pb::Assign& assign = *message.mutable_assign();
    std::optional<AgentSession> checkpoint;
    if (!source.checkpoint_of.empty()) checkpoint = read(source.checkpoint_of);
    if (checkpoint.has_value() && !checkpoint->continue_prompt.empty()) {
      fill(*checkpoint, assign.mutable_checkpoint()->mutable_session());
      assign.mutable_checkpoint()->set_prompt(checkpoint->continue_prompt);
      assign.mutable_checkpoint()->set_plan(checkpoint->plan);
      Log()->info("task={} codes on from its approved plan (checkpoint of an earlier attempt)",
                  source.checkpoint_of);
    } else if (!source.resume_from.empty()) {
      if (std::optional<AgentSession> session = read(source.resume_from)) {
        fill(*session, assign.mutable_resume_session());
      }
    }
    Send(runner_id, std::move(message));
  });
}

void Dispatcher::AssignByHand(const std::string& task_id, const std::string& runner,
                              std::function<void(absl::StatusOr<WorkerRecord>)> done) {
  std::optional<RunnerSlot> slot = registry_.Slot(runner);
  if (!slot) {
    for (const RunnerSlot& s : registry_.Slots()) {
      if (s.name != runner) continue;
      if (slot) {
        return done(absl::FailedPreconditionError(absl::StrCat(
            "runnerId: more than one runner is named ", runner, ": give its id")));
      }
      slot = s;
    }
  }
  if (!slot) {
    return done(absl::NotFoundError(
        absl::StrCat("runnerId: runner ", runner, " is not connected to this broker")));
  }
  auto assigned = std::make_shared<WorkerRecord>();
  journal_.Submit(
      [this, task_id, slot = *slot, assigned](JournalTx& tx) -> absl::Status {
        std::optional<TaskRecord> task = tx.store().LockTask(task_id);
        if (!task) return absl::NotFoundError(absl::StrCat("task ", task_id, " not found"));
        if (task->state != "pending") {
          return absl::FailedPreconditionError(
              absl::StrCat("task ", task_id, " is ", task->state, ": only a pending task is assigned"));
        }
        // The person's choice stands in for the task's runnerPreference
        // and labels; grants, providers, room and the budget still hold.
        TaskRoute route = task->Route();
        route.runner_preference = "any";
        route.required_labels.clear();
        if (!Eligible(slot, budget_.Spent(slot.account_id), route)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "runner ", slot.name, " may not take task ", task_id,
              ": its account may not claim from the workspace, or it does not run ",
              task->provider, " (or not today: its account spent its daily budget)"));
        }
        if (FreeSlotsOf(slot) <= 0) {
          return absl::ResourceExhaustedError(
              absl::StrCat("runner ", slot.name, " has no free slot (or its account is at its limit)"));
        }
        if (!task->KeyIsOwn() &&
            tx.store().KeyIsBusy(task->workspace_id, task->concurrency_key, task->id)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "task ", task_id, " waits for the unfinished task with concurrency key ",
              task->concurrency_key));
        }
        *assigned = AssignInTx(tx, *task, slot, /*stored=*/true, /*hold=*/true);
        CountPending(tx, -1);
        return absl::OkStatus();
      },
      [assigned, done = std::move(done)](absl::Status status) {
        if (!status.ok()) return done(status);
        done(std::move(*assigned));
      });
}

bool Dispatcher::CancelHeld(const std::string& worker_id) {
  HeldAssign held;
  {
    absl::MutexLock lock(&mu_);
    auto it = held_.find(worker_id);
    if (it == held_.end()) return false;
    held = std::move(it->second);
    held_.erase(it);
  }
  journal_.Submit([this, worker_id, held = std::move(held)](JournalTx& tx) -> absl::Status {
    const std::optional<LiveWorker> a = workers_.HeldBy(held.runner_id, worker_id, held.epoch);
    if (!a) return absl::OkStatus();
    std::optional<WorkerRecord> worker = tx.store().LockWorker(worker_id);
    std::optional<TaskRecord> task = tx.store().LockTask(a->task_id);
    if (!worker || !task || task->epoch != a->epoch) return absl::OkStatus();
    worker->state = "canceled";
    task->state = TaskStateFor(worker->state);
    tx.store().UpdateWorker(*worker);
    tx.store().UpdateTask(*task);
    pb::Event e = EventOf("canceled", task->id, worker_id, task->workspace_id);
    e.set_status("canceled");
    e.set_text("canceled before it started");
    tx.Append(std::move(e));
    tx.OnCommit([this, runner_id = held.runner_id, w = *a] { Ended(runner_id, w); });
    return absl::OkStatus();
  });
  return true;
}

absl::Status Dispatcher::StartWorker(const std::string& worker_id) {
  HeldAssign held;
  {
    absl::MutexLock lock(&mu_);
    auto it = held_.find(worker_id);
    if (it == held_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", worker_id, " is not an idle worker of this broker waiting to start"));
    }
    held = std::move(it->second);
    held_.erase(it);
  }
  const std::optional<LiveWorker> w = workers_.HeldBy(held.runner_id, worker_id, held.epoch);
  if (!w || w->state != "idle") {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, " lost its runner before it started"));
  }
  SendAssign(held.runner_id, worker_id, held.epoch, std::move(held.session), std::move(held.message));
  return absl::OkStatus();
}

void Dispatcher::CreateTask(TaskRecord task, std::function<void(absl::StatusOr<TaskRecord>)> done,
                            std::string delivery_id, std::vector<pb::Event> also) {
  // Read before the transaction: the writer only writes.
  if (absl::StatusOr<WorkspaceRecord> ws = Workspace(task.workspace_id); !ws.ok()) {
    return done(absl::IsNotFound(ws.status())
                    ? absl::NotFoundError(absl::StrCat("workspace ", task.workspace_id, " not found"))
                    : ws.status());
  }
  auto result = std::make_shared<TaskRecord>();
  journal_.Submit(
      [this, task = std::move(task), result, delivery_id = std::move(delivery_id),
       also = std::move(also)](JournalTx& tx) mutable -> absl::Status {
        if (!delivery_id.empty() && !tx.store().RecordDelivery(delivery_id)) {
          return absl::AlreadyExistsError("this delivery was seen before");
        }
        // Behind an unfinished task with the same key it waits its turn.
        const bool waits =
            !task.KeyIsOwn() && tx.store().KeyIsBusy(task.workspace_id, task.concurrency_key);
        std::optional<RunnerSlot> runner;
        if (!waits) runner = Place(task.Route());
        pb::Event created = EventOf("created", task.id, "", task.workspace_id);
        created.set_status("pending");
        if (waits) {
          tx.OnCommit([this, ws = task.workspace_id, key = task.concurrency_key] {
            absl::MutexLock lock(&mu_);
            waited_for_.insert({ws, key});
          });
          created.set_text(absl::StrCat("waits for the unfinished task with concurrency key ",
                                        task.concurrency_key));
        }
        tx.Append(std::move(created));
        for (const pb::Event& e : also) tx.Append(pb::Event(e));
        if (runner) {
          AssignInTx(tx, task, *runner, /*stored=*/false);
        } else {
          tx.writes().InsertTask(task);
          CountPending(tx, +1);
        }
        *result = std::move(task);
        return absl::OkStatus();
      },
      [done = std::move(done), result](absl::Status status) {
        if (!status.ok()) return done(status);
        done(std::move(*result));
      });
}

absl::StatusOr<std::vector<Waiting>> Dispatcher::WhyWaiting(
    const std::vector<const TaskRecord*>& pending, const std::string& viewer) {
  std::vector<Waiting> out;
  if (pending.empty()) return out;
  // One view of the runners for every task of the answer.
  const std::vector<RunnerSlot> slots = registry_.Slots();
  const WorkerTable::Loads loads = workers_.CountLoads();
  std::vector<Candidate> candidates;
  candidates.reserve(slots.size());
  for (const RunnerSlot& s : slots) {
    auto r = loads.by_runner.find(s.runner_id);
    auto a = loads.by_account.find(s.account_id);
    candidates.push_back(Candidate{&s, r == loads.by_runner.end() ? 0 : r->second,
                                   a == loads.by_account.end() ? 0 : a->second,
                                   budget_.Spent(s.account_id)});
  }
  for (const TaskRecord* task : pending) {
    std::string holder;
    if (!task->KeyIsOwn()) {
      absl::StatusOr<std::string> found = store_.KeyHolder(*task);
      if (!found.ok()) return found.status();
      holder = *std::move(found);
    }
    out.push_back(buildd::broker::WhyWaiting(*task, holder, candidates, viewer));
  }
  return out;
}

absl::StatusOr<TaskRecord> Dispatcher::CancelTask(const std::string& task_id) {
  TaskRecord result;
  std::string worker_to_cancel;
  absl::Status status = journal_.Run([&](JournalTx& tx) -> absl::Status {
    if (std::optional<TaskRecord> canceled = tx.store().CancelPending(task_id)) {
      pb::Event e = EventOf("canceled", canceled->id, "", canceled->workspace_id);
      e.set_status("canceled");
      tx.Append(std::move(e));
      CountPending(tx, -1);
      // A later task with its key may go now.
      tx.OnCommit([this, t = *canceled] { WakeWaitersFor(t.workspace_id, t.id, t.concurrency_key); });
      result = *std::move(canceled);
      return absl::OkStatus();
    }
    std::optional<TaskRecord> task = tx.store().LockTask(task_id);
    if (!task) return absl::NotFoundError(absl::StrCat("task ", task_id, " not found"));
    if (IsTerminalTaskState(task->state)) {
      return absl::FailedPreconditionError(absl::StrCat("task ", task_id, " is already ", task->state));
    }
    worker_to_cancel = task->worker_id;
    result = *std::move(task);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!worker_to_cancel.empty()) {
    absl::Status control = Control(worker_to_cancel, pb::Control::cancel, "");
    if (!control.ok()) return control;
  }
  return result;
}

namespace {

// Whether a worker in `state` takes `action`.
absl::Status CheckControl(const std::string& worker_id, const std::string& state,
                          pb::Control::Action action) {
  if ((action == pb::Control::pause && state != "running") ||
      (action == pb::Control::resume && state != "paused")) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, " is ", state, ": only a running worker pauses and "
                     "only a paused one resumes"));
  }
  if (action == pb::Control::input && state != "waiting_input") {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker ", worker_id, " is not waiting for input (it is ", state, ")"));
  }
  return absl::OkStatus();
}

// What fits in a notice to the other replicas (PostgreSQL's limit is
// 8000 bytes, the control's JSON and the sender's id included).
constexpr size_t kMaxForwardedControl = 7000;

}  // namespace

absl::Status Dispatcher::Control(const std::string& worker_id, pb::Control::Action action,
                                 const std::string& text) {
  pb::Control control;
  control.set_worker_id(worker_id);
  control.set_action(action);
  control.set_text(text);
  const std::optional<LiveWorker> w = workers_.Get(worker_id);
  if (!w) return ControlElsewhere(std::move(control));
  if (action == pb::Control::cancel && CancelHeld(worker_id)) return absl::OkStatus();
  if (w->runner_id.empty()) {
    return absl::UnavailableError(absl::StrCat("the runner of worker ", worker_id,
                                               " is disconnected; try again"));
  }
  BUILDD_RETURN_IF_ERROR(CheckControl(worker_id, w->state, action));
  control.set_epoch(w->epoch);
  pb::BrokerMessage message;
  *message.mutable_control() = std::move(control);
  Send(w->runner_id, std::move(message));
  return absl::OkStatus();
}

absl::Status Dispatcher::ControlElsewhere(pb::Control control) {
  // Another replica may hold its runner: ask them all.
  absl::StatusOr<WorkerRecord> w = store_.GetWorker(control.worker_id());
  if (!w.ok() || IsTerminalWorkerState(w->state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", control.worker_id(), " is not active"));
  }
  BUILDD_RETURN_IF_ERROR(CheckControl(control.worker_id(), w->state, control.action()));
  control.set_epoch(w->epoch);
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(control, &json).ok() ||
      json.size() > kMaxForwardedControl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "text: at most ", kMaxForwardedControl,
        " bytes for a worker whose runner is connected to another broker replica"));
  }
  return store_.NotifyControl(json);
}

void Dispatcher::OnControlElsewhere(const pb::Control& control) {
  const std::optional<LiveWorker> w = workers_.Get(control.worker_id());
  if (!w || w->runner_id.empty() || w->epoch != control.epoch()) return;
  pb::BrokerMessage message;
  *message.mutable_control() = control;
  Send(w->runner_id, std::move(message));
}

absl::Status Dispatcher::Connect(ConnectedRunner runner, const pb::Hello& hello) {
  const RunnerSlot slot = runner.slot;
  const std::shared_ptr<RunnerLink> link = runner.link;
  // Its account may have spent its budget today already, or have no limit
  // any more (read before the runner can take anything).
  const double limit = slot.access.account_max_cost_per_day;
  absl::StatusOr<double> spent = limit > 0 ? store_.CostToday(slot.account_id) : 0.0;
  if (!spent.ok()) return spent.status();
  budget_.SetSpent(slot.account_id, Budget::Reaches(*spent, limit));
  runner.last_seen = std::chrono::steady_clock::now();
  if (absl::Status st = registry_.Add(std::move(runner), options_.max_streams_per_key); !st.ok()) {
    Log()->warn("account={} refused: {}", slot.account_id, st.message());
    return st;
  }
  std::vector<pb::ResumeWorker> resume(hello.resume().begin(), hello.resume().end());
  Reattach(slot, std::move(resume),
           [this, runner_id = slot.runner_id, link](absl::Status status,
                                                     std::vector<std::string> stale) {
             if (!status.ok()) {
               link->Close(status);
               return;
             }
             pb::BrokerMessage message;
             pb::Welcome* welcome = message.mutable_welcome();
             welcome->set_session_id(runner_id);
             welcome->set_runner_id(runner_id);
             welcome->set_heartbeat_interval_ms(options_.heartbeat_interval_ms);
             for (const auto& w : stale) welcome->add_stale_workers(w);
             link->Send(std::move(message));
             ClaimFor(runner_id);
             PublishRunners();
           });
  return absl::OkStatus();
}

void Dispatcher::Reattach(const RunnerSlot& slot, std::vector<pb::ResumeWorker> resume,
                          std::function<void(absl::Status, std::vector<std::string>)> done) {
  if (resume.empty()) return done(absl::OkStatus(), {});
  auto stale = std::make_shared<std::vector<std::string>>();
  journal_.Submit(
      [this, slot, resume = std::move(resume), stale](JournalTx& tx) -> absl::Status {
        stale->clear();
        for (const pb::ResumeWorker& r : resume) {
          // Only a stream of the account that holds the lease takes it back
          // (from this replica, or from another one it was connected to).
          const std::optional<LiveWorker> known = workers_.Get(r.worker_id());
          std::optional<LiveWorker> held;
          if (!known || (known->epoch == r.epoch() && known->account_id == slot.account_id)) {
            held = tx.store().Reattach(r.worker_id(), r.epoch(), slot.account_id, slot.runner_id,
                                       options_.broker_id);
          }
          if (!held) {
            Log()->warn("runner={} account={} may not resume worker={} epoch={}", slot.runner_id,
                        slot.account_id, r.worker_id(), r.epoch());
            stale->push_back(r.worker_id());
            continue;
          }
          if (known) {
            workers_.SetRunner(r.worker_id(), slot.runner_id);
            tx.OnAbort([this, worker_id = r.worker_id()] { workers_.SetRunner(worker_id, ""); });
          } else {
            workers_.Put(*std::move(held));
            tx.OnAbort([this, worker_id = r.worker_id()] { workers_.Erase(worker_id); });
          }
        }
        return absl::OkStatus();
      },
      [stale, done = std::move(done)](absl::Status status) { done(status, std::move(*stale)); });
}

void Dispatcher::ClaimNow(const std::string& runner_id, int n, const std::string& only_workspace,
                          std::function<void(absl::StatusOr<std::vector<Claimed>>)> done) {
  auto claimed = std::make_shared<std::vector<Claimed>>();
  journal_.Submit(
      [this, runner_id, n, only_workspace, claimed](JournalTx& tx) -> absl::Status {
        claimed->clear();
        std::optional<RunnerSlot> slot = registry_.Slot(runner_id);
        if (!slot) return absl::UnavailableError("the agent's lease ended meanwhile: claim again");
        if (!only_workspace.empty()) slot->only_workspaces = {only_workspace};
        const auto [active, account_active] = workers_.LoadOf(slot->runner_id, slot->account_id);
        const bool spent = budget_.Spent(slot->account_id);
        slot->max_tasks = active + n;
        const int free = FreeSlots(Candidate{&*slot, active, account_active, spent});
        if (free <= 0) return absl::OkStatus();
        std::vector<TaskRecord> tasks = tx.store().ClaimPending(ClaimFilterFor(*slot, spent), free);
        for (TaskRecord& task : tasks) {
          WorkerRecord worker = AssignInTx(tx, task, *slot, /*stored=*/true);
          // Handed over in the answer: there is nothing to accept.
          tx.OnCommit([this, id = worker.id] { workers_.Record(id, 0, "starting"); });
          claimed->push_back(Claimed{task, std::move(worker)});
        }
        CountPending(tx, -static_cast<int64_t>(tasks.size()));
        return absl::OkStatus();
      },
      [claimed, done = std::move(done)](absl::Status status) {
        if (!status.ok()) return done(status);
        done(std::move(*claimed));
      });
}

void Dispatcher::Disconnect(const std::string& runner_id) {
  registry_.Remove(runner_id);
  PublishRunners();
  std::vector<std::string> held = workers_.Orphan(runner_id);
  if (!held.empty()) {
    Log()->info("runner={} gone holding {} workers; lease grace {} ms", runner_id, held.size(),
                options_.lease_grace_ms);
    leases_.Grace(std::move(held));
  }
}

void Dispatcher::ExpireWorkers(const std::vector<std::string>& worker_ids) {
  journal_.Submit([this, worker_ids](JournalTx& tx) -> absl::Status {
    int requeued = 0;
    for (const std::string& worker_id : worker_ids) {
      const std::optional<LiveWorker> a = workers_.Get(worker_id);
      if (!a || !a->runner_id.empty()) continue;  // back or done
      auto worker = tx.store().LockWorker(worker_id);
      if (!worker || worker->epoch != a->epoch || IsTerminalWorkerState(worker->state)) continue;
      if (worker->broker_id != options_.broker_id) {
        // Its runner went to another replica, which holds the lease now.
        tx.OnCommit([this, worker_id] { workers_.Erase(worker_id); });
        continue;
      }
      auto task = tx.store().LockTask(a->task_id);
      if (!task || task->epoch != a->epoch) continue;
      const bool failed =
          EndAttempt(*task, *worker, "runner lost: no reconnect within the lease grace period",
                     /*refused=*/false);
      tx.store().UpdateWorker(*worker);
      tx.store().UpdateTask(*task);
      pb::Event e = EventOf("error", a->task_id, worker_id, a->workspace_id);
      e.set_status(worker->state);
      e.set_text(worker->error);
      tx.Append(std::move(e));
      pb::Event t = EventOf(failed ? "failed" : "requeued", task->id, failed ? worker_id : "",
                             task->workspace_id);
      t.set_status(task->state);
      if (failed) t.set_text(task->error);
      tx.Append(std::move(t));
      if (failed) {
        tx.OnCommit([this, w = *a] { WakeWaitersFor(w.workspace_id, w.task_id, w.concurrency_key); });
      } else {
        ++requeued;
      }
      tx.OnCommit([this, worker_id] {
        workers_.Erase(worker_id);
        absl::MutexLock lock(&mu_);
        held_.erase(worker_id);
      });
    }
    CountPending(tx, requeued);
    if (requeued > 0) tx.OnCommit([this] { ClaimForAll(); });
    return absl::OkStatus();
  });
}

void Dispatcher::ClaimFor(const std::string& runner_id) {
  if (pending_ <= 0) return;
  Claim(runner_id);
}

void Dispatcher::Claim(const std::string& runner_id) {
  journal_.Submit([this, runner_id](JournalTx& tx) -> absl::Status {
    const std::optional<RunnerSlot> slot = registry_.Slot(runner_id);
    if (!slot) return absl::OkStatus();
    const int free = FreeSlotsOf(*slot);
    if (free <= 0) return absl::OkStatus();
    std::vector<TaskRecord> tasks =
        tx.store().ClaimPending(ClaimFilterFor(*slot, budget_.Spent(slot->account_id)), free);
    for (TaskRecord& task : tasks) AssignInTx(tx, task, *slot, /*stored=*/true);
    CountPending(tx, -static_cast<int64_t>(tasks.size()));
    return absl::OkStatus();
  });
}

void Dispatcher::ClaimForAll() {
  for (const RunnerSlot& runner : registry_.Slots()) {
    if (FreeSlotsOf(runner) > 0) ClaimFor(runner.runner_id);
  }
}

void Dispatcher::WakeWaitersFor(const std::string& workspace_id, const std::string& task_id,
                                const std::string& key) {
  if (pending_ <= 0) return;
  if (key == TaskRecord::DefaultWorkBranch(task_id)) {
    absl::MutexLock lock(&mu_);
    if (waited_for_.count({workspace_id, key}) == 0) return;
  }
  boost::asio::post(pool_, [this, workspace_id, key] {
    absl::StatusOr<bool> waiting = store_.HasPendingWithKey(workspace_id, key);
    if (!waiting.ok()) {
      // Claims on the next task end or runner connect pick it up.
      Log()->warn("cannot look for tasks waiting on key {}: {}", key, waiting.status().message());
    } else if (*waiting) {
      ClaimForAll();
    } else {
      absl::MutexLock lock(&mu_);
      waited_for_.erase({workspace_id, key});
    }
  });
}

void Dispatcher::OnMessage(const std::string& runner_id, pb::RunnerMessage message) {
  registry_.Touch(runner_id);
  switch (message.msg_case()) {
    case pb::RunnerMessage::kAccept:
      OnAccept(runner_id, message.accept());
      break;
    case pb::RunnerMessage::kReject:
      GiveBack(runner_id, message.reject().worker_id(), message.reject().epoch(),
               message.reject().reason(), /*refused=*/true);
      break;
    case pb::RunnerMessage::kEvent:
      recorder_.OnEvent(runner_id, std::move(*message.mutable_event()));
      break;
    case pb::RunnerMessage::kFinished:
      recorder_.OnFinished(runner_id, std::move(*message.mutable_finished()));
      break;
    case pb::RunnerMessage::kHeartbeat:
      registry_.SetLoad(runner_id, message.heartbeat().load());
      if (message.heartbeat().draining() && registry_.SetDraining(runner_id)) {
        Log()->info("runner={} drains: it gets no new work", runner_id);
        PublishRunners();
      }
      break;
    default:
      break;  // A second Hello is ignored.
  }
}

void Dispatcher::OnAccept(const std::string& runner_id, const pb::Accept& accept) {
  // Accepting changes nothing durable: the worker's row moves on "started",
  // its first event. Only this replica's view notes it.
  const std::optional<LiveWorker> w = workers_.HeldBy(runner_id, accept.worker_id(), accept.epoch());
  if (w && w->state == "idle") workers_.Record(w->worker_id, w->last_seq, "starting");
}

void Dispatcher::AcceptDue(const std::string& runner_id, const std::string& worker_id,
                           int64_t epoch) {
  const std::optional<LiveWorker> w = workers_.HeldBy(runner_id, worker_id, epoch);
  if (!w || w->state != "idle") return;
  Log()->warn("runner={} did not accept worker={} within {} ms: its task goes back to the queue",
              runner_id, worker_id, options_.accept_timeout_ms);
  // Should it start after all, it is told to stop.
  Send(runner_id, CancelOf(worker_id, epoch));
  GiveBack(runner_id, worker_id, epoch,
           absl::StrCat("the runner did not accept it within ", options_.accept_timeout_ms, " ms"),
           /*refused=*/false);
}

void Dispatcher::GiveBack(const std::string& runner_id, const std::string& worker_id,
                          int64_t epoch, const std::string& reason, bool refused) {
  journal_.Submit([this, runner_id, worker_id, epoch, reason, refused](JournalTx& tx) -> absl::Status {
    const std::optional<LiveWorker> a = workers_.HeldBy(runner_id, worker_id, epoch);
    if (!a) return absl::OkStatus();
    auto worker = tx.store().LockWorker(worker_id);
    auto task = tx.store().LockTask(a->task_id);
    if (!worker || !task || task->epoch != a->epoch) return absl::OkStatus();
    // A runner that never answers may not spend the attempts forever.
    const bool exhausted = EndAttempt(
        *task, *worker, refused ? absl::StrCat("rejected by the runner: ", reason) : reason, refused);
    tx.store().UpdateWorker(*worker);
    tx.store().UpdateTask(*task);
    pb::Event e = EventOf(exhausted ? "failed" : refused ? "rejected" : "requeued", a->task_id,
                           worker_id, a->workspace_id);
    e.set_status(task->state);
    e.set_text(reason);
    tx.Append(std::move(e));
    if (!exhausted) CountPending(tx, +1);
    // The task goes to other runners first; the one that did not take it
    // claims again only when one of its own slots frees.
    tx.OnCommit([this, runner_id, exhausted, a = *a] {
      workers_.Erase(a.worker_id);
      if (exhausted) return WakeWaitersFor(a.workspace_id, a.task_id, a.concurrency_key);
      for (const RunnerSlot& runner : registry_.Slots()) {
        if (runner.runner_id != runner_id && FreeSlotsOf(runner) > 0) ClaimFor(runner.runner_id);
      }
    });
    return absl::OkStatus();
  });
}

void Dispatcher::Ended(const std::string& runner_id, const LiveWorker& worker) {
  workers_.Erase(worker.worker_id);
  ClaimFor(runner_id);
  WakeWaitersFor(worker.workspace_id, worker.task_id, worker.concurrency_key);
}

void Dispatcher::RefreshAccount(
    const std::string& account_id,
    const std::function<absl::StatusOr<RunnerAccess>(const std::string& key)>& reauth) {
  bool changed = false;
  std::set<std::string> budgets_checked;
  for (const RunnerSlot& runner : registry_.Slots()) {
    if (!account_id.empty() && runner.account_id != account_id) continue;
    absl::StatusOr<RunnerAccess> fresh = reauth(registry_.Key(runner.runner_id));
    if (!fresh.ok()) {
      if (fresh.status().code() == absl::StatusCode::kUnauthenticated) {
        Log()->info("runner={} key no longer valid; closing its stream", runner.name);
        if (auto link = registry_.Link(runner.runner_id)) link->Close(fresh.status());
      }
      continue;
    }
    // A changed daily budget applies to what the account spent today.
    const double limit = fresh->account_max_cost_per_day;
    if (limit != runner.access.account_max_cost_per_day &&
        budgets_checked.insert(runner.account_id).second) {
      absl::StatusOr<double> spent = limit > 0 ? store_.CostToday(runner.account_id) : 0.0;
      if (spent.ok()) budget_.SetSpent(runner.account_id, Budget::Reaches(*spent, limit));
    }
    registry_.SetAccess(runner.account_id, *fresh);
    changed = true;
  }
  if (changed) ClaimForAll();
}

void Dispatcher::CloseSilentRunners() {
  const auto limit =
      std::chrono::milliseconds(options_.heartbeat_interval_ms * options_.missed_heartbeats);
  for (auto& link : registry_.Silent(std::chrono::steady_clock::now(), limit)) {
    link->Close(absl::DeadlineExceededError("missed heartbeats"));
  }
}

}  // namespace buildd::broker
