#include "services/broker/budget.h"

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace buildd::broker {

Budget::Budget(boost::asio::io_context& timers, std::function<void()> on_new_day)
    : timer_(timers), on_new_day_(std::move(on_new_day)) {}

void Budget::Start() { Arm(); }

void Budget::Stop() { timer_.cancel(); }

void Budget::Arm() {
  const absl::Time now = absl::Now();
  const absl::CivilDay today = absl::ToCivilDay(now, absl::UTCTimeZone());
  const absl::Time midnight = absl::FromCivil(today + 1, absl::UTCTimeZone());
  // A little after midnight, so that the new day is the clock's day too.
  timer_.expires_after(absl::ToChronoMilliseconds(midnight - now) + std::chrono::milliseconds(10));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    {
      absl::MutexLock lock(&mu_);
      spent_.clear();
    }
    if (on_new_day_) on_new_day_();
    Arm();
  });
}

void Budget::SetSpent(const std::string& account_id, bool spent) {
  absl::MutexLock lock(&mu_);
  if (spent) {
    spent_.insert(account_id);
  } else {
    spent_.erase(account_id);
  }
}

bool Budget::Spent(const std::string& account_id) const {
  absl::MutexLock lock(&mu_);
  return spent_.count(account_id) > 0;
}

}  // namespace buildd::broker
