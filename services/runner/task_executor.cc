#include "services/runner/task_executor.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "services/runner/process_group.h"

namespace buildd::runner {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long output may keep flowing after the shell exited (a background
// child still holding the pipes) before the rest of the group is killed.
constexpr milliseconds kLeftoverOutputWait(2000);

TaskEvent MakeEvent(std::string type, std::string status, std::string stream, std::string text) {
  TaskEvent event;
  event.type = std::move(type);
  event.status = std::move(status);
  event.stream = std::move(stream);
  event.text = std::move(text);
  return event;
}

TaskEvent StatusEvent(std::string status) { return MakeEvent("status", std::move(status), "", ""); }

milliseconds Until(Clock::time_point when, Clock::time_point now) {
  if (when == Clock::time_point::max()) return milliseconds::max();
  return std::max(milliseconds(0), std::chrono::ceil<milliseconds>(when - now));
}

}  // namespace

std::string SafePathComponent(const std::string& id) {
  std::string out = id;
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
      c = '_';
    }
  }
  if (out.empty() || out == "." || out == "..") return "_";
  return out;
}

TaskExecutor::TaskExecutor(TaskSpec spec, milliseconds cancel_grace, TaskCallbacks callbacks)
    : spec_(std::move(spec)), cancel_grace_(cancel_grace), callbacks_(std::move(callbacks)) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    wake_read_ = fds[0];
    wake_write_ = fds[1];
  }
}

TaskExecutor::~TaskExecutor() {
  if (thread_.joinable()) {
    if (!done()) Kill();
    thread_.join();
  }
  if (wake_read_ >= 0) close(wake_read_);
  if (wake_write_ >= 0) close(wake_write_);
}

void TaskExecutor::Start() {
  thread_ = std::thread([this] { Run(); });
}

void TaskExecutor::Pause() { Post(Action::kPause); }
void TaskExecutor::Resume() { Post(Action::kResume); }
void TaskExecutor::Cancel() { Post(Action::kCancel); }

void TaskExecutor::Kill() {
  killed_.store(true);
  Post(Action::kKill);
}

bool TaskExecutor::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

void TaskExecutor::Join() {
  if (thread_.joinable()) thread_.join();
}

void TaskExecutor::Post(Action action) {
  {
    absl::MutexLock lock(&mu_);
    actions_.push_back(action);
  }
  if (wake_write_ >= 0) {
    const char byte = 1;
    ssize_t ignored = write(wake_write_, &byte, 1);  // a full pipe already wakes
    (void)ignored;
  }
}

std::vector<TaskExecutor::Action> TaskExecutor::TakeActions() {
  if (wake_read_ >= 0) {
    char buffer[64];
    while (read(wake_read_, buffer, sizeof buffer) > 0) {
    }
  }
  absl::MutexLock lock(&mu_);
  std::vector<Action> actions;
  actions.swap(actions_);
  return actions;
}

void TaskExecutor::Emit(TaskEvent event) {
  if (killed_.load()) return;
  if (callbacks_.on_event) callbacks_.on_event(std::move(event));
}

void TaskExecutor::Run() {
  const std::string log_ids = absl::StrCat("worker=", spec_.worker_id, " task=", spec_.task_id);
  const auto finish = [&](TaskResult result) {
    if (!killed_.load() && callbacks_.on_finish) callbacks_.on_finish(std::move(result));
    absl::MutexLock lock(&mu_);
    done_ = true;
  };
  const auto fail_to_start = [&](const std::string& message) {
    Log()->warn("{} cannot start: {}", log_ids, message);
    Emit(MakeEvent("error", "", "", message));
    TaskResult result;
    result.outcome = TaskOutcome::kError;
    result.exit_code = -1;
    result.error_message = message;
    finish(std::move(result));
  };

  const std::string dir =
      absl::StrCat(spec_.tasks_dir, "/",
                   SafePathComponent(spec_.task_id.empty() ? spec_.worker_id : spec_.task_id));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    fail_to_start(absl::StrCat("cannot create ", dir, ": ", ec.message()));
    return;
  }

  SpawnOptions options;
  options.command = spec_.command;
  options.working_dir = dir;
  options.env = {{"BUILDD_TASK_ID", spec_.task_id},
                 {"BUILDD_WORKER_ID", spec_.worker_id},
                 {"BUILDD_WORKSPACE_ID", spec_.workspace_id}};
  options.env.insert(options.env.end(), spec_.env.begin(), spec_.env.end());
  options.unset_env = {kApiKeyEnv};
  auto spawned = ProcessGroup::Spawn(options);
  if (!spawned.ok()) {
    fail_to_start(std::string(spawned.status().message()));
    return;
  }
  std::unique_ptr<ProcessGroup> group = std::move(spawned).value();
  Log()->info("{} started pid={} dir={}", log_ids, group->pid(), dir);
  Emit(MakeEvent("started", "", "", spec_.command));

  const auto on_line = [&](OutputStream stream, std::string line) {
    Emit(MakeEvent("output", "", OutputStreamName(stream), std::move(line)));
  };

  enum class Stop { kNone, kCancel, kTimeout, kKill };
  Stop stop = Stop::kNone;
  bool paused = false;
  const Clock::time_point started_at = Clock::now();
  constexpr Clock::time_point kNever = Clock::time_point::max();
  const Clock::time_point timeout_at =
      spec_.timeout_seconds > 0 ? started_at + std::chrono::seconds(spec_.timeout_seconds) : kNever;
  Clock::time_point kill_at = kNever;       // SIGKILL escalation after SIGTERM
  Clock::time_point leftovers_at = kNever;  // give up on output after the exit
  std::optional<ExitStatus> exit;

  const auto terminate = [&](Stop why) {
    stop = why;
    group->Signal(SIGTERM).IgnoreError();
    // A stopped process only sees SIGTERM once continued.
    if (paused) group->Signal(SIGCONT).IgnoreError();
    paused = false;
    kill_at = Clock::now() + cancel_grace_;
  };

  while (true) {
    for (Action action : TakeActions()) {
      if (action == Action::kKill) {
        stop = Stop::kKill;
        group->Signal(SIGKILL).IgnoreError();
        continue;
      }
      if (exit.has_value() || stop != Stop::kNone) continue;
      switch (action) {
        case Action::kPause:
          if (!paused && group->Signal(SIGSTOP).ok()) {
            paused = true;
            Emit(StatusEvent("paused"));
          }
          break;
        case Action::kResume:
          if (paused && group->Signal(SIGCONT).ok()) {
            paused = false;
            Emit(StatusEvent("running"));
          }
          break;
        case Action::kCancel:
          Log()->info("{} canceling: SIGTERM, SIGKILL in {} ms", log_ids, cancel_grace_.count());
          terminate(Stop::kCancel);
          break;
        case Action::kKill:
          break;
      }
    }

    Clock::time_point now = Clock::now();
    if (!exit.has_value()) {
      if (stop == Stop::kNone && now >= timeout_at) {
        Log()->info("{} timed out after {} s", log_ids, spec_.timeout_seconds);
        terminate(Stop::kTimeout);
      }
      if (now >= kill_at) {
        Log()->info("{} still alive after the grace period: SIGKILL", log_ids);
        group->Signal(SIGKILL).IgnoreError();
        kill_at = kNever;
      }
      exit = group->PollExit();
      if (exit.has_value()) {
        // Once the task is being stopped, nothing of it may linger.
        leftovers_at = stop == Stop::kNone ? now + kLeftoverOutputWait : now;
      }
    }
    if (exit.has_value()) {
      if (group->output_closed()) break;
      if (now >= leftovers_at) {
        group->Signal(SIGKILL).IgnoreError();
        group->CloseOutput(on_line);
        break;
      }
    }

    milliseconds wait(1000);
    if (!exit.has_value() && stop == Stop::kNone) wait = std::min(wait, Until(timeout_at, now));
    if (!exit.has_value()) wait = std::min(wait, Until(kill_at, now));
    wait = std::min(wait, Until(leftovers_at, now));
    group->Pump(wait, wake_read_, on_line);
  }

  group->FlushLines(on_line);
  // Background processes that closed their output would outlive the task.
  group->Signal(SIGKILL).IgnoreError();
  group->Reap();

  TaskResult result;
  result.exit_code = exit->exit_code;
  switch (stop) {
    case Stop::kKill:
      Log()->info("{} killed", log_ids);
      finish(result);  // suppressed by killed_
      return;
    case Stop::kCancel:
      Emit(StatusEvent("canceled"));
      result.outcome = TaskOutcome::kCanceled;
      result.error_message = absl::StrCat("canceled (", exit->Describe(), ")");
      break;
    case Stop::kTimeout:
      result.outcome = TaskOutcome::kError;
      result.error_message = absl::StrCat("timed out after ", spec_.timeout_seconds, " s");
      Emit(MakeEvent("error", "", "", result.error_message));
      break;
    case Stop::kNone:
      if (exit->success()) {
        result.outcome = TaskOutcome::kCompleted;
      } else {
        result.outcome = TaskOutcome::kError;
        result.error_message = exit->Describe();
      }
      break;
  }
  Log()->info("{} finished: {}", log_ids,
              result.error_message.empty() ? exit->Describe() : result.error_message);
  finish(std::move(result));
}

}  // namespace buildd::runner
