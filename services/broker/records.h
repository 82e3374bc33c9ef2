#ifndef BUILDD_SERVICES_BROKER_RECORDS_H_
#define BUILDD_SERVICES_BROKER_RECORDS_H_

// The broker's domain records: what the store keeps and the dispatcher
// works with. Plain values; no storage and no wire types beyond the task as
// the client described it and the event as it is published.

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "buildd/v1/common.pb.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

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

// What routing needs to know about a task.
struct TaskRoute {
  std::string task_id;
  std::string workspace_id;
  std::string runner_preference;  // any | user | service | action
  std::vector<std::string> required_labels;
  std::string provider;
};

// Unfinished tasks of one route (task_id empty), waiting or not.
struct QueueGroup {
  TaskRoute route;
  bool pending = false;  // else assigned, running or waiting for input
  int64_t tasks = 0;
};

// The pending tasks of one provider and label set (GetQueue).
struct PendingGroup {
  std::string provider;
  std::vector<std::string> labels;  // sorted
  int64_t tasks = 0;
  // The one created first (ties: the lower id).
  std::string oldest_task_id;
  std::string oldest_created_at;
};

struct TaskRecord {
  std::string id;
  // The task as the client described it: parsed once at the broker's edge,
  // never changed afterwards, shared by every copy of the record. The
  // routing fields below are derived from it (FromSpec) and stored as
  // columns next to it.
  std::shared_ptr<const pb::Task> spec;
  std::string workspace_id;
  std::string runner_preference = "any";
  std::vector<std::string> required_labels;
  std::string provider;
  int priority = 0;
  int max_attempts = 3;
  // Tasks of a workspace with the same key run one at a time, oldest
  // first: the task's concurrencyKey, else its work branch.
  std::string concurrency_key;
  std::string created_by;

  // The broker's state of the task.
  std::string state = "pending";
  int attempts = 0;
  int64_t epoch = 0;
  std::string worker_id;
  int exit_code = 0;
  std::string error;
  std::string created_at;
  std::string updated_at;
  // Artifacts in the protobuf JSON mapping; empty until an attempt finished.
  std::string artifacts_json;
  // The task's own credentials, sealed (BrokerStore::SealTaskCredentials);
  // never part of `spec`. Empty: none.
  std::string sealed_credentials;

  // A new task `id` of `created_by` from the client's (validated)
  // description; a task that names no work branch gets its own.
  static TaskRecord FromSpec(const std::string& id, pb::Task spec, const std::string& created_by);
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

struct WorkerRecord {
  std::string id;
  std::string task_id;
  std::string workspace_id;
  std::string account_id;
  std::string runner_id;
  std::string runner_name;
  // The broker replica holding its runner's stream (its lease's owner).
  std::string broker_id;
  std::string state = "idle";
  int64_t epoch = 0;
  int64_t last_seq = 0;
  int exit_code = 0;
  std::string error;
  std::string created_at;
  std::string updated_at;
};

// A worker that is not done, with what the dispatcher needs of its task.
struct LiveWorker {
  std::string worker_id;
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

// A state change of a worker (and, when task_state is set, of its task),
// fenced by epoch: a change for an older epoch changes nothing. Unset
// fields keep their value.
struct WorkerChange {
  std::string worker_id;
  int64_t epoch = 0;
  std::string worker_state;  // "" keeps it
  std::string task_state;    // "" leaves the task alone
  std::optional<int> exit_code;
  std::optional<std::string> error;
  int64_t seq = 0;  // events durable up to here
};

// Row writes collected from journal operations and written together at the
// end of a batch: task inserts, worker inserts, then worker (and task)
// changes, merged per worker in order. Not thread-safe.
class WriteBatch {
 public:
  void InsertTask(TaskRecord t) { tasks_.push_back(std::move(t)); }
  void InsertWorker(WorkerRecord w) { workers_.push_back(std::move(w)); }
  void ChangeWorker(const WorkerChange& change);
  // Appends `other`'s writes after this one's and empties `other`.
  void MergeFrom(WriteBatch& other);
  bool empty() const { return tasks_.empty() && workers_.empty() && changes_.empty(); }
  void Clear();

  const std::vector<TaskRecord>& tasks() const { return tasks_; }
  const std::vector<WorkerRecord>& workers() const { return workers_; }
  // One per worker, in first-change order.
  const std::vector<WorkerChange>& changes() const { return changes_; }

 private:
  std::vector<TaskRecord> tasks_;
  std::vector<WorkerRecord> workers_;
  std::vector<WorkerChange> changes_;
};

// What pending tasks a runner may take now (see Eligible in placement.h,
// which states the same rule for one task).
struct ClaimFilter {
  bool claim_all = false;
  std::set<std::string> claim_workspaces;
  std::set<std::string> only_workspaces;  // none: any
  std::string only_task;                  // "": any
  std::string account_type;
  std::set<std::string> labels;
  std::set<std::string> providers;  // available now (budget applied)
};

// A task's agent session: the transcript in plain, as runners send it.
struct AgentSession {
  std::string task_id;
  std::string provider;
  std::string session_id;
  std::string data;  // empty unless asked for
  // A checkpoint (the session as its plan was approved, before coding):
  // the prompt the coding continues with, and the plan. Both empty for the
  // session a task ended with.
  std::string continue_prompt;
  std::string plan;
};

// The stored form of a session: its transcript sealed (bytes).
struct SealedSession {
  std::string task_id;
  std::string provider;
  std::string session_id;
  std::string sealed;
  std::string continue_prompt;
  std::string plan;
};

// Which events a subscriber wants.
struct EventFilter {
  std::string workspace_id;
  std::string task_id;
  std::string worker_id;
  // Empty: every workspace (admins). Otherwise only these.
  std::optional<std::set<std::string>> allowed_workspaces;
  // Only the events of tasks whose work branch this is. Matches() cannot
  // tell (an event does not name its branch): the reader resolves it.
  std::string branch;

  // Every condition but `branch`.
  bool Matches(const pb::Event& e) const;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_RECORDS_H_
