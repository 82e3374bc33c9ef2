#include "services/broker/task_states.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace buildd::broker {

const std::vector<std::string_view>& LiveWorkerStates() {
  static const std::vector<std::string_view> states = {"idle", "starting", "running",
                                                       "waiting_input", "paused"};
  return states;
}

const std::vector<std::string_view>& UnfinishedTaskStates() {
  static const std::vector<std::string_view> states = {"pending", "assigned", "running",
                                                       "waiting_input"};
  return states;
}

std::string SqlList(const std::vector<std::string_view>& states) {
  std::string out = "(";
  for (std::string_view s : states) {
    if (out.size() > 1) out += ", ";
    out.append("'").append(s).append("'");
  }
  return out + ")";
}

bool QueuesOrEndsATask(std::string_view type) {
  for (std::string_view t : {"created", "requeued", "rejected", "completed", "failed", "canceled"}) {
    if (type == t) return true;
  }
  return false;
}

bool IsTerminalWorkerState(std::string_view s) {
  return s == "completed" || s == "error" || s == "canceled";
}

bool IsTerminalTaskState(std::string_view s) {
  return s == "completed" || s == "failed" || s == "canceled";
}

std::string TaskStateFor(std::string_view worker_state) {
  if (worker_state == "idle") return "assigned";
  if (worker_state == "starting" || worker_state == "running") return "running";
  if (worker_state == "waiting_input") return "waiting_input";
  if (worker_state == "completed") return "completed";
  if (worker_state == "canceled") return "canceled";
  if (worker_state == "error") return "failed";
  return "";  // paused
}

Outcome OutcomeOf(::buildd::v1::Finished::Outcome outcome) {
  switch (outcome) {
    case ::buildd::v1::Finished::completed:
      return {"completed", "completed", "completed"};
    case ::buildd::v1::Finished::canceled:
      return {"canceled", "canceled", "canceled"};
    default:
      return {"error", "failed", "error"};
  }
}

bool EndAttempt(TaskRecord& task, WorkerRecord& worker, const std::string& error, bool refused) {
  worker.state = "error";
  worker.error = error;
  if (refused) task.attempts = std::max(0, task.attempts - 1);
  const bool failed = task.attempts >= task.max_attempts;
  task.state = failed ? TaskStateFor(worker.state) : "pending";
  if (failed) {
    task.error = error;
  } else {
    task.worker_id.clear();
  }
  return failed;
}

}  // namespace buildd::broker
