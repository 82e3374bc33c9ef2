#ifndef BUILDD_BENCH_PROFILER_H_
#define BUILDD_BENCH_PROFILER_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/testing/process.h"

namespace buildd::bench {

// `perf record -g` attached to one process (the broker) from Start() to
// Stop(); Report() then prints the top of `perf report --no-children`.
class Profiler {
 public:
  // Starts perf on `pid`, writing `dir`/perf.data; returns once perf has
  // opened it.
  static absl::StatusOr<std::unique_ptr<Profiler>> Start(pid_t pid, const std::string& dir);

  // Stops recording (perf finishes its file).
  void Stop();
  // Prints the `lines` hottest symbols by self time. REQUIRES: Stop() ran.
  void Report(int lines);

 private:
  Profiler(std::unique_ptr<testing::Process> perf, std::string data)
      : perf_(std::move(perf)), data_(std::move(data)) {}

  std::unique_ptr<testing::Process> perf_;
  std::string data_;
};

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_PROFILER_H_
