#ifndef BUILDD_SERVICES_BROKER_BROKER_STORE_H_
#define BUILDD_SERVICES_BROKER_BROKER_STORE_H_

// The broker's store contract: what it keeps (workspaces, tasks, workers,
// events, costs, agent sessions) and how it is written. Every
// implementation passes tests/broker/store_contract_test.cc.

#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "buildd/v1/broker.pb.h"
#include "services/broker/records.h"
#include "services/broker/task_credentials.h"

namespace buildd::broker {

// What one transaction of the single writer may do besides the batched
// writes (see Journal). Every method throws on a store failure; the
// journal then rolls back.
class StoreTx {
 public:
  virtual ~StoreTx() = default;

  // The row, locked until the transaction ends.
  virtual std::optional<TaskRecord> LockTask(const std::string& id) = 0;
  virtual std::optional<WorkerRecord> LockWorker(const std::string& id) = 0;
  // Writes the task's state, attempts, epoch, worker, exit code and error.
  virtual void UpdateTask(const TaskRecord& t) = 0;
  // Writes the worker's state, last seq, exit code, error and runner.
  virtual void UpdateWorker(const WorkerRecord& w) = 0;
  // Pending to canceled: the canceled task, or nullopt when it is not
  // pending (any more).
  virtual std::optional<TaskRecord> CancelPending(const std::string& task_id) = 0;
  virtual void InsertWorkspace(const WorkspaceRecord& w) = 0;
  virtual void SetArtifacts(const std::string& task_id, const std::string& artifacts_json) = 0;
  // Adds to what the account spent today (UTC); returns the day's total.
  virtual double AddCost(const std::string& account_id, double cost_usd) = 0;
  // Records GitHub's webhook delivery `delivery_id` (X-GitHub-Delivery)
  // with the task it asks for; false when some replica recorded it before
  // (a redelivery).
  virtual bool RecordDelivery(const std::string& delivery_id) = 0;
  // Stores (or replaces) the session a task ended with, or its checkpoint.
  virtual void SaveSession(const SealedSession& session) = 0;
  // Whether a task of `workspace_id` with concurrency key `key`, other than
  // `except_task_id`, is unfinished (pending, assigned, running or waiting
  // for input).
  virtual bool KeyIsBusy(const std::string& workspace_id, const std::string& key,
                         const std::string& except_task_id = "") = 0;
  // Locks up to `n` pending tasks the filter allows, best first (priority,
  // then age), skipping rows other writers hold and tasks whose concurrency
  // key is held by an unfinished task or an earlier pending one.
  virtual std::vector<TaskRecord> ClaimPending(const ClaimFilter& filter, int n) = 0;
  // Moves a live worker to `runner_id` on replica `broker_id` when
  // `account_id` holds its lease at `epoch`, and returns it; nullopt
  // otherwise. Another replica's worker moves here too (its runner came
  // over).
  virtual std::optional<LiveWorker> Reattach(const std::string& worker_id, int64_t epoch,
                                             const std::string& account_id,
                                             const std::string& runner_id,
                                             const std::string& broker_id) = 0;

  // A person's message to a worker (its attachments with their data), and
  // a comment on a task's artifact; their ids and times are set.
  virtual void InsertMessage(const pb::Message& message) = 0;
  virtual void InsertComment(const pb::Comment& comment) = 0;

  // Replica `broker_id` is alive now (registered when it is new), with the
  // runners connected to it (`runners_json`: a ListRunnersResponse as JSON),
  // which every replica lists.
  virtual void BeatBroker(const std::string& broker_id, const std::string& runners_json) = 0;
  // Replica `broker_id` is going away: its workers are adopted at once.
  virtual void LeaveBrokers(const std::string& broker_id) = 0;
  // Makes `broker_id` the owner of the live workers whose replica is gone
  // (not seen for `dead_after_ms`, or none recorded), and returns them.
  virtual std::vector<LiveWorker> AdoptOrphans(const std::string& broker_id, int64_t dead_after_ms) = 0;
};

// What the broker replicas on one store tell each other: events committed
// up to an id, or a control for a worker whose runner another one holds.
struct ReplicaNotice {
  std::string from;  // the replica (BrokerStore's replica id)
  int64_t committed_up_to = 0;
  std::string control;  // pb::Control in JSON, when set
};

// A connection that receives the notices of every replica (this one's
// too). Not thread-safe, except Interrupt.
class ReplicaListener {
 public:
  virtual ~ReplicaListener() = default;
  // Waits up to `timeout` for notices (none on timeout or Interrupt);
  // Unavailable when the connection is lost (listen again, then read what
  // was committed meanwhile).
  virtual absl::StatusOr<std::vector<ReplicaNotice>> Wait(absl::Duration timeout) = 0;
  // Ends a Wait now (from any thread).
  virtual void Interrupt() = 0;
};

// The single writer's connection (see Journal). Not thread-safe.
class StoreWriter : public StoreTx {
 public:
  // Opens a transaction: what follows, and the next Write, commit together.
  virtual void Begin() = 0;
  virtual void Commit() = 0;
  virtual void Rollback() = 0;
  // Writes `batch`, then `events` (may be null) with ids drawn from the
  // store's gap-free counter, which it sets on them; empties `batch`.
  // Outside a transaction this commits by itself. A worker change applies
  // only at the worker's epoch, and to its task only at the task's epoch.
  virtual void Write(WriteBatch& batch, std::vector<pb::Event>* events) = 0;
  // The status a failure thrown by this writer stands for: Unavailable
  // when the store cannot be reached (the writer then reconnects).
  virtual absl::Status StatusOf(const std::exception& e) = 0;
  virtual void Reconnect() = 0;
};

// Reads, from any thread, and the writer. Thread-safe.
class BrokerStore {
 public:
  virtual ~BrokerStore() = default;

  virtual absl::StatusOr<WorkspaceRecord> GetWorkspace(const std::string& id) = 0;
  // Every workspace, or only those in `only`, oldest first.
  virtual absl::StatusOr<std::vector<WorkspaceRecord>> ListWorkspaces(
      const std::optional<std::set<std::string>>& only) = 0;
  virtual absl::StatusOr<TaskRecord> GetTask(const std::string& id) = 0;
  // Newest first; "" matches any workspace or state.
  virtual absl::StatusOr<std::vector<TaskRecord>> ListTasks(
      const std::string& workspace_id, const std::string& state, int limit,
      const std::optional<std::set<std::string>>& only) = 0;
  virtual absl::StatusOr<WorkerRecord> GetWorker(const std::string& id) = 0;
  // Oldest first, at most 1000.
  virtual absl::StatusOr<std::vector<WorkerRecord>> ListWorkers(
      const std::string& task_id, const std::string& workspace_id,
      const std::optional<std::set<std::string>>& only) = 0;
  // Events with after_id < id <= up_to_id in id order, at most `limit`,
  // filtered (in the query, so a filter that matches little scans little).
  virtual absl::StatusOr<std::vector<pb::Event>> ReadEvents(
      int64_t after_id, const EventFilter& filter, int limit,
      int64_t up_to_id = std::numeric_limits<int64_t>::max()) = 0;
  virtual absl::StatusOr<int64_t> LastEventId() = 0;
  // Whether a pending task of `workspace_id` has concurrency key `key`.
  virtual absl::StatusOr<bool> HasPendingWithKey(const std::string& workspace_id,
                                                 const std::string& key) = 0;
  virtual absl::StatusOr<int64_t> CountPending() = 0;
  // The unfinished tasks counted by route and by whether they wait.
  virtual absl::StatusOr<std::vector<QueueGroup>> Queue() = 0;
  // The pending tasks of `workspace_id` ("": any) among the workspaces in
  // `only` (none: all), grouped by provider and sorted label set; the group
  // whose oldest task is oldest first.
  virtual absl::StatusOr<std::vector<PendingGroup>> PendingGroups(
      const std::string& workspace_id, const std::optional<std::set<std::string>>& only) = 0;
  // Where each of these tasks that is pending stands among every pending
  // task, in the order ClaimPending takes them (priority, then age): 1 is
  // next. Tasks that are not pending are left out.
  virtual absl::StatusOr<std::map<std::string, int>> QueuePositions(
      const std::vector<std::string>& task_ids) = 0;
  // The unfinished task whose concurrency key keeps pending task `task`
  // from being claimed, as ClaimPending decides: one with that key that is
  // not pending (the oldest), else a pending one ahead of it; "" for none.
  virtual absl::StatusOr<std::string> KeyHolder(const TaskRecord& task) = 0;
  // What the account spent today (UTC).
  virtual absl::StatusOr<double> CostToday(const std::string& account_id) = 0;
  // The runners of the other replicas seen within `fresh_ms`, as each one
  // last told (BeatBroker).
  virtual absl::StatusOr<std::vector<pb::RunnerInfo>> OtherReplicasRunners(
      const std::string& broker_id, int64_t fresh_ms) = 0;
  // What each account that spent anything today (UTC) spent, by account.
  virtual absl::StatusOr<std::map<std::string, double>> CostsToday() = 0;

  // The messages people sent to the worker, oldest first (attachments
  // without their data), at most 1000.
  virtual absl::StatusOr<std::vector<pb::Message>> ListMessages(const std::string& worker_id) = 0;
  // Attachment `index` of a message, with its data; NotFound without one.
  virtual absl::StatusOr<pb::Attachment> GetAttachment(const std::string& message_id, int index) = 0;
  // The message's worker id; NotFound without one.
  virtual absl::StatusOr<std::string> MessageWorker(const std::string& message_id) = 0;
  // The comments on the task's artifacts, oldest first, at most 1000.
  virtual absl::StatusOr<std::vector<pb::Comment>> ListComments(const std::string& task_id) = 0;

  // The stored session of a task, with its transcript when `with_data`.
  // DataLoss when the transcript does not open under the session key.
  virtual absl::StatusOr<std::optional<AgentSession>> GetSession(const std::string& task_id,
                                                                 bool with_data = false) = 0;
  // The stored form of a session: its transcript sealed (CPU-heavy for a
  // large transcript: not for the writer's thread).
  virtual SealedSession SealSession(const AgentSession& session) const = 0;
  // The stored form of a task's own credentials ("" for none), bound to
  // the task, and back: DataLoss when they do not open for the task.
  virtual std::string SealTaskCredentials(const std::string& task_id,
                                          const CredentialMap& credentials) const = 0;
  virtual absl::StatusOr<CredentialMap> OpenTaskCredentials(const TaskRecord& task) const = 0;

  // A connection for the single writer. Each of its commits with events
  // notifies every replica's listener.
  virtual absl::StatusOr<std::unique_ptr<StoreWriter>> OpenWriter() = 0;
  virtual absl::StatusOr<std::unique_ptr<ReplicaListener>> Listen() = 0;
  // Hands `control` (pb::Control in JSON) to the listeners of every replica.
  virtual absl::Status NotifyControl(const std::string& control) = 0;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_BROKER_STORE_H_
