#ifndef BUILDD_COMMON_ACCEPT_BACKOFF_H_
#define BUILDD_COMMON_ACCEPT_BACKOFF_H_

#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"

namespace buildd {

// Rate-limits a log line about something that may happen very often (a
// failed accept, a refused connection). Thread-safe.
class LogLimiter {
 public:
  explicit LogLimiter(absl::Duration interval = absl::Seconds(1)) : interval_(interval) {}

  // Counts one occurrence. When a line is due (the first occurrence, then at
  // most one per interval) returns how many occurred since the last line,
  // this one included; otherwise 0.
  int64_t Count();

 private:
  const absl::Duration interval_;
  absl::Mutex mu_;
  int64_t unreported_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_line_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Paces an accept loop after failed accepts. A listener out of file
// descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM) finds its
// backlog readable again at once: accepting again right away spins on the CPU
// and floods the log. The delay doubles from `first` up to `max` while
// accepts keep failing and starts from `first` again after one succeeds.
// Failures are logged (warn) at most once a second, with how many there were.
// Not thread-safe: one per accept loop, used from that loop's strand.
class AcceptBackoff {
 public:
  explicit AcceptBackoff(std::string listener, absl::Duration first = absl::Milliseconds(10),
                         absl::Duration max = absl::Seconds(1));

  // After a failed accept: how long to wait before the next one.
  std::chrono::milliseconds Failed(const boost::system::error_code& error);
  // After a successful accept.
  void Succeeded() { backoff_.Reset(); }

 private:
  const std::string listener_;
  Backoff backoff_;
  LogLimiter log_;
};

}  // namespace buildd

#endif  // BUILDD_COMMON_ACCEPT_BACKOFF_H_
