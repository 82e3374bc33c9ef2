// What the per-task sandbox costs: the runner's TaskExecutor runs `echo
// line` tasks one at a time, alternately inside a bubblewrap sandbox (as the
// task user when root) and without one, and times each from Start() to its
// first output line and to its end. No broker is involved, so the figures
// are the runner's alone.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "services/runner/sandbox.h"
#include "services/runner/task_executor.h"

ABSL_FLAG(int, tasks, 200, "tasks per mode");
ABSL_FLAG(std::string, task_user, "buildd-task", "the task user when run as root");
ABSL_FLAG(std::string, work_dir, "/tmp/buildd-sandbox-bench", "task and home directories");

namespace {

using Clock = std::chrono::steady_clock;
using buildd::runner::SandboxConfig;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()))];
}

struct Timing {
  double first_line_ms = 0;
  double end_ms = 0;
};

// Runs one `echo line` task; nullopt when it failed.
std::optional<Timing> RunOne(const SandboxConfig& sandbox, const std::string& dir, int i) {
  buildd::runner::TaskSpec spec;
  spec.task_id = absl::StrCat("bench-", i);
  spec.worker_id = spec.task_id;
  spec.command = "echo line";
  spec.tasks_dir = dir + "/tasks";
  spec.homes_dir = dir + "/homes";
  spec.sandbox = &sandbox;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false, ok = false;
  Clock::time_point first_line;
  bool got_line = false;
  buildd::runner::TaskCallbacks callbacks;
  callbacks.on_event = [&](buildd::runner::TaskEvent e) {
    if (e.type() == "output" && !got_line) {
      first_line = Clock::now();
      got_line = true;
    }
  };
  callbacks.on_finish = [&](buildd::runner::TaskResult result) {
    std::lock_guard<std::mutex> lock(mu);
    ok = result.outcome == buildd::runner::TaskOutcome::kCompleted;
    if (!ok) std::fprintf(stderr, "task failed: %s\n", result.error_message.c_str());
    done = true;
    cv.notify_all();
  };
  buildd::runner::TaskExecutor executor(spec, std::chrono::milliseconds(1000), callbacks);
  const Clock::time_point start = Clock::now();
  executor.Start();
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  const Clock::time_point end = Clock::now();
  executor.Join();
  if (!ok || !got_line) return std::nullopt;
  const auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  return Timing{ms(first_line - start), ms(end - start)};
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  buildd::InitLogging("sandbox_bench", "error");
  const std::string dir = absl::GetFlag(FLAGS_work_dir);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/tasks");
  const int n = absl::GetFlag(FLAGS_tasks);
  std::vector<SandboxConfig> configs;
  for (const char* mode : {"bwrap", "none"}) {
    auto config = buildd::runner::MakeSandboxConfig(mode, absl::GetFlag(FLAGS_task_user), 0, 4096,
                                                    4096, {});
    if (!config.ok()) {
      std::fprintf(stderr, "--sandbox=%s: %s\n", mode, std::string(config.status().message()).c_str());
      return 1;
    }
    configs.push_back(*config);
  }
  if (auto st = buildd::runner::MakeReachable(dir + "/tasks", configs[0].uid, configs[0].gid);
      !st.ok()) {
    std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::vector<double> line[2], end[2];
  // Alternating, so both modes see the same machine.
  for (int i = 0; i < n; ++i) {
    for (int m = 0; m < 2; ++m) {
      auto t = RunOne(configs[m], absl::StrCat(dir, "/", m), i);
      if (!t) return 1;
      line[m].push_back(t->first_line_ms);
      end[m].push_back(t->end_ms);
    }
  }
  std::printf("\nsandbox: `echo line` run by the runner's TaskExecutor, %d tasks per mode, "
              "one at a time, alternating\n", n);
  const char* names[2] = {"--sandbox=bwrap", "--sandbox=none "};
  for (int m = 0; m < 2; ++m) {
    std::printf("  %s  start -> first output line p50 %.2f ms  p95 %.2f ms  p99 %.2f ms;"
                "  start -> finished p50 %.2f ms\n",
                names[m], Percentile(line[m], 50), Percentile(line[m], 95), Percentile(line[m], 99),
                Percentile(end[m], 50));
  }
  std::printf("  cost of the sandbox per task (p50 difference): first line %.2f ms, whole task %.2f ms\n",
              Percentile(line[0], 50) - Percentile(line[1], 50),
              Percentile(end[0], 50) - Percentile(end[1], 50));
  std::filesystem::remove_all(dir);
  return 0;
}
