#include "services/broker/scheduler.h"

#include "absl/time/clock.h"
#include "absl/time/time.h"

#include <limits>

namespace buildd::broker {

std::set<std::string> ProvidersOf(const std::vector<std::string>& capabilities) {
  std::set<std::string> providers;
  for (const std::string& name : capabilities) {
    if (name == "command" || name == "claude" || name == "codex") providers.insert(name);
  }
  return providers;
}

std::string TodayUtc() {
  return absl::FormatTime("%Y-%m-%d", absl::Now(), absl::UTCTimeZone());
}

bool RunnerSlot::SpentToday() const { return !spent_day.empty() && spent_day == TodayUtc(); }

bool RunnerSlot::MayRun(const std::string& provider) const {
  // Agents cost money; a command does not.
  return providers.count(provider) > 0 && (provider == "command" || !SpentToday());
}

std::set<std::string> RunnerSlot::AvailableProviders() const {
  std::set<std::string> available;
  for (const std::string& provider : providers) {
    if (MayRun(provider)) available.insert(provider);
  }
  return available;
}

bool Eligible(const RunnerSlot& runner, const TaskRoute& task) {
  if (!runner.only_workspace.empty() && runner.only_workspace != task.workspace_id) return false;
  if (!runner.access.claim_all && runner.access.claim_workspaces.count(task.workspace_id) == 0) {
    return false;
  }
  if (task.runner_preference != "any" && task.runner_preference != runner.account_type) {
    return false;
  }
  for (const std::string& label : task.required_labels) {
    if (runner.labels.count(label) == 0) return false;
  }
  return runner.MayRun(task.provider);
}

void Scheduler::SetSpent(const std::string& account_id, const std::string& day) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, runner] : runners_) {
    if (runner.account_id == account_id) runner.spent_day = day;
  }
}

void Scheduler::AddRunner(RunnerSlot runner) {
  absl::MutexLock lock(&mu_);
  runners_[runner.runner_id] = std::move(runner);
}

void Scheduler::RemoveRunner(const std::string& runner_id) {
  absl::MutexLock lock(&mu_);
  runners_.erase(runner_id);
}

void Scheduler::UpdateAccess(const std::string& account_id, const RunnerAccess& access) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, runner] : runners_) {
    if (runner.account_id == account_id) runner.access = access;
  }
}

int Scheduler::AccountActiveLocked(const std::string& account_id) const {
  int active = 0;
  for (const auto& [id, runner] : runners_) {
    if (runner.account_id == account_id) active += runner.active;
  }
  return active;
}

std::optional<RunnerSlot> Scheduler::Reserve(const TaskRoute& task,
                                             const std::set<std::string>& exclude) {
  absl::MutexLock lock(&mu_);
  RunnerSlot* best = nullptr;
  double best_load = std::numeric_limits<double>::max();
  // Start the scan at a rotating offset so equal loads spread out.
  const size_t n = runners_.size();
  if (n == 0) return std::nullopt;
  auto it = runners_.begin();
  std::advance(it, turn_++ % n);
  for (size_t i = 0; i < n; ++i, ++it) {
    if (it == runners_.end()) it = runners_.begin();
    RunnerSlot& runner = it->second;
    if (runner.active >= runner.max_tasks || exclude.count(runner.runner_id) > 0) continue;
    if (!Eligible(runner, task)) continue;
    if (runner.access.account_max_workers > 0 &&
        AccountActiveLocked(runner.account_id) >= runner.access.account_max_workers) {
      continue;
    }
    const double load = static_cast<double>(runner.active) / runner.max_tasks;
    if (load < best_load) {
      best = &runner;
      best_load = load;
    }
  }
  if (best == nullptr) return std::nullopt;
  ++best->active;
  return *best;
}

int Scheduler::ReserveOn(const std::string& runner_id, int n) {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  if (it == runners_.end()) return 0;
  RunnerSlot& runner = it->second;
  int free = runner.max_tasks - runner.active;
  if (runner.access.account_max_workers > 0) {
    free = std::min(free, runner.access.account_max_workers - AccountActiveLocked(runner.account_id));
  }
  const int got = std::max(0, std::min(free, n));
  runner.active += got;
  return got;
}

void Scheduler::Release(const std::string& runner_id) {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  if (it != runners_.end() && it->second.active > 0) --it->second.active;
}

std::optional<RunnerSlot> Scheduler::Get(const std::string& runner_id) const {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  if (it == runners_.end()) return std::nullopt;
  return it->second;
}

std::vector<RunnerSlot> Scheduler::Runners() const {
  absl::MutexLock lock(&mu_);
  std::vector<RunnerSlot> out;
  for (const auto& [id, runner] : runners_) out.push_back(runner);
  return out;
}

}  // namespace buildd::broker
