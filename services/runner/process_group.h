#ifndef BUILDD_SERVICES_RUNNER_PROCESS_GROUP_H_
#define BUILDD_SERVICES_RUNNER_PROCESS_GROUP_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace buildd::runner {

enum class OutputStream { kStdout, kStderr };

// "stdout" / "stderr", the words of Event.stream.
const char* OutputStreamName(OutputStream stream);

// `bytes` with every invalid UTF-8 sequence replaced by U+FFFD, so that it
// fits a protobuf string field (a peer refuses to parse invalid UTF-8).
std::string SanitizeUtf8(std::string_view bytes);

// Splits a byte stream into lines. A line longer than `max_line_bytes` comes
// out in chunks of at most that size (cut on a UTF-8 character boundary when
// one is near). Lines are passed without their '\n' and made valid UTF-8.
// Not thread-safe.
class LineSplitter {
 public:
  static constexpr size_t kMaxLineBytes = 64 * 1024;
  using Emit = std::function<void(std::string line)>;

  explicit LineSplitter(size_t max_line_bytes = kMaxLineBytes) : max_(max_line_bytes) {}

  // Appends `data`; emits each completed line and each full chunk.
  void Feed(std::string_view data, const Emit& emit);

  // Emits the last line when the stream ended without a newline.
  void Flush(const Emit& emit);

 private:
  void EmitChunks(const Emit& emit);

  size_t max_;
  std::string partial_;
};

// How a process ended.
struct ExitStatus {
  // The exit code, or 128 + signal when a signal ended the process.
  int exit_code = 0;
  // The signal that ended the process; 0 when it exited.
  int signal = 0;

  bool success() const { return signal == 0 && exit_code == 0; }
  // "exit code 3", "killed by signal 9".
  std::string Describe() const;
};

struct SpawnOptions {
  // Run as `/bin/sh -c <command>`, unless `argv` is given.
  std::string command;
  // Non-empty: execve(argv[0], argv) instead (a sandbox wrapping the shell).
  std::vector<std::string> argv;
  // The child's working directory; empty keeps the runner's.
  std::string working_dir;
  // Set in the child's environment on top of the runner's, in order.
  std::vector<std::pair<std::string, std::string>> env;
  // Removed from the inherited environment (e.g. the runner's own secrets).
  std::vector<std::string> unset_env;
  // The child gets only `env`, nothing of the runner's environment.
  bool clear_env = false;
  // >= 0: the child drops to this user and group, with no supplementary
  // groups, before exec (a runner started as root).
  int uid = -1;
  int gid = -1;
  // cgroup.procs files the child joins (writing its pid) before exec.
  std::vector<std::string> cgroup_procs;
  // Resource limits of the child: {RLIMIT_*, value}.
  std::vector<std::pair<int, unsigned long>> rlimits;
  // Longer output lines come out in chunks of this size.
  size_t max_line_bytes = LineSplitter::kMaxLineBytes;
};

// A shell command running as the leader of its own process group, with
// stdin on /dev/null and stdout/stderr read through pipes.
//
// The leader is observed with waitid(WNOWAIT) and reaped only by Reap() or
// the destructor, so its pid — the group id — cannot be reused while this
// object may still signal the group.
//
// Not thread-safe: one thread drives Pump()/PollExit(); signals may be sent
// from that same thread.
class ProcessGroup {
 public:
  using LineFn = std::function<void(OutputStream stream, std::string line)>;

  // Forks, puts the child in a new session and process group (so it has no
  // controlling terminal), resets its signal mask and dispositions, applies
  // the limits and user of `options` and execs /bin/sh (or `argv`). Fails
  // when the working directory cannot be entered, the user cannot be taken
  // or the exec fails.
  static absl::StatusOr<std::unique_ptr<ProcessGroup>> Spawn(const SpawnOptions& options);

  // Kills the group with SIGKILL if the leader was not reaped yet, then reaps.
  ~ProcessGroup();

  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  // The leader's pid, which is also the process group id.
  pid_t pid() const { return pid_; }

  // Sends `sig` to every process of the group. NotFound when none is left;
  // FailedPrecondition after Reap().
  absl::Status Signal(int sig);

  // Waits up to `timeout` for output, the leader's exit, or `wake_fd` (when
  // >= 0) becoming readable, then delivers the complete lines that arrived.
  // Returns after one such round; the caller loops.
  void Pump(std::chrono::milliseconds timeout, int wake_fd, const LineFn& on_line);

  // True once both pipes reached end of file (or were closed by CloseOutput).
  bool output_closed() const { return stdout_fd_ < 0 && stderr_fd_ < 0; }

  // Stops reading: what is still buffered in the pipes is read (without
  // waiting) and delivered first.
  void CloseOutput(const LineFn& on_line);

  // Delivers unterminated last lines. REQUIRES: output_closed().
  void FlushLines(const LineFn& on_line);

  // The leader's exit status once it has exited (without reaping it).
  std::optional<ExitStatus> PollExit();

  // Reaps the leader. REQUIRES: PollExit() returned a value.
  void Reap();

 private:
  ProcessGroup() = default;
  void ReadAvailable(int* fd, OutputStream stream, const LineFn& on_line);

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
  std::optional<ExitStatus> exit_;
  LineSplitter stdout_lines_;
  LineSplitter stderr_lines_;
};

struct CommandResult {
  ExitStatus status;
  std::string stdout_text;  // lines joined with '\n'
  std::string stderr_text;  // likewise
  bool timed_out = false;
  bool canceled = false;
};

// Runs `command` with /bin/sh to completion and captures its stdout; after
// `timeout` the group is killed and `timed_out` set.
absl::StatusOr<CommandResult> RunCommand(const std::string& command,
                                         std::chrono::milliseconds timeout);
// The same with a working directory and environment; when `cancel_fd`
// (>= 0) is or becomes readable the group is killed and `canceled` set.
absl::StatusOr<CommandResult> RunCommand(const SpawnOptions& options,
                                         std::chrono::milliseconds timeout, int cancel_fd = -1);

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_PROCESS_GROUP_H_
