#ifndef BUILDD_GATEWAY_AUTH_LIMITER_H_
#define BUILDD_GATEWAY_AUTH_LIMITER_H_

#include <chrono>
#include <map>
#include <string>

#include "absl/synchronization/mutex.h"

namespace buildd::gateway {

// Failed authentications per client address: an address that fails
// `max_failures` times within `window` is refused without asking the
// services until `window` has passed since its last failure. Bounds what a
// client guessing keys costs the accounts service. Thread-safe.
class AuthLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  AuthLimiter(int max_failures, Clock::duration window)
      : max_failures_(max_failures), window_(window) {}

  // How long `address` must wait before it may try again; zero when it may.
  Clock::duration RetryAfter(const std::string& address, Clock::time_point now = Clock::now());
  // `address` sent a credential that was refused.
  void Failed(const std::string& address, Clock::time_point now = Clock::now());

 private:
  struct Entry {
    int failures = 0;
    Clock::time_point window_start;
    Clock::time_point blocked_until;
  };
  // Addresses remembered at most; quiet ones are forgotten to make room.
  static constexpr size_t kMaxAddresses = 10000;

  const int max_failures_;
  const Clock::duration window_;
  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_AUTH_LIMITER_H_
