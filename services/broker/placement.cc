#include "services/broker/placement.h"

#include <algorithm>
#include <limits>

namespace buildd::broker {

std::set<std::string> ProvidersOf(const std::vector<std::string>& capabilities) {
  std::set<std::string> providers;
  for (const std::string& name : capabilities) {
    if (name == "command" || name == "claude" || name == "codex") providers.insert(name);
  }
  return providers;
}

std::set<std::string> AvailableProviders(const RunnerSlot& runner, bool spent) {
  if (!spent) return runner.providers;
  std::set<std::string> available;
  if (runner.providers.count("command") > 0) available.insert("command");
  return available;
}

bool Eligible(const RunnerSlot& runner, bool spent, const TaskRoute& task) {
  if (!runner.only_task.empty() && runner.only_task != task.task_id) return false;
  if (!runner.only_workspaces.empty() && runner.only_workspaces.count(task.workspace_id) == 0) {
    return false;
  }
  if (!runner.access.claim_all && runner.access.claim_workspaces.count(task.workspace_id) == 0) {
    return false;
  }
  if (task.runner_preference != "any" && task.runner_preference != runner.account_type) {
    return false;
  }
  for (const std::string& label : task.required_labels) {
    if (runner.labels.count(label) == 0) return false;
  }
  return AvailableProviders(runner, spent).count(task.provider) > 0;
}

ClaimFilter ClaimFilterFor(const RunnerSlot& runner, bool spent) {
  ClaimFilter f;
  f.claim_all = runner.access.claim_all;
  f.claim_workspaces = runner.access.claim_workspaces;
  f.only_workspaces = runner.only_workspaces;
  f.only_task = runner.only_task;
  f.account_type = runner.account_type;
  f.labels = runner.labels;
  f.providers = AvailableProviders(runner, spent);
  return f;
}

int FreeSlots(const Candidate& c) {
  if (c.runner->draining) return 0;
  int free = c.runner->max_tasks - c.active;
  if (c.runner->access.account_max_workers > 0) {
    free = std::min(free, c.runner->access.account_max_workers - c.account_active);
  }
  return std::max(0, free);
}

std::optional<size_t> PickRunner(const TaskRoute& task, const std::vector<Candidate>& candidates,
                                 size_t start) {
  std::optional<size_t> best;
  double best_load = std::numeric_limits<double>::max();
  const size_t n = candidates.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (start + k) % n;
    const Candidate& c = candidates[i];
    if (FreeSlots(c) <= 0 || !Eligible(*c.runner, c.spent, task)) continue;
    const double load = static_cast<double>(c.active) / c.runner->max_tasks;
    if (load < best_load) {
      best = i;
      best_load = load;
    }
  }
  return best;
}

}  // namespace buildd::broker
