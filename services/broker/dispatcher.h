#ifndef BUILDD_SERVICES_BROKER_DISPATCHER_H_
#define BUILDD_SERVICES_BROKER_DISPATCHER_H_

// Placement and the runner protocol: creates tasks and pushes each to a free
// eligible runner in the same transaction, claims pending tasks when a slot
// frees, records what runners report (de-duplicated by seq, fenced by
// epoch), acks it once durable, and requeues the work of runners that do
// not come back within the lease grace period. Every write goes through the
// journal; the state it works from has its own owners: the runner registry,
// the worker table, the budget. Thread-safe.

#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "buildd/v1/broker.pb.h"
#include "buildd/v1/runner.pb.h"
#include "services/broker/broker_store.h"
#include "services/broker/budget.h"
#include "services/broker/journal.h"
#include "services/broker/leases.h"
#include "services/broker/recorder.h"
#include "services/broker/runner_registry.h"
#include "services/broker/waiting.h"
#include "services/broker/worker_table.h"

namespace buildd::broker {

struct DispatcherOptions {
  // How long a runner that lost its stream keeps its work.
  int lease_grace_ms = 30000;
  int heartbeat_interval_ms = 10000;
  // Runners silent for this many intervals are cut off.
  int missed_heartbeats = 3;
  // A task whose runner has not accepted it by then goes back to the queue.
  int accept_timeout_ms = 30000;
  // Runner streams one key may hold at once.
  int max_streams_per_key = 64;
  // This replica, among those on one database (a new id per process).
  std::string broker_id;
};

class Dispatcher {
 public:
  // `pool` runs reads too large or slow for the journal's thread.
  Dispatcher(Journal& journal, BrokerStore& store, boost::asio::io_context& timers,
             boost::asio::thread_pool& pool, DispatcherOptions options);
  ~Dispatcher();

  // Registers this replica, counts pending tasks and adopts the work of
  // replicas that are gone (an earlier process of this one too), arming
  // their lease timers. REQUIRES: called once before use.
  absl::Status Start();
  // Cancels the timers, and leaves: other replicas adopt what this one
  // held at once. REQUIRES: before the timers' context stops and the
  // journal stops.
  void Stop();

  // Events another replica committed (EventFeed): a task that became
  // pending or ended there may be one for this replica's free runners.
  void OnCommittedElsewhere(const std::vector<pb::Event>& events);

  // Stores `task` (fields validated by the caller) and, when a runner is
  // free, assigns it in the same transaction and pushes it after commit.
  // With `delivery_id` (a GitHub webhook's), the delivery is recorded with
  // the task: AlreadyExists, and no task, when it was recorded before.
  // `also`: events of other tasks (the one it retries) written with it.
  void CreateTask(TaskRecord task, std::function<void(absl::StatusOr<TaskRecord>)> done,
                  std::string delivery_id = "", std::vector<pb::Event> also = {});
  // Why each of these pending tasks waits (waiting.h), in order: from this
  // replica's runners, their loads and budgets, and the store (a read for
  // each task whose concurrency key is not its own), told to `viewer` (see
  // WhyWaiting in waiting.h). Blocks on the reads: call it from a pool
  // thread.
  absl::StatusOr<std::vector<Waiting>> WhyWaiting(const std::vector<const TaskRecord*>& pending,
                                                  const std::string& viewer);
  // Cancels a pending task at once, or asks the runner of a running one.
  absl::StatusOr<TaskRecord> CancelTask(const std::string& task_id);
  // Sends a control to the runner holding the worker, through the other
  // replicas when none of this one's runners holds it.
  absl::Status Control(const std::string& worker_id, pb::Control::Action action,
                       const std::string& text);
  // A control another replica passed on: sent when this one holds the
  // worker's runner.
  void OnControlElsewhere(const pb::Control& control);

  // A runner said Hello: registers it (ResourceExhausted when its key holds
  // too many streams), re-attaches the work it resumes, then sends Welcome
  // and claims pending tasks for it. Blocks on a read of its account's
  // spending: call it from a pool thread.
  absl::Status Connect(ConnectedRunner runner, const pb::Hello& hello);
  void Disconnect(const std::string& runner_id);
  // Gives `runner` (connected) back the workers it resumes, when its
  // account holds their lease; `done` gets the ids it may not resume.
  void Reattach(const RunnerSlot& runner, std::vector<pb::ResumeWorker> resume,
                std::function<void(absl::Status, std::vector<std::string> stale)> done);

  // A task assigned by ClaimNow, with its new worker.
  struct Claimed {
    TaskRecord task;
    WorkerRecord worker;
  };
  // Claims up to `n` pending tasks for `runner_id` now, within its
  // account's limits, by the same rules as pushed work: for a runner that
  // asks for work (a polling agent, whose slot has no room of its own, so
  // that nothing is pushed to it). Its workers count as accepted.
  // `only_workspace`, when set, narrows this claim to that workspace.
  void ClaimNow(const std::string& runner_id, int n, const std::string& only_workspace,
                std::function<void(absl::StatusOr<std::vector<Claimed>>)> done);
  // Assigns pending task `task_id` to the connected runner with id or name
  // `runner` by hand (POST /api/workers): the choice stands in for the
  // task's runnerPreference and labels, while grants, providers, the
  // runner's room, its account's limits and the concurrency key hold. The
  // worker waits, idle, until StartWorker sends it.
  void AssignByHand(const std::string& task_id, const std::string& runner,
                    std::function<void(absl::StatusOr<WorkerRecord>)> done);
  // Sends an idle worker AssignByHand made to its runner.
  absl::Status StartWorker(const std::string& worker_id);

  std::optional<RunnerSlot> RunnerSlotOf(const std::string& runner_id) const {
    return registry_.Slot(runner_id);
  }
  // Takes what the runner sent (moved: an event's text is not copied).
  void OnMessage(const std::string& runner_id, pb::RunnerMessage message);
  // Whether the journal has room for more of the runners' messages; when
  // not, `when_room` runs once it has (see Journal::HasRoom).
  bool HasRoom(std::function<void()> when_room) { return journal_.HasRoom(std::move(when_room)); }
  // The account's grants, keys or limits changed ("" for every account):
  // `reauth` gives a runner's access anew from its key. A runner whose key
  // stopped working is disconnected. Blocks: call it off gRPC's threads.
  void RefreshAccount(const std::string& account_id,
                      const std::function<absl::StatusOr<RunnerAccess>(const std::string& key)>& reauth);

  // The runners connected to this replica now, and those every replica
  // connects, the others' as each last told (at most a heartbeat interval
  // old); oldest connection first.
  pb::ListRunnersResponse LocalRunners() const;
  absl::StatusOr<std::vector<pb::RunnerInfo>> AllRunners();

  int64_t pending_hint() const { return pending_; }
  const WorkerTable& workers() const { return workers_; }
  const RunnerRegistry& runners() const { return registry_; }

 private:
  // Inside a journal op: assigns `task` to `runner`, storing the task (or
  // updating it when `stored`) and its new worker; the worker counts
  // against the runner from here on (until the op aborts).
  // With `hold`, the Assign is kept for StartWorker instead of sent.
  WorkerRecord AssignInTx(JournalTx& tx, TaskRecord& task, const RunnerSlot& runner, bool stored,
                          bool hold = false);
  // Cancels a worker AssignByHand made that was not started (and its
  // task); false when there is none.
  bool CancelHeld(const std::string& worker_id);
  // Where an Assign's agent session comes from: the task it resumes from
  // (resumeFrom), and for a retried plan-first task itself, whose
  // checkpoint wins. Both empty: none.
  struct SessionSource {
    std::string resume_from;
    std::string checkpoint_of;
  };
  // Sends `message` (an Assign) with its session and starts the runner's
  // time to accept it.
  void SendAssign(const std::string& runner_id, const std::string& worker_id, int64_t epoch,
                  SessionSource session, pb::BrokerMessage message);
  // The least loaded runner that may take `route` now.
  std::optional<RunnerSlot> Place(const TaskRoute& route);
  // Free slots of a runner now (its own, within its account's limit).
  int FreeSlotsOf(const RunnerSlot& runner);
  // Claims for the runner when this replica knows of pending tasks.
  void ClaimFor(const std::string& runner_id);
  // Claims for the runner.
  void Claim(const std::string& runner_id);
  void ClaimForAll();
  // After task `task_id` with `key` ended: when a pending task of the
  // workspace has that key, every runner with room claims. Reads off the
  // journal's thread; a task's own default branch is looked up only when a
  // task was seen waiting for it.
  void WakeWaitersFor(const std::string& workspace_id, const std::string& task_id,
                      const std::string& key);
  // Tasks entering (+) or leaving (−) the pending state with this op.
  void CountPending(JournalTx& tx, int64_t delta);
  void OnAccept(const std::string& runner_id, const pb::Accept& accept);
  // Takes a worker its runner has not started (refused, or no Accept in
  // time) off that runner and puts its task back in the queue. `refused`:
  // the runner said no, and the attempt does not count.
  void GiveBack(const std::string& runner_id, const std::string& worker_id, int64_t epoch,
                const std::string& reason, bool refused);
  // The runner's time to accept the worker is over: if it has not, the
  // task goes back to the queue.
  void AcceptDue(const std::string& runner_id, const std::string& worker_id, int64_t epoch);
  // Closes the streams of runners silent for missed_heartbeats intervals.
  void CloseSilentRunners();
  // Says this replica is alive and adopts the live workers of replicas
  // that are not (their lease grace starts here).
  void AdoptOrphans();
  // Tells the other replicas this one's runners now (BeatBroker), after a
  // runner came, went or drains; one such write waits at a time.
  void PublishRunners();
  // The ending of a worker has been committed: frees its slot.
  void Ended(const std::string& runner_id, const LiveWorker& worker);
  // The lease grace of these workers is over: those whose runner did not
  // come back lose their attempt.
  void ExpireWorkers(const std::vector<std::string>& worker_ids);
  void Send(const std::string& runner_id, pb::BrokerMessage message);
  // Control() of a worker this replica does not hold (checked in the store).
  absl::Status ControlElsewhere(pb::Control control);
  // The workspace, from this replica's cache or the store (workspaces do
  // not change).
  absl::StatusOr<WorkspaceRecord> Workspace(const std::string& id);

  Journal& journal_;
  BrokerStore& store_;
  boost::asio::thread_pool& pool_;
  const DispatcherOptions options_;
  RunnerRegistry registry_;
  WorkerTable workers_;
  Budget budget_;
  Leases leases_;
  Recorder recorder_;
  std::atomic<int64_t> pending_{0};
  std::atomic<uint64_t> turn_{0};
  std::atomic<bool> publish_queued_{false};

  absl::Mutex mu_;
  // (workspace, key) of tasks created behind an unfinished one; a key leaves
  // when no pending task has it any more.
  std::set<std::pair<std::string, std::string>> waited_for_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkspaceRecord> workspaces_ ABSL_GUARDED_BY(mu_);
  // Workers assigned by hand that wait for StartWorker: their Assign.
  struct HeldAssign {
    std::string runner_id;
    int64_t epoch = 0;
    SessionSource session;
    pb::BrokerMessage message;
  };
  std::map<std::string, HeldAssign> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_DISPATCHER_H_
