#ifndef BUILDD_COMMON_LOGGING_H_
#define BUILDD_COMMON_LOGGING_H_

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "absl/strings/string_view.h"

// Debian's Abseil has its own string_view; let fmt print it.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace buildd {

// The process-wide logger: one line per record on stderr, with the service
// name. Context ids (task, worker, runner, request) go in the message as
// `key=value` pairs. Thread-safe.
std::shared_ptr<spdlog::logger> Log();

// Also turns off Abseil's mutex deadlock detection (a debugging aid).
// REQUIRES: called once from main before other threads start.
void InitLogging(const std::string& service, const std::string& level);

}  // namespace buildd

#endif  // BUILDD_COMMON_LOGGING_H_
