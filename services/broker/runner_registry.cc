#include "services/broker/runner_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace buildd::broker {

absl::Status RunnerRegistry::Add(ConnectedRunner runner, int max_per_key) {
  absl::MutexLock lock(&mu_);
  const auto same_key = std::count_if(runners_.begin(), runners_.end(), [&](const auto& entry) {
    return entry.second.key == runner.key;
  });
  if (same_key >= max_per_key) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this key already holds ", same_key, " runner streams, the most one key may hold"));
  }
  const std::string id = runner.slot.runner_id;
  runners_[id] = std::move(runner);
  return absl::OkStatus();
}

void RunnerRegistry::Remove(const std::string& runner_id) {
  absl::MutexLock lock(&mu_);
  runners_.erase(runner_id);
}

std::optional<RunnerSlot> RunnerRegistry::Slot(const std::string& runner_id) const {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  if (it == runners_.end()) return std::nullopt;
  return it->second.slot;
}

std::vector<RunnerSlot> RunnerRegistry::Slots() const {
  absl::MutexLock lock(&mu_);
  std::vector<RunnerSlot> out;
  out.reserve(runners_.size());
  for (const auto& [id, runner] : runners_) out.push_back(runner.slot);
  return out;
}

std::vector<std::pair<RunnerSlot, RunnerDetails>> RunnerRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<RunnerSlot, RunnerDetails>> out;
  out.reserve(runners_.size());
  for (const auto& [id, runner] : runners_) out.emplace_back(runner.slot, runner.details);
  return out;
}

std::optional<RunnerSlot> RunnerRegistry::Choose(
    const std::function<std::optional<size_t>(const std::vector<const RunnerSlot*>&)>& choose) const {
  absl::MutexLock lock(&mu_);
  std::vector<const RunnerSlot*> slots;
  slots.reserve(runners_.size());
  for (const auto& [id, runner] : runners_) slots.push_back(&runner.slot);
  const std::optional<size_t> chosen = choose(slots);
  if (!chosen) return std::nullopt;
  return *slots[*chosen];
}

std::shared_ptr<RunnerLink> RunnerRegistry::Link(const std::string& runner_id) const {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  return it == runners_.end() ? nullptr : it->second.link;
}

std::string RunnerRegistry::Key(const std::string& runner_id) const {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  return it == runners_.end() ? "" : it->second.key;
}

std::map<std::string, std::string> RunnerRegistry::Credentials(const std::string& runner_id) const {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  return it == runners_.end() ? std::map<std::string, std::string>{} : it->second.credentials;
}

void RunnerRegistry::Touch(const std::string& runner_id) {
  const auto now = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  if (it != runners_.end()) it->second.last_seen = now;
}

void RunnerRegistry::SetLoad(const std::string& runner_id, int load) {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  if (it != runners_.end()) it->second.details.load = load;
}

bool RunnerRegistry::SetDraining(const std::string& runner_id) {
  absl::MutexLock lock(&mu_);
  auto it = runners_.find(runner_id);
  if (it == runners_.end() || it->second.slot.draining) return false;
  it->second.slot.draining = true;
  return true;
}

std::vector<std::shared_ptr<RunnerLink>> RunnerRegistry::Silent(
    std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<RunnerLink>> out;
  for (const auto& [id, runner] : runners_) {
    const auto own = runner.silence_limit.count() > 0 ? runner.silence_limit : limit;
    if (runner.last_seen < now - own) out.push_back(runner.link);
  }
  return out;
}

void RunnerRegistry::SetAccess(const std::string& account_id, const RunnerAccess& access) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, runner] : runners_) {
    if (runner.slot.account_id == account_id) runner.slot.access = access;
  }
}

}  // namespace buildd::broker
