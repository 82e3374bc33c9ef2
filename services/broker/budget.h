#ifndef BUILDD_SERVICES_BROKER_BUDGET_H_
#define BUILDD_SERVICES_BROKER_BUDGET_H_

// The accounts' daily budgets (maxCostPerDay): which accounts spent theirs
// on the current UTC day. An account at its limit gets no agent tasks until
// the day is over; a timer at each UTC midnight says so. Thread-safe.

#include <functional>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace buildd::broker {

class Budget {
 public:
  // `on_new_day` runs on the timers' thread when a UTC day begins.
  Budget(boost::asio::io_context& timers, std::function<void()> on_new_day);
  // Arms the timer for the next midnight. REQUIRES: called once.
  void Start();
  void Stop();

  // Whether `total` spent today reaches `limit` (0: no limit).
  static bool Reaches(double total, double limit) { return limit > 0 && total >= limit; }
  // Records whether the account has spent its budget today.
  void SetSpent(const std::string& account_id, bool spent);
  bool Spent(const std::string& account_id) const;

 private:
  void Arm();

  boost::asio::steady_timer timer_;
  std::function<void()> on_new_day_;
  mutable absl::Mutex mu_;
  // The accounts that reached their limit today; the timer empties it.
  std::set<std::string> spent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_BUDGET_H_
