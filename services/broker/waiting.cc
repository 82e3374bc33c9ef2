#include "services/broker/waiting.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace buildd::broker {
namespace {

// "command", "claude with labels gpu, linux", "codex on a service runner".
std::string RouteText(const TaskRecord& task) {
  std::string text = task.provider;
  if (!task.required_labels.empty()) {
    absl::StrAppend(&text, " with labels ", absl::StrJoin(task.required_labels, ", "));
  }
  if (task.runner_preference != "any") {
    absl::StrAppend(&text, " on a ", task.runner_preference, " runner");
  }
  return text;
}

// The accounts as `viewer` may see them: by id its own (every one for "",
// an admin), the others counted.
std::string AccountsText(const std::set<std::string>& accounts, const std::string& viewer) {
  std::vector<std::string> named;
  int others = 0;
  for (const std::string& a : accounts) {
    if (viewer.empty() || a == viewer) {
      named.push_back(a);
    } else {
      ++others;
    }
  }
  if (others > 0) {
    named.push_back(others == 1 ? (named.empty() ? "one account" : "one other account")
                                : absl::StrCat(others, named.empty() ? " accounts" : " other accounts"));
  }
  return absl::StrJoin(named, ", ");
}

}  // namespace

Waiting WhyWaiting(const TaskRecord& task, const std::string& key_holder,
                   const std::vector<Candidate>& candidates, const std::string& viewer) {
  if (!key_holder.empty()) {
    return {"branch_busy", absl::StrCat("waits for task ", key_holder, ", which holds concurrency key ",
                                        task.concurrency_key, " until it ends")};
  }
  const TaskRoute route = task.Route();
  std::vector<const Candidate*> may, may_today;
  for (const Candidate& c : candidates) {
    if (!Eligible(*c.runner, /*spent=*/false, route)) continue;
    may.push_back(&c);
    if (!c.spent || Eligible(*c.runner, /*spent=*/true, route)) may_today.push_back(&c);
  }
  if (may.empty()) {
    return {"no_runner",
            absl::StrCat("no connected runner whose account may claim from its workspace runs ",
                         RouteText(task))};
  }
  if (may_today.empty()) {
    std::set<std::string> accounts;
    for (const Candidate* c : may) accounts.insert(c->runner->account_id);
    return {"budget", absl::StrCat("the runners that may take it belong to accounts that spent "
                                   "their maxCostPerDay today: ",
                                   AccountsText(accounts, viewer))};
  }
  int own_room = 0;
  std::set<std::string> at_limit;
  for (const Candidate* c : may_today) {
    if (FreeSlots(*c) > 0) return {"", ""};
    if (c->runner->draining || c->runner->max_tasks - c->active <= 0) continue;
    ++own_room;
    at_limit.insert(c->runner->account_id);
  }
  if (own_room > 0) {
    return {"account_limit",
            absl::StrCat("the runners with a free slot belong to accounts at their "
                         "maxConcurrentWorkers: ",
                         AccountsText(at_limit, viewer))};
  }
  if (may_today.size() == 1) {
    return {"runners_busy", "the one connected runner that may take it is busy or draining"};
  }
  return {"runners_busy", absl::StrCat("all ", may_today.size(),
                                       " connected runners that may take it are busy or draining")};
}

}  // namespace buildd::broker
