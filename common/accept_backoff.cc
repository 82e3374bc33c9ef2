#include "common/accept_backoff.h"

#include <algorithm>
#include <utility>

#include "common/logging.h"

namespace buildd {

int64_t LogLimiter::Count() {
  absl::MutexLock lock(&mu_);
  ++unreported_;
  const absl::Time now = absl::Now();
  if (now - last_line_ < interval_) return 0;
  last_line_ = now;
  return std::exchange(unreported_, 0);
}

AcceptBackoff::AcceptBackoff(std::string listener, absl::Duration first, absl::Duration max)
    : listener_(std::move(listener)), first_(first), max_(max), delay_(first) {}

std::chrono::milliseconds AcceptBackoff::Failed(const boost::system::error_code& error) {
  const absl::Duration delay = delay_;
  delay_ = std::min(delay_ * 2, max_);
  if (const int64_t failures = log_.Count(); failures > 0) {
    Log()->warn("{}: accept failed: {} ({} time(s) since the last line); next try in {}", listener_,
                error.message(), failures, absl::FormatDuration(delay));
  }
  return absl::ToChronoMilliseconds(delay);
}

}  // namespace buildd
