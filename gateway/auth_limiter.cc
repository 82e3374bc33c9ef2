#include "gateway/auth_limiter.h"

namespace buildd::gateway {

AuthLimiter::Clock::duration AuthLimiter::RetryAfter(const std::string& address,
                                                     Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(address);
  if (it == entries_.end() || it->second.blocked_until <= now) return Clock::duration::zero();
  return it->second.blocked_until - now;
}

void AuthLimiter::Failed(const std::string& address, Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  if (entries_.size() >= kMaxAddresses && entries_.count(address) == 0) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      const bool quiet = it->second.blocked_until <= now && now - it->second.window_start > window_;
      it = quiet ? entries_.erase(it) : std::next(it);
    }
    // Full of addresses failing now: none of them is forgotten to make room
    // (that would lift a block); this one goes unremembered.
    if (entries_.size() >= kMaxAddresses) return;
  }
  Entry& e = entries_[address];
  if (now - e.window_start > window_) {
    e.failures = 0;
    e.window_start = now;
  }
  if (++e.failures >= max_failures_) e.blocked_until = now + window_;
}

}  // namespace buildd::gateway
