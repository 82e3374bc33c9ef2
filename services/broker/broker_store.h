#ifndef BUILDD_SERVICES_BROKER_BROKER_STORE_H_
#define BUILDD_SERVICES_BROKER_BROKER_STORE_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <soci/soci.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "buildd/v1/common.pb.h"
#include "buildd/v1/runner.pb.h"
#include "common/db.h"
#include "common/secret_box.h"
#include "services/broker/scheduler.h"

namespace buildd::broker {

struct WorkspaceRecord {
  std::string id;
  std::string name;
  std::string repo_url;
  std::string default_branch;
  std::string created_by;
  std::string created_at;
  // "" or "none" (no network for its tasks).
  std::string network;
};

struct TaskRecord {
  std::string id;
  std::string workspace_id;
  std::string runner_preference = "any";
  std::vector<std::string> required_labels;
  std::string provider;
  int priority = 0;
  std::string state = "pending";
  int attempts = 0;
  int max_attempts = 3;
  int64_t epoch = 0;
  std::string worker_id;
  int exit_code = 0;
  std::string error;
  // The task as the client described it (protobuf JSON of Task).
  std::string spec_json;
  std::string created_by;
  std::string created_at;
  std::string updated_at;
  // Artifacts in the protobuf JSON mapping; empty until an attempt finished.
  std::string artifacts_json;
  // Tasks of a workspace with the same key run one at a time, oldest
  // first: the task's concurrencyKey, else its work branch.
  std::string concurrency_key;

  // The work branch of a task that names none.
  static std::string DefaultWorkBranch(const std::string& task_id) {
    return "buildd/" + task_id.substr(0, 8);
  }
  // Whether the key is the task's own default branch, which no other task
  // shares (so there is nothing to wait for).
  bool KeyIsOwn() const { return concurrency_key == DefaultWorkBranch(id); }

  TaskRoute Route() const {
    return TaskRoute{id, workspace_id, runner_preference, required_labels, provider};
  }
};

// A task's agent session as stored: its transcript sealed, in base64 (how
// bytea travels through SOCI).
struct SealedSession {
  std::string task_id;
  std::string provider;
  std::string session_id;
  std::string sealed_base64;
};

struct WorkerRecord {
  std::string id;
  std::string task_id;
  std::string workspace_id;
  std::string account_id;
  std::string runner_id;
  std::string runner_name;
  std::string state = "idle";
  int64_t epoch = 0;
  int64_t last_seq = 0;
  int exit_code = 0;
  std::string error;
  std::string created_at;
  std::string updated_at;
};

// A state change of a worker (and, when task_state is set, of its task),
// fenced by epoch. Unset fields keep their value.
struct WorkerChange {
  std::string worker_id;
  int64_t epoch = 0;
  std::string worker_state;  // "" keeps it
  std::string task_state;    // "" leaves the task alone
  std::optional<int> exit_code;
  std::optional<std::string> error;
  int64_t seq = 0;  // events durable up to here
};

// Row writes collected from journal operations and written with one
// statement per kind for a whole batch: task inserts, worker inserts, then
// worker (and task) changes, merged per worker in order. Not thread-safe.
class BatchedWrites {
 public:
  void InsertTask(const TaskRecord& t) { tasks_.push_back(t); }
  void InsertWorker(const WorkerRecord& w) { workers_.push_back(w); }
  void ChangeWorker(const WorkerChange& change);
  // Appends `other`'s writes after this one's.
  void MergeFrom(BatchedWrites& other);
  bool empty() const { return tasks_.empty() && workers_.empty() && changes_.empty(); }
  // Writes everything, and `events` (may be null) with ids drawn from the
  // event counter, in one statement; sets the events' ids and forgets the
  // writes. Returns the last event id. Throws soci errors.
  int64_t Flush(soci::session& sql, std::vector<::buildd::v1::Event>* events = nullptr);

 private:
  std::vector<TaskRecord> tasks_;
  std::vector<WorkerRecord> workers_;
  std::vector<WorkerChange> changes_;  // one per worker, in first-change order
};

// Which events a subscriber wants.
struct EventFilter {
  std::string workspace_id;
  std::string task_id;
  std::string worker_id;
  // Empty: every workspace (admins). Otherwise only these.
  std::optional<std::set<std::string>> allowed_workspaces;

  bool Matches(const ::buildd::v1::Event& e) const;
};

// The broker's tables on PostgreSQL. Reads take a pooled session; writes
// take the journal's session (they run inside its transaction). Thread-safe.
class PgBrokerStore {
 public:
  // `sessions` seals session transcripts at rest.
  PgBrokerStore(soci::connection_pool& pool, SecretBox sessions)
      : pool_(pool), sessions_(std::move(sessions)) {}

  absl::StatusOr<WorkspaceRecord> GetWorkspace(const std::string& id);
  absl::StatusOr<std::vector<WorkspaceRecord>> ListWorkspaces(
      const std::optional<std::set<std::string>>& only);
  absl::StatusOr<TaskRecord> GetTask(const std::string& id);
  absl::StatusOr<std::vector<TaskRecord>> ListTasks(
      const std::string& workspace_id, const std::string& state, int limit,
      const std::optional<std::set<std::string>>& only);
  absl::StatusOr<WorkerRecord> GetWorker(const std::string& id);
  absl::StatusOr<std::vector<WorkerRecord>> ListWorkers(
      const std::string& task_id, const std::string& workspace_id,
      const std::optional<std::set<std::string>>& only);
  // Events with after_id < id <= up_to_id in id order, at most `limit`,
  // filtered (in the query, so a filter that matches little scans little).
  absl::StatusOr<std::vector<::buildd::v1::Event>> ReadEvents(
      int64_t after_id, const EventFilter& filter, int limit,
      int64_t up_to_id = std::numeric_limits<int64_t>::max());
  absl::StatusOr<int64_t> LastEventId();
  // Whether a pending task of `workspace_id` has concurrency key `key`.
  absl::StatusOr<bool> HasPendingWithKey(const std::string& workspace_id,
                                         const std::string& key) const;

  // The stored session of a task, with its transcript when `with_data`.
  // DataLoss when the transcript does not open under the session key.
  absl::StatusOr<std::optional<::buildd::v1::SessionSnapshot>> GetSession(
      const std::string& task_id, bool with_data = false) const;

  // Writes, inside a journal transaction. They throw soci errors.
  static void InsertWorkspace(soci::session& sql, const WorkspaceRecord& w);
  static void UpdateTask(soci::session& sql, const TaskRecord& t);
  static void UpdateWorker(soci::session& sql, const WorkerRecord& w);
  static std::optional<TaskRecord> LockTask(soci::session& sql, const std::string& id);
  static std::optional<WorkerRecord> LockWorker(soci::session& sql, const std::string& id);
  static std::optional<WorkspaceRecord> FindWorkspace(soci::session& sql, const std::string& id);
  static void SetArtifacts(soci::session& sql, const std::string& task_id,
                           const std::string& artifacts_json);
  // Adds to what the account spent today (UTC); returns the day's total.
  static double AddCost(soci::session& sql, const std::string& account_id, double cost_usd);
  static double CostToday(soci::session& sql, const std::string& account_id);
  // The stored form of the session a task ended with: its transcript
  // sealed. Made off the journal's thread (a transcript can be megabytes).
  SealedSession SealSession(const ::buildd::v1::SessionSnapshot& snapshot) const;
  // Stores (or replaces) it.
  static void SaveSession(soci::session& sql, const SealedSession& session);
  // Whether a task of `workspace_id` with concurrency key `key` is
  // unfinished (pending, assigned, running or waiting for input).
  static bool KeyIsBusy(soci::session& sql, const std::string& workspace_id, const std::string& key);
  // Locks up to `n` pending tasks `runner` may take, best first, skipping
  // rows other replicas hold and tasks whose concurrency key is held by an
  // active task or an earlier pending one.
  static std::vector<TaskRecord> ClaimPending(soci::session& sql, const RunnerSlot& runner, int n);

 private:
  absl::StatusOr<std::optional<::buildd::v1::SessionSnapshot>> FindSession(
      soci::session& sql, const std::string& task_id, bool with_data) const;

  soci::connection_pool& pool_;
  const SecretBox sessions_;
};

const std::vector<Migration>& BrokerMigrations();

// JSON array text of strings, and back.
std::string LabelsToJson(const std::vector<std::string>& labels);
std::vector<std::string> LabelsFromJson(const std::string& json);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_BROKER_STORE_H_
