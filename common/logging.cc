#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

#include "absl/synchronization/mutex.h"

namespace buildd {
namespace {
std::shared_ptr<spdlog::logger>& Logger() {
  static std::shared_ptr<spdlog::logger> logger = spdlog::stderr_logger_mt("buildd");
  return logger;
}
}  // namespace

std::shared_ptr<spdlog::logger> Log() { return Logger(); }

void InitLogging(const std::string& service, const std::string& level) {
  auto& logger = Logger();
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l " + service + " %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  // Debian's Abseil keeps lock-order graphs for every Mutex; they cost CPU
  // on hot paths and the services do not rely on them.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace buildd
