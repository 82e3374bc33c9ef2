#include "services/runner/process_group.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace buildd::runner {
namespace {

// Length of the valid UTF-8 character starting at s[i], or 0 when invalid.
size_t Utf8CharLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  return len;
}

void CloseFd(int* fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

// What the child was doing when it failed, reported with errno.
enum ChildStage : int { kRedirect = 1, kChdir = 2, kExec = 3, kLimits = 4, kUser = 5 };

// Writes {stage, errno} to `fd` and exits; only async-signal-safe calls, for
// the child between fork and exec.
[[noreturn]] void ChildFail(int fd, ChildStage stage) {
  const int report[2] = {stage, errno};
  ssize_t ignored = write(fd, report, sizeof report);
  (void)ignored;
  _exit(127);
}

// Writes the calling process's pid to `procs` (a cgroup.procs file); only
// async-signal-safe calls, for the child between fork and exec.
bool JoinCgroup(const char* procs) {
  char digits[24];
  int n = 0;
  for (long pid = getpid(); pid > 0 && n < static_cast<int>(sizeof digits); pid /= 10) {
    digits[n++] = static_cast<char>('0' + pid % 10);
  }
  char text[24];
  for (int i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
  const int fd = open(procs, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, text, static_cast<size_t>(n)) == n;
  close(fd);
  return ok;
}

// dup2 that also clears close-on-exec when the descriptor is already in place.
bool MoveFd(int from, int to) {
  if (from == to) return fcntl(to, F_SETFD, 0) == 0;
  return dup2(from, to) == to;
}

std::vector<std::string> ChildEnvironment(const SpawnOptions& options) {
  std::map<std::string, size_t> index;
  std::vector<std::string> env;
  const auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  for (char** e = options.clear_env ? nullptr : environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    const std::string name = name_of(entry);
    if (std::find(options.unset_env.begin(), options.unset_env.end(), name) !=
        options.unset_env.end()) {
      continue;
    }
    if (index.count(name)) continue;
    index[name] = env.size();
    env.push_back(std::move(entry));
  }
  for (const auto& [name, value] : options.env) {
    if (name.empty() || name.find('=') != std::string::npos) continue;
    std::string entry = absl::StrCat(name, "=", value);
    auto it = index.find(name);
    if (it != index.end()) {
      env[it->second] = std::move(entry);
    } else {
      index[name] = env.size();
      env.push_back(std::move(entry));
    }
  }
  return env;
}

}  // namespace

const char* OutputStreamName(OutputStream stream) {
  return stream == OutputStream::kStdout ? "stdout" : "stderr";
}

std::string SanitizeUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t len = Utf8CharLength(bytes, i);
    if (len == 0) {
      out.append("\xEF\xBF\xBD");
      ++i;
    } else {
      out.append(bytes.substr(i, len));
      i += len;
    }
  }
  return out;
}

void LineSplitter::Feed(std::string_view data, const Emit& emit) {
  while (!data.empty()) {
    const size_t newline = data.find('\n');
    if (newline == std::string_view::npos) {
      partial_.append(data);
      EmitChunks(emit);
      return;
    }
    partial_.append(data.substr(0, newline));
    data.remove_prefix(newline + 1);
    EmitChunks(emit);
    emit(SanitizeUtf8(partial_));
    partial_.clear();
  }
}

void LineSplitter::Flush(const Emit& emit) {
  if (partial_.empty()) return;
  EmitChunks(emit);
  emit(SanitizeUtf8(partial_));
  partial_.clear();
}

void LineSplitter::EmitChunks(const Emit& emit) {
  // Holding up to max_ bytes back: a '\n' may still end the line exactly there.
  while (partial_.size() > max_) {
    size_t cut = max_;
    // Step back over at most three continuation bytes to a character start.
    while (cut > 0 && max_ - cut < 3 &&
           (static_cast<unsigned char>(partial_[cut]) & 0xC0) == 0x80) {
      --cut;
    }
    if (cut == 0 || (static_cast<unsigned char>(partial_[cut]) & 0xC0) == 0x80) cut = max_;
    emit(SanitizeUtf8(std::string_view(partial_).substr(0, cut)));
    partial_.erase(0, cut);
  }
}

std::string ExitStatus::Describe() const {
  if (signal != 0) return absl::StrCat("killed by signal ", signal);
  return absl::StrCat("exit code ", exit_code);
}

absl::StatusOr<std::unique_ptr<ProcessGroup>> ProcessGroup::Spawn(const SpawnOptions& options) {
  // Everything the child needs is prepared before fork: between fork and
  // exec only async-signal-safe calls are allowed (the runner has threads).
  std::vector<std::string> env = ChildEnvironment(options);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = options.argv;
  if (args.empty()) args = {"/bin/sh", "-c", options.command};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int uid = options.uid, gid = options.gid;
  const std::vector<std::string> cgroup_procs = options.cgroup_procs;
  std::vector<std::pair<int, rlimit>> limits;
  for (const auto& [resource, value] : options.rlimits) {
    limits.push_back({resource, rlimit{static_cast<rlim_t>(value), static_cast<rlim_t>(value)}});
  }
  const char* working_dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();

  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, exec_pipe[2] = {-1, -1};
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return absl::InternalError(absl::StrCat("open /dev/null: ", strerror(errno)));
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 ||
      pipe2(exec_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    for (int* fd : {&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1], &exec_pipe[0],
                    &exec_pipe[1], &devnull}) {
      CloseFd(fd);
    }
    return absl::ResourceExhaustedError(absl::StrCat("pipe: ", strerror(err)));
  }

  const pid_t pid = fork();
  if (pid == 0) {
    // A session of its own: no controlling terminal to inject input into.
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
    }
    if (!MoveFd(devnull, STDIN_FILENO) || !MoveFd(out_pipe[1], STDOUT_FILENO) ||
        !MoveFd(err_pipe[1], STDERR_FILENO)) {
      ChildFail(exec_pipe[1], kRedirect);
    }
    // Descriptors the runner opened without O_CLOEXEC must not leak into
    // tasks (close_range exists since Linux 5.11; older kernels skip this).
#ifdef SYS_close_range
    syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
#endif
    for (const std::string& procs : cgroup_procs) {
      if (!JoinCgroup(procs.c_str())) ChildFail(exec_pipe[1], kLimits);
    }
    for (const auto& [resource, limit] : limits) {
      if (setrlimit(resource, &limit) != 0) ChildFail(exec_pipe[1], kLimits);
    }
    if (gid >= 0 && (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0)) {
      ChildFail(exec_pipe[1], kUser);
    }
    if (uid >= 0 && setresuid(uid, uid, uid) != 0) ChildFail(exec_pipe[1], kUser);
    if (working_dir != nullptr && chdir(working_dir) != 0) ChildFail(exec_pipe[1], kChdir);
    execve(argv[0], argv.data(), envp.data());
    ChildFail(exec_pipe[1], kExec);
  }

  const int fork_errno = errno;
  CloseFd(&devnull);
  CloseFd(&out_pipe[1]);
  CloseFd(&err_pipe[1]);
  CloseFd(&exec_pipe[1]);
  if (pid < 0) {
    CloseFd(&out_pipe[0]);
    CloseFd(&err_pipe[0]);
    CloseFd(&exec_pipe[0]);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  // The child's setsid() made the group; it is in place once the exec pipe
  // closes, before anything may signal it.
  // The exec pipe closes on a successful exec; otherwise it carries why not.
  int report[2] = {0, 0};
  ssize_t n;
  do {
    n = read(exec_pipe[0], report, sizeof report);
  } while (n < 0 && errno == EINTR);
  CloseFd(&exec_pipe[0]);
  if (n > 0) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    CloseFd(&out_pipe[0]);
    CloseFd(&err_pipe[0]);
    const char* reason = strerror(report[1]);
    switch (report[0]) {
      case kChdir:
        return absl::FailedPreconditionError(
            absl::StrCat("cannot enter ", options.working_dir, ": ", reason));
      case kExec:
        return absl::FailedPreconditionError(absl::StrCat("cannot execute ", args[0], ": ", reason));
      case kLimits:
        return absl::FailedPreconditionError(
            absl::StrCat("cannot set resource limits or join the task's cgroups: ", reason));
      case kUser:
        return absl::FailedPreconditionError(
            absl::StrCat("cannot switch to uid ", uid, " gid ", gid, ": ", reason));
      default:
        return absl::InternalError(absl::StrCat("cannot redirect the child's output: ", reason));
    }
  }

  auto group = std::unique_ptr<ProcessGroup>(new ProcessGroup());
  group->pid_ = pid;
  group->stdout_fd_ = out_pipe[0];
  group->stderr_fd_ = err_pipe[0];
  group->stdout_lines_ = LineSplitter(options.max_line_bytes);
  group->stderr_lines_ = LineSplitter(options.max_line_bytes);
  fcntl(group->stdout_fd_, F_SETFL, O_NONBLOCK);
  fcntl(group->stderr_fd_, F_SETFL, O_NONBLOCK);
#ifdef SYS_pidfd_open
  // A pidfd makes the leader's exit wake poll(); without one, Pump ticks.
  group->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#endif
  return group;
}

ProcessGroup::~ProcessGroup() {
  if (pid_ > 0 && !reaped_) {
    kill(-pid_, SIGKILL);
    // The leader may be stopped; SIGKILL ends stopped processes too.
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  CloseFd(&stdout_fd_);
  CloseFd(&stderr_fd_);
  CloseFd(&pidfd_);
}

absl::Status ProcessGroup::Signal(int sig) {
  if (reaped_) return absl::FailedPreconditionError("process group already reaped");
  if (kill(-pid_, sig) != 0) {
    if (errno == ESRCH) return absl::NotFoundError("no process left in the group");
    return absl::InternalError(absl::StrCat("kill: ", strerror(errno)));
  }
  return absl::OkStatus();
}

void ProcessGroup::ReadAvailable(int* fd, OutputStream stream, const LineFn& on_line) {
  LineSplitter& splitter = stream == OutputStream::kStdout ? stdout_lines_ : stderr_lines_;
  const auto emit = [&](std::string line) { on_line(stream, std::move(line)); };
  char buffer[64 * 1024];
  // Bounded per round so one chatty stream cannot starve controls.
  for (int round = 0; round < 16 && *fd >= 0; ++round) {
    const ssize_t n = read(*fd, buffer, sizeof buffer);
    if (n > 0) {
      splitter.Feed(std::string_view(buffer, static_cast<size_t>(n)), emit);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    CloseFd(fd);  // end of file or a read error
  }
}

void ProcessGroup::Pump(std::chrono::milliseconds timeout, int wake_fd, const LineFn& on_line) {
  pollfd fds[4];
  nfds_t count = 0;
  int out_index = -1, err_index = -1;
  if (stdout_fd_ >= 0) {
    out_index = static_cast<int>(count);
    fds[count++] = {stdout_fd_, POLLIN, 0};
  }
  if (stderr_fd_ >= 0) {
    err_index = static_cast<int>(count);
    fds[count++] = {stderr_fd_, POLLIN, 0};
  }
  const bool watch_exit = !exit_.has_value() && pidfd_ >= 0;
  if (watch_exit) fds[count++] = {pidfd_, POLLIN, 0};
  if (wake_fd >= 0) fds[count++] = {wake_fd, POLLIN, 0};

  int64_t ms = std::max<int64_t>(0, timeout.count());
  if (!exit_.has_value() && pidfd_ < 0) ms = std::min<int64_t>(ms, 50);
  const int ready = poll(fds, count, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
  if (ready <= 0) return;
  const short kReadable = POLLIN | POLLHUP | POLLERR;
  if (out_index >= 0 && (fds[out_index].revents & kReadable)) {
    ReadAvailable(&stdout_fd_, OutputStream::kStdout, on_line);
  }
  if (err_index >= 0 && (fds[err_index].revents & kReadable)) {
    ReadAvailable(&stderr_fd_, OutputStream::kStderr, on_line);
  }
}

void ProcessGroup::CloseOutput(const LineFn& on_line) {
  ReadAvailable(&stdout_fd_, OutputStream::kStdout, on_line);
  ReadAvailable(&stderr_fd_, OutputStream::kStderr, on_line);
  CloseFd(&stdout_fd_);
  CloseFd(&stderr_fd_);
}

void ProcessGroup::FlushLines(const LineFn& on_line) {
  stdout_lines_.Flush([&](std::string line) { on_line(OutputStream::kStdout, std::move(line)); });
  stderr_lines_.Flush([&](std::string line) { on_line(OutputStream::kStderr, std::move(line)); });
}

std::optional<ExitStatus> ProcessGroup::PollExit() {
  if (exit_.has_value() || reaped_) return exit_;
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  // WNOWAIT leaves the leader a zombie: its pid stays reserved, so the group
  // id cannot be reused before Reap().
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return std::nullopt;
  }
  if (info.si_pid == 0) return std::nullopt;
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.exit_code = info.si_status;
  } else {
    status.signal = info.si_status;
    status.exit_code = 128 + info.si_status;
  }
  exit_ = status;
  CloseFd(&pidfd_);
  return exit_;
}

void ProcessGroup::Reap() {
  if (reaped_ || pid_ <= 0) return;
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
}

absl::StatusOr<CommandResult> RunCommand(const std::string& command,
                                         std::chrono::milliseconds timeout) {
  SpawnOptions options;
  options.command = command;
  return RunCommand(options, timeout);
}

absl::StatusOr<CommandResult> RunCommand(const SpawnOptions& options,
                                         std::chrono::milliseconds timeout, int cancel_fd) {
  auto spawned = ProcessGroup::Spawn(options);
  if (!spawned.ok()) return spawned.status();
  std::unique_ptr<ProcessGroup> group = std::move(spawned).value();

  CommandResult result;
  const auto on_line = [&](OutputStream stream, std::string line) {
    std::string& text = stream == OutputStream::kStdout ? result.stdout_text : result.stderr_text;
    if (!text.empty()) text.push_back('\n');
    text.append(line);
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!(group->output_closed() && group->PollExit().has_value())) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      group->Signal(SIGKILL).IgnoreError();
      group->CloseOutput(on_line);
      break;
    }
    if (cancel_fd >= 0) {
      pollfd cancel{cancel_fd, POLLIN, 0};
      if (poll(&cancel, 1, 0) > 0) {
        result.canceled = true;
        group->Signal(SIGKILL).IgnoreError();
        group->CloseOutput(on_line);
        break;
      }
    }
    group->Pump(std::min(left, std::chrono::milliseconds(100)), cancel_fd, on_line);
  }
  group->FlushLines(on_line);
  while (!group->PollExit().has_value()) {
    group->Pump(std::chrono::milliseconds(20), -1, on_line);
  }
  result.status = *group->PollExit();
  group->Signal(SIGKILL).IgnoreError();  // leftovers of the command
  group->Reap();
  return result;
}

}  // namespace buildd::runner
