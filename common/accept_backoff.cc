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
    : listener_(std::move(listener)),
      // No jitter: one listener paces itself.
      backoff_(absl::ToChronoMilliseconds(first), absl::ToChronoMilliseconds(max), [] { return 1.0; }) {}

std::chrono::milliseconds AcceptBackoff::Failed(const boost::system::error_code& error) {
  const std::chrono::milliseconds delay = backoff_.Next();
  if (const int64_t failures = log_.Count(); failures > 0) {
    Log()->warn("{}: accept failed: {} ({} time(s) since the last line); next try in {}", listener_,
                error.message(), failures, absl::FormatDuration(absl::FromChrono(delay)));
  }
  return delay;
}

}  // namespace buildd
