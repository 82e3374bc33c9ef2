#ifndef BUILDD_SERVICES_RUNNER_TASK_EXECUTOR_H_
#define BUILDD_SERVICES_RUNNER_TASK_EXECUTOR_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace buildd::runner {

// One `command` task as the executor needs it.
struct TaskSpec {
  std::string worker_id;
  std::string task_id;
  std::string workspace_id;
  std::string command;
  // > 0: the task is stopped like a cancel once it ran this long.
  int timeout_seconds = 0;
  // Added to the child's environment after BUILDD_TASK_ID,
  // BUILDD_WORKER_ID and BUILDD_WORKSPACE_ID (the task's credentials).
  std::vector<std::pair<std::string, std::string>> env;
  // The task runs in <tasks_dir>/<task id> (created when missing).
  std::string tasks_dir;
};

// What the executor reports; the caller numbers and wraps them.
struct TaskEvent {
  std::string type;    // "started", "output", "status", "error"
  std::string status;  // for "status": "paused", "running", "canceled"
  std::string stream;  // for "output": "stdout" or "stderr"
  std::string text;
};

enum class TaskOutcome { kCompleted, kError, kCanceled };

struct TaskResult {
  TaskOutcome outcome = TaskOutcome::kError;
  // The exit code, or 128 + signal when a signal ended the process.
  int exit_code = 0;
  std::string error_message;
};

// The callbacks run on the executor's own thread, one at a time, in the
// order things happened. They may take the owner's locks, so the owner must
// not Join() or destroy the executor while holding a lock a callback takes.
struct TaskCallbacks {
  std::function<void(TaskEvent)> on_event;
  // Called once, last (not after Kill()).
  std::function<void(TaskResult)> on_finish;
};

// Environment variables the runner keeps from tasks.
inline constexpr char kApiKeyEnv[] = "BUILDD_API_KEY";

// Runs one `command` task on its own thread: creates its directory, spawns
// `/bin/sh -c <command>` in a new process group, turns its output into
// "output" events, applies controls and the timeout, and reports the result.
//
// Events: "started" (text = command) once spawned; "output" per line;
// "status" paused/running on Pause()/Resume(); on Cancel(): SIGTERM to the
// group (and SIGCONT, should it be stopped), SIGKILL after `cancel_grace`,
// then "status" canceled and outcome kCanceled. A timeout does the same
// but reports an "error" event and outcome kError "timed out after N s".
// A spawn failure reports an "error" event and outcome kError.
//
// Control methods are thread-safe and asynchronous (the executor thread
// applies them); they are ignored once the process has ended.
class TaskExecutor {
 public:
  TaskExecutor(TaskSpec spec, std::chrono::milliseconds cancel_grace, TaskCallbacks callbacks);
  // Kills the process group if still running and joins the thread.
  ~TaskExecutor();

  TaskExecutor(const TaskExecutor&) = delete;
  TaskExecutor& operator=(const TaskExecutor&) = delete;

  // Starts the thread. REQUIRES: called once.
  void Start();

  void Pause();
  void Resume();
  void Cancel();
  // SIGKILL to the group right away and no further callbacks, except one
  // that may already be under way: owners must tolerate a late callback.
  void Kill();

  // True once the thread is past its last callback.
  bool done() const;
  // Waits for the thread to end.
  void Join();

  const TaskSpec& spec() const { return spec_; }

 private:
  enum class Action { kPause, kResume, kCancel, kKill };

  void Post(Action action);
  void Run();
  void Emit(TaskEvent event);
  std::vector<Action> TakeActions();

  const TaskSpec spec_;
  const std::chrono::milliseconds cancel_grace_;
  const TaskCallbacks callbacks_;
  int wake_read_ = -1;
  int wake_write_ = -1;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::vector<Action> actions_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> killed_{false};
};

// `id` made safe as one path component: characters other than letters,
// digits, '.', '-' and '_' become '_'; "", "." and ".." become "_".
std::string SafePathComponent(const std::string& id);

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_TASK_EXECUTOR_H_
