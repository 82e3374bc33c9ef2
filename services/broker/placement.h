#ifndef BUILDD_SERVICES_BROKER_PLACEMENT_H_
#define BUILDD_SERVICES_BROKER_PLACEMENT_H_

// Which runner takes a task: the routing rules, as pure functions over what
// the runner registry, the worker table and the budget know.

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "services/broker/records.h"

namespace buildd::broker {

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
  double account_max_cost_per_day = 0;  // 0: no limit
};

// A runner connected to this broker replica, as routing sees it.
struct RunnerSlot {
  std::string runner_id;
  std::string name;
  std::string account_id;
  std::string account_type;  // user | service | action
  // What the runner's account may do, from its principal.
  RunnerAccess access;
  // Hello.workspace_id and workspace_ids: only these workspaces, when set.
  std::set<std::string> only_workspaces;
  // Hello.task_id: only this task, when set (a GitHub Actions run started
  // for it).
  std::string only_task;
  std::set<std::string> labels;
  // What it may run (ProvidersOf its Hello's capabilities).
  std::set<std::string> providers;
  int max_tasks = 1;
  // Said so in a Heartbeat: it takes no new work.
  bool draining = false;
};

// The providers among the names of a runner's capabilities ("command",
// "claude", "codex"); none, so no task, for a runner that declares none.
std::set<std::string> ProvidersOf(const std::vector<std::string>& capabilities);

// The providers a runner may take now: once its account spent its daily
// budget, only `command` (agents cost money; a command does not).
std::set<std::string> AvailableProviders(const RunnerSlot& runner, bool spent);

// True when `runner` may take `task`: canClaim grant (or admin), account
// type against runnerPreference, required labels ⊆ runner labels, provider
// available, workspace filter. Capacity is not considered here.
bool Eligible(const RunnerSlot& runner, bool spent, const TaskRoute& task);

// The same rule for the pending tasks in the store.
ClaimFilter ClaimFilterFor(const RunnerSlot& runner, bool spent);

// A runner with its load.
struct Candidate {
  const RunnerSlot* runner = nullptr;
  int active = 0;          // its workers
  int account_active = 0;  // the workers of all its account's runners here
  bool spent = false;      // its account's budget, today
};

// Slots the candidate may still fill: its own, within its account's limit.
int FreeSlots(const Candidate& c);

// The least loaded eligible candidate with a free slot (ties: the first
// from `start` on, wrapping, so that equal loads spread out); nullopt when
// there is none.
std::optional<size_t> PickRunner(const TaskRoute& task, const std::vector<Candidate>& candidates,
                                 size_t start = 0);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_PLACEMENT_H_
