#include "services/broker/records.h"

#include <algorithm>

namespace buildd::broker {

TaskRecord TaskRecord::FromSpec(const std::string& id, pb::Task spec,
                                const std::string& created_by) {
  TaskRecord t;
  t.id = id;
  if (spec.work_branch().empty()) spec.set_work_branch(DefaultWorkBranch(id));
  t.workspace_id = spec.workspace_id();
  t.runner_preference = pb::Task::RunnerPreference_Name(spec.runner_preference());
  t.required_labels.assign(spec.required_labels().begin(), spec.required_labels().end());
  t.provider = spec.provider();
  t.priority = spec.priority();
  t.max_attempts = spec.max_attempts();
  t.concurrency_key = spec.concurrency_key().empty() ? spec.work_branch() : spec.concurrency_key();
  t.created_by = created_by;
  t.spec = std::make_shared<const pb::Task>(std::move(spec));
  return t;
}

void WriteBatch::ChangeWorker(const WorkerChange& change) {
  for (WorkerChange& c : changes_) {
    if (c.worker_id != change.worker_id || c.epoch != change.epoch) continue;
    if (!change.worker_state.empty()) c.worker_state = change.worker_state;
    if (!change.task_state.empty()) c.task_state = change.task_state;
    if (change.exit_code) c.exit_code = change.exit_code;
    if (change.error) c.error = change.error;
    c.seq = std::max(c.seq, change.seq);
    return;
  }
  changes_.push_back(change);
}

void WriteBatch::MergeFrom(WriteBatch& other) {
  for (auto& t : other.tasks_) tasks_.push_back(std::move(t));
  for (auto& w : other.workers_) workers_.push_back(std::move(w));
  for (const auto& c : other.changes_) ChangeWorker(c);
  other.Clear();
}

void WriteBatch::Clear() {
  tasks_.clear();
  workers_.clear();
  changes_.clear();
}

bool EventFilter::Matches(const pb::Event& e) const {
  if (!workspace_id.empty() && e.workspace_id() != workspace_id) return false;
  if (!task_id.empty() && e.task_id() != task_id) return false;
  if (!worker_id.empty() && e.worker_id() != worker_id) return false;
  if (allowed_workspaces && allowed_workspaces->count(e.workspace_id()) == 0) return false;
  return true;
}

}  // namespace buildd::broker
