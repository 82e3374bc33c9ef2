#ifndef BUILDD_BENCH_BENCH_UTIL_H_
#define BUILDD_BENCH_BENCH_UTIL_H_

// Small helpers the benchmark's phases share: the clock, percentiles,
// process memory, the broker's /metrics.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace buildd::bench {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d);

// p50/p95/p99 of a set of latencies in milliseconds.
struct Latency {
  size_t count = 0;
  double p50 = 0, p95 = 0, p99 = 0;
};
Latency Summarize(std::vector<double> ms);
// "p50 0.84 ms  p95 1.20 ms  p99 2.31 ms  (n=1000)"
std::string FormatLatency(const Latency& l);

// VmRSS of `pid` from /proc/PID/status in kB; -1 when it cannot be read.
long RssKb(pid_t pid);

// Raises this process's RLIMIT_NOFILE (soft, and hard when allowed) to at
// least `wanted`; returns the soft limit now in force.
uint64_t RaiseOpenFiles(uint64_t wanted);

void Auth(grpc::ClientContext& ctx, const std::string& key);

// "--flag=value"
std::string Arg(const std::string& flag, const std::string& value);

// The gauges and counters of a /metrics page on 127.0.0.1:port.
using MetricValues = std::map<std::string, double>;
MetricValues ReadMetrics(int port);

// Prints what the broker's journal did between two readings of /metrics.
void PrintJournal(const MetricValues& before, const MetricValues& after, double wall_ms);

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_BENCH_UTIL_H_
