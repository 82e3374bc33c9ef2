#include "common/metrics.h"

#include <unistd.h>

#include <fstream>

#include "absl/strings/str_cat.h"

namespace buildd {

std::atomic<int64_t>& Metrics::Counter(const std::string& name, const std::string& help) {
  absl::MutexLock lock(&mu_);
  Entry& entry = entries_[name];
  if (!entry.value) {
    entry.help = help;
    entry.kind = "counter";
    entry.value = std::make_unique<std::atomic<int64_t>>(0);
  }
  return *entry.value;
}

void Metrics::Gauge(const std::string& name, const std::string& help,
                    std::function<double()> read) {
  absl::MutexLock lock(&mu_);
  Entry& entry = entries_[name];
  entry.help = help;
  entry.kind = "gauge";
  entry.read = std::move(read);
}

void Metrics::GaugeFamily(const std::string& name, const std::string& help,
                          std::function<Series()> read) {
  absl::MutexLock lock(&mu_);
  Entry& entry = entries_[name];
  entry.help = help;
  entry.kind = "gauge";
  entry.read_family = std::move(read);
}

std::string Label(const std::string& name, const std::string& value) {
  std::string out = name + "=\"";
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Metrics::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, entry] : entries_) {
    absl::StrAppend(&out, "# HELP ", name, " ", entry.help, "\n# TYPE ", name, " ", entry.kind, "\n");
    if (entry.read_family) {
      for (const auto& [labels, value] : entry.read_family()) {
        absl::StrAppend(&out, name, "{", labels, "} ", value, "\n");
      }
      continue;
    }
    absl::StrAppend(&out, name, " ");
    if (entry.value) {
      absl::StrAppend(&out, entry.value->load(), "\n");
    } else {
      absl::StrAppend(&out, entry.read(), "\n");
    }
  }
  return out;
}

Metrics& Metrics::Global() {
  static Metrics* metrics = [] {
    auto* m = new Metrics;
    m->Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
             [] { return static_cast<double>(ResidentBytes()); });
    return m;
  }();
  return *metrics;
}

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

}  // namespace buildd
