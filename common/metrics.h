#ifndef BUILDD_COMMON_METRICS_H_
#define BUILDD_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"

namespace buildd {

// Counters and gauges rendered in the Prometheus text format. Thread-safe;
// the returned references live as long as the registry.
class Metrics {
 public:
  std::atomic<int64_t>& Counter(const std::string& name, const std::string& help);
  // A gauge read by calling `read` at scrape time.
  void Gauge(const std::string& name, const std::string& help, std::function<double()> read);
  std::string Render() const;

  static Metrics& Global();

 private:
  struct Entry {
    std::string help;
    std::string kind;
    std::unique_ptr<std::atomic<int64_t>> value;
    std::function<double()> read;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

// Process RSS in bytes, from /proc/self/statm.
int64_t ResidentBytes();

}  // namespace buildd

#endif  // BUILDD_COMMON_METRICS_H_
