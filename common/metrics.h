#ifndef BUILDD_COMMON_METRICS_H_
#define BUILDD_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace buildd {

// Counters and gauges rendered in the Prometheus text format. Thread-safe;
// the returned references live as long as the registry.
class Metrics {
 public:
  std::atomic<int64_t>& Counter(const std::string& name, const std::string& help);
  // A gauge read by calling `read` at scrape time.
  void Gauge(const std::string& name, const std::string& help, std::function<double()> read);
  // Labelled series, as label text (`provider="claude",labels=""`, see
  // Label) and value pairs, read at scrape time.
  using Series = std::vector<std::pair<std::string, double>>;
  void GaugeFamily(const std::string& name, const std::string& help, std::function<Series()> read);
  std::string Render() const;

  static Metrics& Global();

 private:
  struct Entry {
    std::string help;
    std::string kind;
    std::unique_ptr<std::atomic<int64_t>> value;
    std::function<double()> read;
    std::function<Series()> read_family;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

// `name="value"` with the value escaped as the text format wants.
std::string Label(const std::string& name, const std::string& value);

// Process RSS in bytes, from /proc/self/statm.
int64_t ResidentBytes();

}  // namespace buildd

#endif  // BUILDD_COMMON_METRICS_H_
