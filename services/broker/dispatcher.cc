#include "services/broker/dispatcher.h"

#include <boost/asio/post.hpp>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/ids.h"
#include "common/logging.h"
#include "services/broker/runner_reports.h"

namespace buildd::broker {
namespace {

bool Terminal(const std::string& worker_state) {
  return worker_state == "completed" || worker_state == "error" || worker_state == "canceled";
}

pb::Event NewEvent(const std::string& type, const std::string& task_id,
                   const std::string& worker_id, const std::string& workspace_id) {
  pb::Event e;
  e.set_type(type);
  e.set_task_id(task_id);
  e.set_worker_id(worker_id);
  e.set_workspace_id(workspace_id);
  e.set_created_at(NowRfc3339());
  return e;
}

}  // namespace

pb::Task TaskToProto(const TaskRecord& t) {
  pb::Task task;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  (void)google::protobuf::util::JsonStringToMessage(t.spec_json, &task, options);
  ApplyTaskState(t, &task);
  return task;
}

void ApplyTaskState(const TaskRecord& t, pb::Task* out) {
  pb::Task& task = *out;
  task.set_id(t.id);
  task.set_workspace_id(t.workspace_id);
  pb::Task::RunnerPreference pref = pb::Task::any;
  pb::Task::RunnerPreference_Parse(t.runner_preference, &pref);
  task.set_runner_preference(pref);
  task.clear_required_labels();
  for (const auto& l : t.required_labels) task.add_required_labels(l);
  task.set_provider(t.provider);
  task.set_priority(t.priority);
  pb::Task::State state = pb::Task::state_unspecified;
  pb::Task::State_Parse(t.state, &state);
  task.set_state(state);
  task.set_attempts(t.attempts);
  task.set_max_attempts(t.max_attempts);
  task.set_worker_id(t.worker_id);
  task.set_exit_code(t.exit_code);
  task.set_error(t.error);
  task.set_created_by(t.created_by);
  task.set_created_at(t.created_at);
  task.set_updated_at(t.updated_at);
  task.clear_artifacts();
  if (!t.artifacts_json.empty()) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    (void)google::protobuf::util::JsonStringToMessage(t.artifacts_json, task.mutable_artifacts(),
                                                      options);
  }
}

pb::Worker WorkerToProto(const WorkerRecord& w) {
  pb::Worker worker;
  worker.set_id(w.id);
  worker.set_task_id(w.task_id);
  worker.set_workspace_id(w.workspace_id);
  worker.set_account_id(w.account_id);
  worker.set_runner_id(w.runner_id);
  worker.set_runner_name(w.runner_name);
  pb::Worker::State state = pb::Worker::state_unspecified;
  pb::Worker::State_Parse(w.state, &state);
  worker.set_state(state);
  worker.set_epoch(w.epoch);
  worker.set_last_seq(w.last_seq);
  worker.set_exit_code(w.exit_code);
  worker.set_error_message(w.error);
  worker.set_created_at(w.created_at);
  worker.set_updated_at(w.updated_at);
  return worker;
}

pb::Workspace WorkspaceToProto(const WorkspaceRecord& w) {
  pb::Workspace ws;
  ws.set_id(w.id);
  ws.set_name(w.name);
  ws.set_repo_url(w.repo_url);
  ws.set_default_branch(w.default_branch);
  ws.set_created_at(w.created_at);
  ws.set_network(w.network);
  return ws;
}

Dispatcher::Dispatcher(Journal& journal, Scheduler& scheduler, PgBrokerStore& store,
                       boost::asio::io_context& timers, boost::asio::thread_pool& pool,
                       DispatcherOptions options)
    : journal_(journal),
      scheduler_(scheduler),
      store_(store),
      timers_(timers),
      pool_(pool),
      options_(options),
      heartbeat_timer_(timers) {}

Dispatcher::~Dispatcher() = default;

absl::Status Dispatcher::Start() {
  std::vector<std::string> orphans;
  absl::Status status = journal_.Run([&](JournalTx& tx) -> absl::Status {
    long long pending = 0;
    tx.sql() << "SELECT count(*) FROM tasks WHERE state = 'pending'", soci::into(pending);
    pending_ = pending;
    soci::rowset<soci::row> rows =
        (tx.sql().prepare << "SELECT w.id::text, w.task_id::text, w.workspace_id::text, w.epoch,"
                           " w.last_seq, w.state, t.concurrency_key, COALESCE(w.account_id::text, '')"
                           " FROM workers w"
                           " JOIN tasks t ON t.id = w.task_id WHERE w.state IN"
                           " ('idle', 'starting', 'running', 'waiting_input', 'paused')");
    absl::MutexLock lock(&mu_);
    for (const soci::row& r : rows) {
      Attached a;
      a.task_id = r.get<std::string>(1);
      a.workspace_id = r.get<std::string>(2);
      a.epoch = r.get<long long>(3);
      a.last_seq = r.get<long long>(4);
      a.state = r.get<std::string>(5);
      a.concurrency_key = r.get<std::string>(6);
      a.account_id = r.get<std::string>(7);
      attached_[r.get<std::string>(0)] = a;
      orphans.push_back(r.get<std::string>(0));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!orphans.empty()) {
    Log()->info("{} workers of an earlier broker wait {} ms for their runners", orphans.size(),
                options_.lease_grace_ms);
    ArmLeaseTimer(std::move(orphans));
  }
  ArmHeartbeatCheck();
  return absl::OkStatus();
}

std::shared_ptr<RunnerLink> Dispatcher::Link(const std::string& runner_id) {
  absl::MutexLock lock(&mu_);
  auto it = connected_.find(runner_id);
  return it == connected_.end() ? nullptr : it->second.link;
}

void Dispatcher::Send(const std::string& runner_id, pb::BrokerMessage message) {
  if (auto link = Link(runner_id)) link->Send(std::move(message));
}

absl::StatusOr<WorkspaceRecord> Dispatcher::WorkspaceIn(JournalTx& tx, const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = workspaces_.find(id);
    if (it != workspaces_.end()) return it->second;
  }
  auto ws = PgBrokerStore::FindWorkspace(tx.sql(), id);
  if (!ws) return absl::NotFoundError(absl::StrCat("workspace ", id, " not found"));
  absl::MutexLock lock(&mu_);
  workspaces_[id] = *ws;
  return *ws;
}

TaskRecord Dispatcher::AssignInTx(JournalTx& tx, TaskRecord task, const RunnerSlot& runner,
                                  bool stored) {
  WorkerRecord worker;
  worker.id = NewUuid();
  worker.task_id = task.id;
  worker.workspace_id = task.workspace_id;
  worker.account_id = runner.account_id;
  worker.runner_id = runner.runner_id;
  worker.runner_name = runner.name;
  worker.state = "idle";
  worker.epoch = task.epoch + 1;

  task.epoch = worker.epoch;
  task.attempts += 1;
  task.state = "assigned";
  task.worker_id = worker.id;
  if (stored) {
    PgBrokerStore::UpdateTask(tx.sql(), task);
  } else {
    tx.writes().InsertTask(task);
  }
  tx.writes().InsertWorker(worker);

  pb::Event e = NewEvent("assigned", task.id, worker.id, task.workspace_id);
  e.set_runner_name(runner.name);
  e.set_status("idle");
  tx.Append(std::move(e));

  {
    absl::MutexLock lock(&mu_);
    Attached a;
    a.runner_id = runner.runner_id;
    a.account_id = runner.account_id;
    a.epoch = worker.epoch;
    a.task_id = task.id;
    a.workspace_id = task.workspace_id;
    a.state = "idle";
    a.concurrency_key = task.concurrency_key;
    attached_[worker.id] = a;
  }
  const std::string runner_id = runner.runner_id;
  const std::string worker_id = worker.id;
  tx.OnAbort([this, runner_id, worker_id] {
    scheduler_.Release(runner_id);
    absl::MutexLock lock(&mu_);
    attached_.erase(worker_id);
  });

  pb::BrokerMessage message;
  pb::Assign* assign = message.mutable_assign();
  worker.created_at = worker.updated_at = NowRfc3339();
  *assign->mutable_worker() = WorkerToProto(worker);
  task.updated_at = NowRfc3339();
  *assign->mutable_task() = TaskToProto(task);
  assign->set_epoch(worker.epoch);
  if (task.created_by == runner.account_id ||
      runner.access.share_workspaces.count(task.workspace_id) > 0) {
    absl::MutexLock lock(&mu_);
    auto it = connected_.find(runner.runner_id);
    if (it != connected_.end()) {
      const auto& credentials = it->second.credentials;
      assign->mutable_credentials()->mutable_env()->insert(credentials.begin(), credentials.end());
    }
  }
  auto ws = WorkspaceIn(tx, task.workspace_id);
  if (ws.ok()) *assign->mutable_workspace() = WorkspaceToProto(*ws);
  const std::string resume_from = assign->task().resume_from();
  tx.OnCommit([this, runner_id, worker_id, epoch = worker.epoch, resume_from,
               message = std::move(message)]() mutable {
    ArmAcceptTimer(runner_id, worker_id, epoch);
    if (resume_from.empty()) return Send(runner_id, std::move(message));
    // A session transcript can be megabytes: read it off the journal's
    // thread. Checked when the task was created; one gone since then leaves
    // the runner to start a new session.
    boost::asio::post(pool_, [this, runner_id, resume_from, message = std::move(message)]() mutable {
      auto session = store_.GetSession(resume_from, /*with_data=*/true);
      if (!session.ok()) {
        Log()->warn("task={} cannot read the session to resume: {}", resume_from,
                    session.status().message());
      } else if (session->has_value()) {
        *message.mutable_assign()->mutable_resume_session() = **std::move(session);
      }
      Send(runner_id, std::move(message));
    });
  });
  Log()->debug("assign task={} worker={} runner={}", task.id, worker.id, runner.name);
  return task;
}

void Dispatcher::CreateTask(TaskRecord task, std::function<void(absl::StatusOr<TaskRecord>)> done) {
  auto result = std::make_shared<TaskRecord>();
  journal_.Submit(
      [this, task = std::move(task), result](JournalTx& tx) mutable -> absl::Status {
        auto ws = WorkspaceIn(tx, task.workspace_id);
        if (!ws.ok()) return ws.status();
        // Behind an unfinished task with the same key it waits its turn.
        const bool waits = !task.KeyIsOwn() &&
                           PgBrokerStore::KeyIsBusy(tx.sql(), task.workspace_id, task.concurrency_key);
        std::optional<RunnerSlot> runner;
        if (!waits) runner = scheduler_.Reserve(task.Route());
        pb::Event created = NewEvent("created", task.id, "", task.workspace_id);
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
        if (!runner) {
          tx.writes().InsertTask(task);
          tx.OnCommit([this] { ++pending_; });
          *result = task;
          return absl::OkStatus();
        }
        *result = AssignInTx(tx, task, *runner, /*stored=*/false);
        return absl::OkStatus();
      },
      [done = std::move(done), result](absl::Status status) {
        if (!status.ok()) {
          done(status);
        } else {
          done(*result);
        }
      });
}

absl::StatusOr<TaskRecord> Dispatcher::CancelTask(const std::string& task_id) {
  auto result = std::make_shared<TaskRecord>();
  std::string worker_to_cancel;
  absl::Status status = journal_.Run([&](JournalTx& tx) -> absl::Status {
    auto task = PgBrokerStore::LockTask(tx.sql(), task_id);
    if (!task) return absl::NotFoundError(absl::StrCat("task ", task_id, " not found"));
    if (task->state == "completed" || task->state == "failed" || task->state == "canceled") {
      return absl::FailedPreconditionError(absl::StrCat("task ", task_id, " is already ", task->state));
    }
    if (task->state == "pending") {
      task->state = "canceled";
      PgBrokerStore::UpdateTask(tx.sql(), *task);
      pb::Event e = NewEvent("canceled", task->id, "", task->workspace_id);
      e.set_status("canceled");
      tx.Append(std::move(e));
      // A later task with its key may go now.
      tx.OnCommit([this, t = *task] {
        --pending_;
        WakeWaitersFor(t.workspace_id, t.id, t.concurrency_key);
      });
    } else {
      worker_to_cancel = task->worker_id;
    }
    *result = *task;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!worker_to_cancel.empty()) {
    absl::Status control = Control(worker_to_cancel, pb::Control::cancel, "");
    if (!control.ok()) return control;
  }
  return *result;
}

absl::Status Dispatcher::Control(const std::string& worker_id, pb::Control::Action action,
                                 const std::string& text) {
  std::string runner_id;
  int64_t epoch = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = attached_.find(worker_id);
    if (it == attached_.end()) {
      return absl::FailedPreconditionError(absl::StrCat("worker ", worker_id, " is not active"));
    }
    if (it->second.runner_id.empty()) {
      return absl::UnavailableError(absl::StrCat("the runner of worker ", worker_id,
                                                 " is disconnected; try again"));
    }
    const std::string& state = it->second.state;
    if ((action == pb::Control::pause && state != "running") ||
        (action == pb::Control::resume && state != "paused")) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker ", worker_id, " is ", state, ": only a running worker pauses and "
                       "only a paused one resumes"));
    }
    if (action == pb::Control::input && it->second.state != "waiting_input") {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", worker_id, " is not waiting for input (it is ", it->second.state, ")"));
    }
    runner_id = it->second.runner_id;
    epoch = it->second.epoch;
  }
  pb::BrokerMessage message;
  pb::Control* control = message.mutable_control();
  control->set_worker_id(worker_id);
  control->set_epoch(epoch);
  control->set_action(action);
  control->set_text(text);
  Send(runner_id, std::move(message));
  return absl::OkStatus();
}

void Dispatcher::Connect(RunnerSlot slot, std::shared_ptr<RunnerLink> link, const pb::Hello& hello,
                         std::map<std::string, std::string> credentials) {
  const std::string runner_id = slot.runner_id;
  {
    absl::MutexLock lock(&mu_);
    connected_[runner_id] =
        Connected{link, std::chrono::steady_clock::now(), std::move(credentials)};
  }
  slot.active = 0;
  const std::string account_id = slot.account_id;
  const double max_cost = slot.account_max_cost_per_day;
  scheduler_.AddRunner(slot);
  std::vector<pb::ResumeWorker> resume(hello.resume().begin(), hello.resume().end());
  auto stale = std::make_shared<std::vector<std::string>>();
  journal_.Submit(
      [this, runner_id, resume, stale, account_id, max_cost](JournalTx& tx) -> absl::Status {
        if (max_cost > 0 && PgBrokerStore::CostToday(tx.sql(), account_id) >= max_cost) {
          scheduler_.SetSpent(account_id, TodayUtc());
        }
        for (const pb::ResumeWorker& r : resume) {
          // Only a stream of the account that holds the lease takes it back.
          bool ok = false;
          {
            absl::MutexLock lock(&mu_);
            auto it = attached_.find(r.worker_id());
            ok = it != attached_.end() && it->second.epoch == r.epoch() &&
                 it->second.account_id == account_id;
          }
          if (!ok) {
            Log()->warn("runner={} account={} may not resume worker={} epoch={}", runner_id,
                        account_id, r.worker_id(), r.epoch());
          }
          if (ok) {
            const long long epoch = r.epoch();
            soci::statement st =
                (tx.sql().prepare << "UPDATE workers SET runner_id = :r, updated_at = now()"
                                   " WHERE id = :id AND epoch = :e AND account_id = :a AND state IN"
                                   " ('idle', 'starting', 'running', 'waiting_input', 'paused')",
                 soci::use(runner_id), soci::use(r.worker_id()), soci::use(epoch),
                 soci::use(account_id));
            st.execute(true);
            ok = st.get_affected_rows() == 1;
          }
          if (!ok) {
            stale->push_back(r.worker_id());
            continue;
          }
          scheduler_.ReserveOn(runner_id, 1);
          absl::MutexLock lock(&mu_);
          attached_[r.worker_id()].runner_id = runner_id;
          const std::string worker_id = r.worker_id();
          tx.OnAbort([this, runner_id, worker_id] {
            scheduler_.Release(runner_id);
            absl::MutexLock lock(&mu_);
            auto it = attached_.find(worker_id);
            if (it != attached_.end() && it->second.runner_id == runner_id) it->second.runner_id.clear();
          });
        }
        return absl::OkStatus();
      },
      [this, runner_id, stale, link](absl::Status status) {
        if (!status.ok()) {
          link->Close(status);
          return;
        }
        pb::BrokerMessage message;
        pb::Welcome* welcome = message.mutable_welcome();
        welcome->set_session_id(runner_id);
        welcome->set_runner_id(runner_id);
        welcome->set_heartbeat_interval_ms(options_.heartbeat_interval_ms);
        for (const auto& w : *stale) welcome->add_stale_workers(w);
        link->Send(std::move(message));
        ClaimFor(runner_id);
      });
}

void Dispatcher::Disconnect(const std::string& runner_id) {
  std::vector<std::string> held;
  {
    absl::MutexLock lock(&mu_);
    connected_.erase(runner_id);
    for (auto& [worker_id, a] : attached_) {
      if (a.runner_id == runner_id) {
        a.runner_id.clear();
        held.push_back(worker_id);
      }
    }
  }
  scheduler_.RemoveRunner(runner_id);
  if (!held.empty()) {
    Log()->info("runner={} gone holding {} workers; lease grace {} ms", runner_id, held.size(),
                options_.lease_grace_ms);
    ArmLeaseTimer(std::move(held));
  }
}

void Dispatcher::ArmLeaseTimer(std::vector<std::string> worker_ids) {
  auto timer = std::make_shared<boost::asio::steady_timer>(
      timers_, std::chrono::milliseconds(options_.lease_grace_ms));
  timer->async_wait([this, timer, worker_ids = std::move(worker_ids)](boost::system::error_code ec) {
    if (!ec) ExpireWorkers(worker_ids);
  });
}

void Dispatcher::ExpireWorkers(std::vector<std::string> worker_ids) {
  journal_.Submit([this, worker_ids](JournalTx& tx) -> absl::Status {
    int requeued = 0;
    for (const std::string& worker_id : worker_ids) {
      Attached a;
      {
        absl::MutexLock lock(&mu_);
        auto it = attached_.find(worker_id);
        if (it == attached_.end() || !it->second.runner_id.empty()) continue;  // back or done
        a = it->second;
      }
      auto worker = PgBrokerStore::LockWorker(tx.sql(), worker_id);
      if (!worker || worker->epoch != a.epoch || Terminal(worker->state)) continue;
      worker->state = "error";
      worker->error = "runner lost: no reconnect within the lease grace period";
      PgBrokerStore::UpdateWorker(tx.sql(), *worker);
      pb::Event e = NewEvent("error", a.task_id, worker_id, a.workspace_id);
      e.set_status("error");
      e.set_text(worker->error);
      tx.Append(std::move(e));
      auto task = PgBrokerStore::LockTask(tx.sql(), a.task_id);
      if (task && task->epoch == a.epoch) {
        if (task->attempts < task->max_attempts) {
          task->state = "pending";
          task->worker_id.clear();
          ++requeued;
          pb::Event q = NewEvent("requeued", task->id, "", task->workspace_id);
          q.set_status("pending");
          tx.Append(std::move(q));
        } else {
          tx.OnCommit([this, t = *task] { WakeWaitersFor(t.workspace_id, t.id, t.concurrency_key); });
          task->state = "failed";
          task->error = worker->error;
          pb::Event f = NewEvent("failed", task->id, worker_id, task->workspace_id);
          f.set_status("failed");
          f.set_text(task->error);
          tx.Append(std::move(f));
        }
        PgBrokerStore::UpdateTask(tx.sql(), *task);
      }
      tx.OnCommit([this, worker_id] {
        absl::MutexLock lock(&mu_);
        attached_.erase(worker_id);
      });
    }
    if (requeued > 0) {
      tx.OnCommit([this, requeued] {
        pending_ += requeued;
        ClaimForAll();
      });
    }
    return absl::OkStatus();
  });
}

void Dispatcher::ClaimFor(const std::string& runner_id) {
  if (pending_ <= 0) return;
  journal_.Submit([this, runner_id](JournalTx& tx) -> absl::Status {
    std::optional<RunnerSlot> slot = scheduler_.Get(runner_id);
    if (!slot) return absl::OkStatus();
    const int reserved = scheduler_.ReserveOn(runner_id, slot->max_tasks - slot->active);
    if (reserved <= 0) return absl::OkStatus();
    std::vector<TaskRecord> tasks = PgBrokerStore::ClaimPending(tx.sql(), *slot, reserved);
    for (int i = static_cast<int>(tasks.size()); i < reserved; ++i) scheduler_.Release(runner_id);
    for (TaskRecord& task : tasks) AssignInTx(tx, task, *slot, /*stored=*/true);
    const int64_t claimed = static_cast<int64_t>(tasks.size());
    if (claimed > 0) tx.OnCommit([this, claimed] { pending_ -= claimed; });
    return absl::OkStatus();
  });
}

void Dispatcher::ClaimForAll() {
  for (const RunnerSlot& runner : scheduler_.Runners()) {
    if (runner.active < runner.max_tasks) ClaimFor(runner.runner_id);
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

void Dispatcher::OnMessage(const std::string& runner_id, const pb::RunnerMessage& message) {
  {
    absl::MutexLock lock(&mu_);
    auto it = connected_.find(runner_id);
    if (it != connected_.end()) it->second.last_seen = std::chrono::steady_clock::now();
  }
  switch (message.msg_case()) {
    case pb::RunnerMessage::kAccept:
      OnAccept(runner_id, message.accept());
      break;
    case pb::RunnerMessage::kReject:
      OnReject(runner_id, message.reject());
      break;
    case pb::RunnerMessage::kEvent:
      OnEvent(runner_id, message.event());
      break;
    case pb::RunnerMessage::kFinished:
      OnFinished(runner_id, message.finished());
      break;
    default:
      break;  // Heartbeats only refresh last_seen; a second Hello is ignored.
  }
}

void Dispatcher::OnAccept(const std::string& runner_id, const pb::Accept& accept) {
  // Accepting changes nothing durable: the worker's row moves on "started",
  // its first event. Only this replica's view notes it.
  absl::MutexLock lock(&mu_);
  auto it = attached_.find(accept.worker_id());
  if (it != attached_.end() && it->second.runner_id == runner_id &&
      it->second.epoch == accept.epoch() && it->second.state == "idle") {
    it->second.state = "starting";
  }
}

void Dispatcher::OnReject(const std::string& runner_id, const pb::Reject& reject) {
  GiveBack(runner_id, reject.worker_id(), reject.epoch(), reject.reason(), /*refused=*/true);
}

void Dispatcher::ArmAcceptTimer(const std::string& runner_id, const std::string& worker_id,
                                int64_t epoch) {
  auto timer = std::make_shared<boost::asio::steady_timer>(
      timers_, std::chrono::milliseconds(options_.accept_timeout_ms));
  timer->async_wait([this, timer, runner_id, worker_id, epoch](boost::system::error_code ec) {
    if (ec) return;
    const std::optional<Attached> a = AttachedTo(runner_id, worker_id, epoch);
    if (!a || a->state != "idle") return;
    Log()->warn("runner={} did not accept worker={} within {} ms: its task goes back to the queue",
                runner_id, worker_id, options_.accept_timeout_ms);
    // Should it start after all, it is told to stop.
    pb::BrokerMessage cancel;
    cancel.mutable_control()->set_worker_id(worker_id);
    cancel.mutable_control()->set_epoch(epoch);
    cancel.mutable_control()->set_action(pb::Control::cancel);
    Send(runner_id, std::move(cancel));
    GiveBack(runner_id, worker_id, epoch,
             absl::StrCat("the runner did not accept it within ", options_.accept_timeout_ms, " ms"),
             /*refused=*/false);
  });
}

void Dispatcher::GiveBack(const std::string& runner_id, const std::string& worker_id,
                          int64_t epoch, const std::string& reason, bool refused) {
  journal_.Submit([this, runner_id, worker_id, epoch, reason, refused](JournalTx& tx) -> absl::Status {
    const std::optional<Attached> attached = AttachedTo(runner_id, worker_id, epoch);
    if (!attached) return absl::OkStatus();
    const Attached& a = *attached;
    auto worker = PgBrokerStore::LockWorker(tx.sql(), worker_id);
    auto task = PgBrokerStore::LockTask(tx.sql(), a.task_id);
    if (!worker || !task || task->epoch != a.epoch) return absl::OkStatus();
    worker->state = "error";
    worker->error = refused ? absl::StrCat("rejected by the runner: ", reason) : reason;
    PgBrokerStore::UpdateWorker(tx.sql(), *worker);
    // A runner that never answers may not spend the attempts forever.
    const bool exhausted = !refused && task->attempts >= task->max_attempts;
    task->worker_id.clear();
    if (refused) task->attempts = std::max(0, task->attempts - 1);
    task->state = exhausted ? "failed" : "pending";
    if (exhausted) task->error = worker->error;
    PgBrokerStore::UpdateTask(tx.sql(), *task);
    pb::Event e = NewEvent(exhausted ? "failed" : refused ? "rejected" : "requeued", a.task_id,
                           worker_id, a.workspace_id);
    e.set_status(task->state);
    e.set_text(reason);
    tx.Append(std::move(e));
    // The task goes to other runners first; the one that did not take it
    // claims again only when one of its own slots frees.
    tx.OnCommit([this, runner_id, worker_id, exhausted, a] {
      scheduler_.Release(runner_id);
      {
        absl::MutexLock lock(&mu_);
        attached_.erase(worker_id);
      }
      if (exhausted) return WakeWaitersFor(a.workspace_id, a.task_id, a.concurrency_key);
      ++pending_;
      for (const RunnerSlot& runner : scheduler_.Runners()) {
        if (runner.runner_id != runner_id && runner.active < runner.max_tasks) {
          ClaimFor(runner.runner_id);
        }
      }
    });
    return absl::OkStatus();
  });
}

void Dispatcher::OnNotStored(const std::string& runner_id, const std::string& worker_id,
                             int64_t epoch, int64_t seq, int64_t ack_up_to, bool finished,
                             const absl::Status& status) {
  Log()->error("runner={} worker={} seq={}: its {} could not be stored: {}", runner_id, worker_id,
               seq, finished ? "Finished" : "event", status.ToString());
  if (status.code() == absl::StatusCode::kUnavailable) {
    if (auto link = Link(runner_id)) link->Close(absl::UnavailableError("the broker cannot store events now"));
    return;
  }
  journal_.Submit([this, runner_id, worker_id, epoch, seq, ack_up_to, finished,
                   status](JournalTx& tx) -> absl::Status {
    const std::optional<Attached> known = AttachedTo(runner_id, worker_id, epoch);
    pb::BrokerMessage ack;
    ack.mutable_ack()->set_worker_id(worker_id);
    ack.mutable_ack()->set_up_to_seq(ack_up_to);
    tx.OnCommit([this, runner_id, ack] { Send(runner_id, ack); });
    if (!known) return absl::OkStatus();
    const std::string text =
        absl::StrCat(finished ? "the attempt's result" : absl::StrCat("event ", seq),
                     " from the runner could not be stored: ", status.message());
    WorkerChange change;
    change.worker_id = worker_id;
    change.epoch = epoch;
    change.seq = std::max(seq, known->last_seq);
    if (finished) {
      change.worker_state = "error";
      change.task_state = "failed";
      change.error = text;
      change.exit_code = -1;
    }
    tx.writes().ChangeWorker(change);
    pb::Event e = NewEvent("error", known->task_id, worker_id, known->workspace_id);
    e.set_text(text);
    if (finished) e.set_status("error");
    tx.Append(std::move(e));
    tx.OnCommit([this, runner_id, worker_id, seq, finished, a = *known] {
      {
        absl::MutexLock lock(&mu_);
        auto it = attached_.find(worker_id);
        if (it != attached_.end()) it->second.last_seq = std::max(it->second.last_seq, seq);
        if (finished) attached_.erase(worker_id);
      }
      if (!finished) return;
      scheduler_.Release(runner_id);
      ClaimFor(runner_id);
      WakeWaitersFor(a.workspace_id, a.task_id, a.concurrency_key);
    });
    return absl::OkStatus();
  });
}

void Dispatcher::OnEvent(const std::string& runner_id, const pb::RunnerEvent& event) {
  journal_.Submit([this, runner_id, event](JournalTx& tx) -> absl::Status {
    Attached before;
    bool stale = false;
    {
      absl::MutexLock lock(&mu_);
      auto it = attached_.find(event.worker_id());
      if (it == attached_.end() || it->second.runner_id != runner_id ||
          it->second.epoch != event.epoch()) {
        stale = true;
      } else {
        before = it->second;
      }
    }
    pb::BrokerMessage ack;
    ack.mutable_ack()->set_worker_id(event.worker_id());
    ack.mutable_ack()->set_up_to_seq(event.seq());
    const bool refused = !stale && !RunnerMaySend(event.event());
    if (refused) {
      Log()->warn("runner={} worker={} sent an event of type '{}' (status '{}'), which runners may "
                  "not send: dropped",
                  runner_id, event.worker_id(), event.event().type().substr(0, 64),
                  event.event().status().substr(0, 64));
    }
    if (stale || refused || event.seq() <= before.last_seq) {
      // A duplicate (replayed after a reconnect), a fenced-off attempt or a
      // refused event: acknowledge so the runner drops it, record nothing.
      tx.OnCommit([this, runner_id, ack] { Send(runner_id, ack); });
      return absl::OkStatus();
    }
    pb::Event e = RecordedEvent(event, before.task_id, before.workspace_id);
    const std::string new_state = WorkerStateAfter(before.state, e);
    WorkerChange change;
    change.worker_id = event.worker_id();
    change.epoch = event.epoch();
    change.seq = event.seq();
    if (new_state != before.state) {
      change.worker_state = new_state;
      // A paused worker leaves its task running.
      if (new_state != "paused") change.task_state = new_state == "waiting_input" ? "waiting_input" : "running";
    }
    tx.writes().ChangeWorker(change);
    tx.Append(std::move(e));
    {
      absl::MutexLock lock(&mu_);
      auto& a = attached_[event.worker_id()];
      a.last_seq = event.seq();
      a.state = new_state;
    }
    const std::string worker_id = event.worker_id();
    tx.OnAbort([this, worker_id, before] {
      absl::MutexLock lock(&mu_);
      auto it = attached_.find(worker_id);
      if (it != attached_.end()) {
        it->second.last_seq = before.last_seq;
        it->second.state = before.state;
      }
    });
    tx.OnCommit([this, runner_id, ack] { Send(runner_id, ack); });
    return absl::OkStatus();
  }, [this, runner_id, worker_id = event.worker_id(), epoch = event.epoch(),
      seq = event.seq()](absl::Status status) {
    if (!status.ok()) OnNotStored(runner_id, worker_id, epoch, seq, seq, /*finished=*/false, status);
  }, event.ByteSizeLong());
}

std::optional<Dispatcher::Attached> Dispatcher::AttachedTo(const std::string& runner_id,
                                                          const std::string& worker_id,
                                                          int64_t epoch) {
  absl::MutexLock lock(&mu_);
  auto it = attached_.find(worker_id);
  if (it == attached_.end() || it->second.runner_id != runner_id || it->second.epoch != epoch) {
    return std::nullopt;
  }
  return it->second;
}

void Dispatcher::OnFinished(const std::string& runner_id, const pb::Finished& message) {
  // A transcript of megabytes is sealed here, not on the journal's thread.
  pb::Finished finished = message;
  std::optional<SealedSession> session;
  if (finished.has_session() && !finished.session().session_id().empty()) {
    if (auto a = AttachedTo(runner_id, finished.worker_id(), finished.epoch()); a.has_value()) {
      finished.mutable_session()->set_task_id(a->task_id);
      session = store_.SealSession(finished.session());
    }
  }
  finished.clear_session();
  // So is the artifacts' JSON (a patch can be 256 KiB).
  std::string artifacts_json;
  google::protobuf::Struct artifacts_data;
  if (finished.has_artifacts()) {
    (void)google::protobuf::util::MessageToJsonString(finished.artifacts(), &artifacts_json);
    (void)google::protobuf::util::JsonStringToMessage(artifacts_json, &artifacts_data);
  }
  journal_.Submit([this, runner_id, finished = std::move(finished), session = std::move(session),
                   artifacts_json = std::move(artifacts_json),
                   artifacts_data = std::move(artifacts_data)](JournalTx& tx) -> absl::Status {
    const std::optional<Attached> known =
        AttachedTo(runner_id, finished.worker_id(), finished.epoch());
    // A Finished is acked as the message after the last event.
    pb::BrokerMessage ack;
    ack.mutable_ack()->set_worker_id(finished.worker_id());
    ack.mutable_ack()->set_up_to_seq(FinishedAckSeq(finished));
    if (!known) {
      tx.OnCommit([this, runner_id, ack] { Send(runner_id, ack); });
      return absl::OkStatus();
    }
    const Attached& a = *known;
    std::string worker_state, task_state, type;
    switch (finished.outcome()) {
      case pb::Finished::completed:
        worker_state = "completed";
        task_state = "completed";
        type = "completed";
        break;
      case pb::Finished::canceled:
        worker_state = "canceled";
        task_state = "canceled";
        type = "canceled";
        break;
      default:
        worker_state = "error";
        task_state = "failed";
        type = "error";
        break;
    }
    WorkerChange change;
    change.worker_id = finished.worker_id();
    change.epoch = finished.epoch();
    change.worker_state = worker_state;
    change.task_state = task_state;
    change.exit_code = finished.exit_code();
    change.error = finished.error_message();
    change.seq = std::max<int64_t>(finished.last_seq(), a.last_seq);
    tx.writes().ChangeWorker(change);
    pb::Event e = NewEvent(type, a.task_id, finished.worker_id(), a.workspace_id);
    e.set_status(worker_state);
    e.set_exit_code(finished.exit_code());
    e.set_text(finished.error_message());
    if (finished.has_artifacts()) {
      PgBrokerStore::SetArtifacts(tx.sql(), a.task_id, artifacts_json);
      *e.mutable_data() = artifacts_data;
    }
    if (finished.artifacts().cost_usd() > 0) ChargeInTx(tx, runner_id, a, finished.artifacts().cost_usd());
    if (session.has_value() && session->task_id == a.task_id) {
      PgBrokerStore::SaveSession(tx.sql(), *session);
    }
    tx.Append(std::move(e));
    const std::string worker_id = finished.worker_id();
    tx.OnCommit([this, runner_id, worker_id, ack, a] {
      {
        absl::MutexLock lock(&mu_);
        attached_.erase(worker_id);
      }
      scheduler_.Release(runner_id);
      Send(runner_id, ack);
      ClaimFor(runner_id);
      WakeWaitersFor(a.workspace_id, a.task_id, a.concurrency_key);
    });
    return absl::OkStatus();
  }, [this, runner_id, worker_id = message.worker_id(), epoch = message.epoch(),
      last_seq = message.last_seq(), ack_up_to = FinishedAckSeq(message)](absl::Status status) {
    if (!status.ok()) {
      OnNotStored(runner_id, worker_id, epoch, last_seq, ack_up_to, /*finished=*/true, status);
    }
  }, message.ByteSizeLong());
}

void Dispatcher::ChargeInTx(JournalTx& tx, const std::string& runner_id, const Attached& a,
                            double cost_usd) {
  std::optional<RunnerSlot> runner = scheduler_.Get(runner_id);
  if (!runner || runner->account_id.empty()) return;
  const double total = PgBrokerStore::AddCost(tx.sql(), runner->account_id, cost_usd);
  const double limit = runner->account_max_cost_per_day;
  if (limit <= 0 || total < limit) return;
  const std::string text =
      absl::StrFormat("account %s spent $%.4f of its $%.4f a day: its runners take no agent tasks "
                      "until the day (UTC) is over",
                      runner->account_id, total, limit);
  // Told with the task that reached the limit.
  pb::Event e = NewEvent("budget", a.task_id, "", a.workspace_id);
  e.set_text(text);
  tx.Append(std::move(e));
  tx.OnCommit([this, account_id = runner->account_id, text] {
    Log()->info("{}", text);
    scheduler_.SetSpent(account_id, TodayUtc());
  });
}

void Dispatcher::RefreshAccount(
    const std::string& account_id,
    std::function<absl::StatusOr<RunnerSlot>(const RunnerSlot&)> reauth) {
  bool changed = false;
  for (const RunnerSlot& runner : scheduler_.Runners()) {
    if (!account_id.empty() && runner.account_id != account_id) continue;
    absl::StatusOr<RunnerSlot> fresh = reauth(runner);
    if (!fresh.ok()) {
      if (fresh.status().code() == absl::StatusCode::kUnauthenticated) {
        Log()->info("runner={} key no longer valid; closing its stream", runner.name);
        if (auto link = Link(runner.runner_id)) link->Close(fresh.status());
      }
      continue;
    }
    scheduler_.UpdateAccess(fresh->account_id, fresh->access);
    changed = true;
  }
  if (changed) ClaimForAll();
}

void Dispatcher::ArmHeartbeatCheck() {
  heartbeat_timer_.expires_after(std::chrono::milliseconds(options_.heartbeat_interval_ms));
  heartbeat_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const auto limit = std::chrono::milliseconds(options_.heartbeat_interval_ms *
                                                 options_.missed_heartbeats);
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<RunnerLink>> silent;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [runner_id, runner] : connected_) {
        if (now - runner.last_seen > limit) silent.push_back(runner.link);
      }
    }
    for (auto& link : silent) link->Close(absl::DeadlineExceededError("missed heartbeats"));
    // A new day lifts the accounts' spent budgets.
    if (const std::string today = TodayUtc(); today != budget_day_) {
      const bool first = budget_day_.empty();
      budget_day_ = today;
      if (!first) ClaimForAll();
    }
    ArmHeartbeatCheck();
  });
}

}  // namespace buildd::broker
