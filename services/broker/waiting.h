#ifndef BUILDD_SERVICES_BROKER_WAITING_H_
#define BUILDD_SERVICES_BROKER_WAITING_H_

// Why a pending task is not running yet, told from the same state placement
// decides from (placement.h): the runners connected to this replica with
// their loads and budgets, and the task that holds its concurrency key.
// Derived for each answer, never stored. Pure functions.

#include <string>
#include <vector>

#include "services/broker/placement.h"
#include "services/broker/records.h"

namespace buildd::broker {

struct Waiting {
  // no_runner, runners_busy, branch_busy, budget or account_limit; "" when
  // nothing holds it back (a runner with room may take it now).
  std::string reason;
  // A sentence for people, naming what it waits for.
  std::string detail;
};

// Why `task` waits. `key_holder`: the unfinished task that holds its
// concurrency key ("" for none); `candidates`: every connected runner with
// its load (see Candidate). The first of these that holds: branch_busy, no
// runner that may ever take it (no_runner), none whose account has budget
// left today (budget), none with a free slot of its own (runners_busy),
// none whose account is below its maxConcurrentWorkers (account_limit).
// The detail names accounts by id only to `viewer` ("": an admin) and its
// own; other accounts are counted, and runners are not named.
Waiting WhyWaiting(const TaskRecord& task, const std::string& key_holder,
                   const std::vector<Candidate>& candidates, const std::string& viewer = "");

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_WAITING_H_
