#include "bench/profiler.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace buildd::bench {

namespace {

constexpr char kPerf[] = "/usr/bin/perf";

}  // namespace

absl::StatusOr<std::unique_ptr<Profiler>> Profiler::Start(pid_t pid, const std::string& dir) {
  if (access(kPerf, X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(kPerf, " not found (Debian package linux-perf)"));
  }
  const std::string data = dir + "/perf.data";
  unlink(data.c_str());
  auto perf = testing::Process::Start(
      kPerf, {"record", "-g", "-p", std::to_string(pid), "-o", data}, {}, dir + "/perf.log");
  // perf writes the file's header once it is attached.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  struct stat st {};
  while (stat(data.c_str(), &st) != 0 || st.st_size == 0) {
    if (!perf->Running() || std::chrono::steady_clock::now() > deadline) {
      return absl::UnavailableError(absl::StrCat("perf record did not start: ", perf->Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::unique_ptr<Profiler>(new Profiler(std::move(perf), data));
}

// SIGINT makes perf record write out its file and exit.
void Profiler::Stop() { perf_->Stop(SIGINT, 60000); }

void Profiler::Report(int lines) {
  std::printf("\nprofile of the broker during the dispatch runs (perf record -g; %s; the run's"
              " figures include perf's own cost)\n"
              "  perf report --no-children --stdio -g none, top %d lines:\n",
              data_.c_str(), lines);
  const std::string command =
      absl::StrCat(kPerf, " report --no-children --stdio -g none -i ", data_, " 2>/dev/null");
  std::FILE* f = popen(command.c_str(), "r");
  if (f == nullptr) {
    std::printf("  cannot run perf report\n");
    return;
  }
  char line[1024];
  int printed = 0;
  while (std::fgets(line, sizeof line, f)) {
    // Comments, blank lines and the dotted rule under the column names.
    const bool rule = std::strspn(line, " .\n") == std::strlen(line);
    if (line[0] == '#' || rule || printed >= lines) continue;
    std::printf("  %s", line);
    ++printed;
  }
  pclose(f);
  if (printed == 0) std::printf("  (perf report printed nothing for %s)\n", data_.c_str());
}

}  // namespace buildd::bench
