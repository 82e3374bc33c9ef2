#ifndef BUILDD_SERVICES_BROKER_SCHEDULER_H_
#define BUILDD_SERVICES_BROKER_SCHEDULER_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace buildd::broker {

// What routing needs to know about a task.
struct TaskRoute {
  std::string task_id;
  std::string workspace_id;
  std::string runner_preference;  // any | user | service | action
  std::vector<std::string> required_labels;
  std::string provider;
};

// What a runner's account may claim and share, refreshed when its grants
// change.
struct RunnerAccess {
  // Every workspace: an admin's or a claimAll account's runner.
  bool claim_all = false;
  // Workspaces the account may claim from (ignored with claim_all).
  std::set<std::string> claim_workspaces;
  // Workspaces whose tasks by other accounts get the account's provider
  // credentials (its own tasks always do).
  std::set<std::string> share_workspaces;
  int account_max_workers = 0;  // 0: no account limit
};

// A runner connected to this broker replica, as routing sees it.
struct RunnerSlot {
  std::string runner_id;
  std::string name;
  std::string account_id;
  std::string account_type;  // user | service | action
  // What the runner's account may do, from its principal.
  RunnerAccess access;
  // Hello.workspace_id: only this workspace, when set.
  std::string only_workspace;
  std::set<std::string> labels;
  // What it may run (ProvidersOf its Hello's capabilities).
  std::set<std::string> providers;
  int max_tasks = 1;
  int active = 0;
  double account_max_cost_per_day = 0;  // 0: no limit
  // The UTC day ("2026-11-22") on which the account reached that limit: no
  // agent tasks for it until the day is over.
  std::string spent_day;

  // True once the account reached its daily budget today.
  bool SpentToday() const;
  // Whether the runner may take a task of `provider` now: it has it, and an
  // agent only while the budget lasts.
  bool MayRun(const std::string& provider) const;
  // The providers the runner may take now (only `command` once spent).
  std::set<std::string> AvailableProviders() const;
};

// The providers among the names of a runner's capabilities ("command",
// "claude", "codex"); none, so no task, for a runner that declares none.
std::set<std::string> ProvidersOf(const std::vector<std::string>& capabilities);

// Today's UTC date, "YYYY-MM-DD".
std::string TodayUtc();

// True when `runner` may take `task`: canClaim grant (or admin), account
// type against runnerPreference, required labels ⊆ runner labels, provider
// installed, workspace filter. Capacity is not considered here.
bool Eligible(const RunnerSlot& runner, const TaskRoute& task);

// The runners connected to this replica and their free slots. Routing picks
// the least loaded eligible runner whose account is under its
// maxConcurrentWorkers. Thread-safe.
class Scheduler {
 public:
  void AddRunner(RunnerSlot runner);
  void RemoveRunner(const std::string& runner_id);
  // Replaces the access of every runner of `account_id`.
  void UpdateAccess(const std::string& account_id, const RunnerAccess& access);

  // Marks every runner of `account_id` as having spent its daily budget on
  // `day` ("" lifts it).
  void SetSpent(const std::string& account_id, const std::string& day);
  // Chooses a runner for `task` and takes one of its slots; nullopt when no
  // connected runner is eligible and free. `exclude`: runners that already
  // refused this task.
  std::optional<RunnerSlot> Reserve(const TaskRoute& task,
                                    const std::set<std::string>& exclude = {});
  // Takes `n` slots of a given runner at most; returns how many it got.
  int ReserveOn(const std::string& runner_id, int n);
  // Gives a slot back (task finished, assignment rolled back, rejected).
  void Release(const std::string& runner_id);

  std::optional<RunnerSlot> Get(const std::string& runner_id) const;
  std::vector<RunnerSlot> Runners() const;

 private:
  int AccountActiveLocked(const std::string& account_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, RunnerSlot> runners_ ABSL_GUARDED_BY(mu_);
  uint64_t turn_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_SCHEDULER_H_
