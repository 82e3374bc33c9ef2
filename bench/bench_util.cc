#include "bench/bench_util.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace buildd::bench {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

namespace {

// Nearest rank on a sorted vector.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i = static_cast<size_t>(p / 100.0 * (sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

Latency Summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return Latency{ms.size(), Percentile(ms, 50), Percentile(ms, 95), Percentile(ms, 99)};
}

std::string FormatLatency(const Latency& l) {
  return absl::StrFormat("p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  (n=%d)", l.p50, l.p95, l.p99,
                         l.count);
}

long RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

uint64_t RaiseOpenFiles(uint64_t wanted) {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) return 0;
  if (files.rlim_cur < wanted) {
    rlimit raised = files;
    raised.rlim_cur = wanted;
    raised.rlim_max = std::max<rlim_t>(files.rlim_max, wanted);
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it, go as far
    // as the hard limit allows.
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      files.rlim_cur = files.rlim_max;
      setrlimit(RLIMIT_NOFILE, &files);
    }
  }
  getrlimit(RLIMIT_NOFILE, &files);
  return files.rlim_cur;
}

void Auth(grpc::ClientContext& ctx, const std::string& key) {
  ctx.AddMetadata("authorization", "Bearer " + key);
}

std::string Arg(const std::string& flag, const std::string& value) {
  return absl::StrCat("--", flag, "=", value);
}

MetricValues ReadMetrics(int port) {
  MetricValues out;
  std::FILE* f = popen(absl::StrCat("curl -s http://127.0.0.1:", port, "/metrics").c_str(), "r");
  if (f == nullptr) return out;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    char name[256];
    double v = 0;
    if (std::sscanf(line, "%255s %lf", name, &v) == 2) out[name] = v;
  }
  pclose(f);
  return out;
}

void PrintJournal(const MetricValues& a, const MetricValues& b, double wall_ms) {
  auto d = [&](const char* k) { return b.count(k) ? b.at(k) - (a.count(k) ? a.at(k) : 0) : 0; };
  const double batches = d("buildd_broker_journal_batches"), ops = d("buildd_broker_journal_ops");
  const double busy = d("buildd_broker_journal_busy_seconds") * 1000;
  const double commit = d("buildd_broker_journal_commit_seconds") * 1000;
  std::printf("  journal: %.0f transactions for %.0f operations (%.1f per commit), busy %.0f ms of"
              " %.0f ms (%.0f%%), %.2f ms per transaction, of which %.2f ms in its final write"
              " and commit\n",
              batches, ops, batches > 0 ? ops / batches : 0, busy, wall_ms,
              wall_ms > 0 ? 100 * busy / wall_ms : 0, batches > 0 ? busy / batches : 0,
              batches > 0 ? commit / batches : 0);
}

}  // namespace buildd::bench
