#ifndef BUILDD_SERVICES_BROKER_WORKER_TABLE_H_
#define BUILDD_SERVICES_BROKER_WORKER_TABLE_H_

// The workers this replica dispatched or re-attached that are not done:
// which runner holds each, at which epoch (fencing), how far its events are
// stored. How many workers a runner or an account holds is counted from
// here. Thread-safe.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/broker/records.h"

namespace buildd::broker {

class WorkerTable {
 public:
  // Adds (or replaces) a worker.
  void Put(LiveWorker worker);
  void Erase(const std::string& worker_id);

  std::optional<LiveWorker> Get(const std::string& worker_id) const;
  // The worker when `runner_id` holds it at `epoch`: what the runner's
  // messages about it may touch.
  std::optional<LiveWorker> HeldBy(const std::string& runner_id, const std::string& worker_id,
                                   int64_t epoch) const;

  // Moves a worker to `runner_id` ("" for none).
  void SetRunner(const std::string& worker_id, const std::string& runner_id);
  // Takes every worker of `runner_id` off it; their ids.
  std::vector<std::string> Orphan(const std::string& runner_id);
  // Sets how far a worker's events are stored and its state.
  void Record(const std::string& worker_id, int64_t last_seq, const std::string& state);

  // How many workers each runner, and the runners of each account, hold.
  struct Loads {
    std::map<std::string, int> by_runner;
    std::map<std::string, int> by_account;
  };
  Loads CountLoads() const;
  // The workers `runner_id` holds, and those the runners of `account_id` hold.
  std::pair<int, int> LoadOf(const std::string& runner_id, const std::string& account_id) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, LiveWorker> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_WORKER_TABLE_H_
