#include "services/broker/worker_table.h"

namespace buildd::broker {

void WorkerTable::Put(LiveWorker worker) {
  absl::MutexLock lock(&mu_);
  const std::string id = worker.worker_id;
  workers_[id] = std::move(worker);
}

void WorkerTable::Erase(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  workers_.erase(worker_id);
}

std::optional<LiveWorker> WorkerTable::Get(const std::string& worker_id) const {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return std::nullopt;
  return it->second;
}

std::optional<LiveWorker> WorkerTable::HeldBy(const std::string& runner_id,
                                              const std::string& worker_id, int64_t epoch) const {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.runner_id != runner_id || it->second.epoch != epoch) {
    return std::nullopt;
  }
  return it->second;
}

void WorkerTable::SetRunner(const std::string& worker_id, const std::string& runner_id) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.runner_id = runner_id;
}

std::vector<std::string> WorkerTable::Orphan(const std::string& runner_id) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> held;
  for (auto& [id, w] : workers_) {
    if (w.runner_id != runner_id) continue;
    w.runner_id.clear();
    held.push_back(id);
  }
  return held;
}

void WorkerTable::Record(const std::string& worker_id, int64_t last_seq, const std::string& state) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  it->second.last_seq = last_seq;
  it->second.state = state;
}

WorkerTable::Loads WorkerTable::CountLoads() const {
  absl::MutexLock lock(&mu_);
  Loads loads;
  for (const auto& [id, w] : workers_) {
    if (w.runner_id.empty()) continue;
    ++loads.by_runner[w.runner_id];
    ++loads.by_account[w.account_id];
  }
  return loads;
}

std::pair<int, int> WorkerTable::LoadOf(const std::string& runner_id,
                                        const std::string& account_id) const {
  absl::MutexLock lock(&mu_);
  std::pair<int, int> load{0, 0};
  for (const auto& [id, w] : workers_) {
    if (w.runner_id.empty()) continue;
    if (w.runner_id == runner_id) ++load.first;
    if (w.account_id == account_id) ++load.second;
  }
  return load;
}

}  // namespace buildd::broker
