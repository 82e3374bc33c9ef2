#ifndef BUILDD_SERVICES_BROKER_DISPATCHER_H_
#define BUILDD_SERVICES_BROKER_DISPATCHER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "buildd/v1/runner.pb.h"
#include "services/broker/broker_store.h"
#include "services/broker/journal.h"
#include "services/broker/scheduler.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

// The broker's side of one runner stream, as the dispatcher sees it.
// Implementations must not block. Thread-safe.
class RunnerLink {
 public:
  virtual ~RunnerLink() = default;
  virtual void Send(pb::BrokerMessage message) = 0;
  // Ends the stream with `status` (after what is queued).
  virtual void Close(const absl::Status& status) = 0;
};

struct DispatcherOptions {
  // How long a runner that lost its stream keeps its work.
  int lease_grace_ms = 30000;
  int heartbeat_interval_ms = 10000;
  // Runners silent for this many intervals are cut off.
  int missed_heartbeats = 3;
  // A task whose runner has not accepted it by then goes back to the queue.
  int accept_timeout_ms = 30000;
};

// Scheduling and the life of tasks and workers: creates tasks and pushes
// them to a free eligible runner in the same transaction, claims pending
// tasks when a slot frees, records what runners report (with per-worker
// de-duplication by seq and fencing by epoch), acks it once durable, and
// requeues the work of runners that do not come back within the lease grace
// period. All writes go through the journal. Thread-safe.
class Dispatcher {
 public:
  // `pool` runs reads too large for the journal's thread.
  Dispatcher(Journal& journal, Scheduler& scheduler, PgBrokerStore& store,
             boost::asio::io_context& timers, boost::asio::thread_pool& pool,
             DispatcherOptions options);
  ~Dispatcher();

  // Counts pending tasks and arms lease timers for work left by runners of
  // an earlier broker process. REQUIRES: called once before use.
  absl::Status Start();

  // Stores `task` (fields validated by the caller) and, when a runner is
  // free, assigns it in the same transaction and pushes it after commit.
  void CreateTask(TaskRecord task, std::function<void(absl::StatusOr<TaskRecord>)> done);
  // Cancels a pending task at once, or asks the runner of a running one.
  absl::StatusOr<TaskRecord> CancelTask(const std::string& task_id);
  // Sends a control to the runner holding the worker.
  absl::Status Control(const std::string& worker_id, pb::Control::Action action,
                       const std::string& text);

  // A runner said Hello. Registers it, re-attaches the work it resumes, then
  // sends Welcome and claims pending tasks for it.
  // `credentials`: the runner's account's provider credentials, handed to
  // its tasks as environment.
  void Connect(RunnerSlot slot, std::shared_ptr<RunnerLink> link, const pb::Hello& hello,
               std::map<std::string, std::string> credentials = {});
  void Disconnect(const std::string& runner_id);
  void OnMessage(const std::string& runner_id, const pb::RunnerMessage& message);
  // Whether the journal has room for more of the runners' messages; when
  // not, `when_room` runs once it has (see Journal::HasRoom).
  bool HasRoom(std::function<void()> when_room) { return journal_.HasRoom(std::move(when_room)); }
  // The account's grants or keys changed ("" for every account).
  void RefreshAccount(const std::string& account_id,
                      std::function<absl::StatusOr<RunnerSlot>(const RunnerSlot&)> reauth);

  int64_t pending_hint() const { return pending_; }

 private:
  // A worker this replica dispatched or re-attached and that is not done.
  struct Attached {
    std::string runner_id;  // "" while its runner is away
    // The account whose runner holds the lease: only its streams resume it.
    std::string account_id;
    int64_t epoch = 0;
    std::string task_id;
    std::string workspace_id;
    int64_t last_seq = 0;
    std::string state;
    std::string concurrency_key;  // the task's
  };

  // Inside a journal op: assigns `task` to `runner`, whose slot is
  // reserved, storing the task (or updating it when `stored`) and its new
  // worker; returns the task as assigned.
  TaskRecord AssignInTx(JournalTx& tx, TaskRecord task, const RunnerSlot& runner, bool stored);
  void ClaimFor(const std::string& runner_id);
  void ClaimForAll();
  // After task `task_id` with `key` ended: when a pending task of the
  // workspace has that key, every runner with room claims (the one it
  // waited for may need another runner). Reads off the journal's thread. A
  // task's own default branch is looked up only when a task was seen
  // waiting for it.
  void WakeWaitersFor(const std::string& workspace_id, const std::string& task_id,
                      const std::string& key);
  // The worker `worker_id` when `runner_id` holds it at `epoch`.
  std::optional<Attached> AttachedTo(const std::string& runner_id, const std::string& worker_id,
                                     int64_t epoch);
  void OnAccept(const std::string& runner_id, const pb::Accept& accept);
  void OnReject(const std::string& runner_id, const pb::Reject& reject);
  // Takes a worker its runner has not started (refused, or no Accept in
  // time) off that runner and puts its task back in the queue. `refused`:
  // the runner said no, and the attempt does not count.
  void GiveBack(const std::string& runner_id, const std::string& worker_id, int64_t epoch,
                const std::string& reason, bool refused);
  void ArmAcceptTimer(const std::string& runner_id, const std::string& worker_id, int64_t epoch);
  // A runner's event or Finished that could not be stored: the worker gets
  // an error event in its place, and the runner its ack, so that nothing
  // waits on it; a database that is away closes the stream instead (the
  // runner replays it on the next). `seq`: the last seq it covers;
  // `ack_up_to`: what acknowledges it.
  void OnNotStored(const std::string& runner_id, const std::string& worker_id, int64_t epoch,
                   int64_t seq, int64_t ack_up_to, bool finished, const absl::Status& status);
  void OnEvent(const std::string& runner_id, const pb::RunnerEvent& event);
  void OnFinished(const std::string& runner_id, const pb::Finished& finished);
  void ExpireWorkers(std::vector<std::string> worker_ids);
  // Inside a journal op: adds what a finished worker cost to its runner's
  // account; at maxCostPerDay the account's runners stop taking agent tasks
  // for the rest of the UTC day (a "budget" event says so).
  void ChargeInTx(JournalTx& tx, const std::string& runner_id, const Attached& a, double cost_usd);
  void ArmLeaseTimer(std::vector<std::string> worker_ids);
  void ArmHeartbeatCheck();
  void Send(const std::string& runner_id, pb::BrokerMessage message);
  std::shared_ptr<RunnerLink> Link(const std::string& runner_id);
  // The workspace, from this replica's cache or the database.
  absl::StatusOr<WorkspaceRecord> WorkspaceIn(JournalTx& tx, const std::string& id);

  Journal& journal_;
  Scheduler& scheduler_;
  PgBrokerStore& store_;
  boost::asio::io_context& timers_;
  boost::asio::thread_pool& pool_;
  DispatcherOptions options_;
  boost::asio::steady_timer heartbeat_timer_;
  std::string budget_day_;  // touched by the heartbeat timer only
  std::atomic<int64_t> pending_{0};

  absl::Mutex mu_;
  // A runner with a stream to this replica.
  struct Connected {
    std::shared_ptr<RunnerLink> link;
    std::chrono::steady_clock::time_point last_seen;
    // Its account's provider credentials, for the tasks it takes.
    std::map<std::string, std::string> credentials;
  };
  std::map<std::string, Connected> connected_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Attached> attached_ ABSL_GUARDED_BY(mu_);
  // (workspace, key) of tasks created behind an unfinished one; a key leaves
  // when no pending task has it any more.
  std::set<std::pair<std::string, std::string>> waited_for_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkspaceRecord> workspaces_ ABSL_GUARDED_BY(mu_);
};

// The Task proto of a record: the client's fields from spec_json with the
// broker's state on top.
pb::Task TaskToProto(const TaskRecord& t);
// Sets the broker-owned fields (id, state, attempts, worker…) of `out`.
void ApplyTaskState(const TaskRecord& t, pb::Task* out);
pb::Worker WorkerToProto(const WorkerRecord& w);
pb::Workspace WorkspaceToProto(const WorkspaceRecord& w);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_DISPATCHER_H_
