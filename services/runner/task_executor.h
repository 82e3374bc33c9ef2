#ifndef BUILDD_SERVICES_RUNNER_TASK_EXECUTOR_H_
#define BUILDD_SERVICES_RUNNER_TASK_EXECUTOR_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <google/protobuf/struct.pb.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "buildd/v1/common.pb.h"
#include "buildd/v1/runner.pb.h"
#include "services/runner/agent_provider.h"
#include "services/runner/git_workspace.h"
#include "services/runner/sandbox.h"

namespace buildd::runner {

// One task as the executor needs it.
struct TaskSpec {
  std::string worker_id;
  std::string task_id;
  std::string workspace_id;
  std::string title;
  // "command", "claude" or "codex".
  std::string provider = "command";
  // "" runs the provider; "revert" reverts `revert_commit` on the work branch.
  std::string kind;
  std::string revert_commit;
  // The shell command of the command provider; the agents' prompt.
  std::string command;
  std::string prompt;
  google::protobuf::Struct provider_options;
  // Agents: a planning pass first, then wait for approval or an answer.
  bool plan_first = false;
  // Non-empty session_id: continue that session (resume_from); the data,
  // when present, is written where the provider looks for it first.
  pb::SessionSnapshot resume_session;
  // Set (with resume_session) when an earlier attempt had its plan approved
  // (Assign.checkpoint): no planning pass; the agent continues that session
  // with this prompt, and `approved_plan` is the attempt's plan.
  std::string continue_prompt;
  std::string approved_plan;
  // The repository; empty: the task runs in <tasks_dir>/<task id>.
  std::string repo_url;
  std::string base_branch;
  std::string work_branch;
  bool auto_commit = false;
  bool push = false;
  // > 0: the task is stopped like a cancel once it ran this long.
  int timeout_seconds = 0;
  // Added to the child's environment after BUILDD_TASK_ID,
  // BUILDD_WORKER_ID and BUILDD_WORKSPACE_ID (the task's credentials).
  std::vector<std::pair<std::string, std::string>> env;
  // The task's GIT_TOKEN: given to its git clone, fetch and push alone
  // (GitControl::token), never to its processes.
  std::string git_token;
  // The task runs in <tasks_dir>/<task id> (created when missing).
  std::string tasks_dir;
  // Its processes get HOME <homes_dir>/<worker id>, made afresh, which holds
  // their own agent configuration (seeded from `providers`' directories)
  // and is removed once the attempt was reported.
  std::string homes_dir;
  // Every process of the task runs in this sandbox; null: unsandboxed.
  const SandboxConfig* sandbox = nullptr;
  // "none": no network in the sandbox.
  std::string network;
  // Runner-wide: worktrees (required when repo_url is set), the agent CLIs,
  // the commit author ("Name <email>") and the patch size cap.
  GitWorkspace* git = nullptr;
  ProviderSettings providers;
  std::string commit_author = "buildd <buildd@localhost>";
  size_t max_patch_bytes = 256 * 1024;
  size_t max_snapshot_bytes = 32 << 20;
};

// What the executor reports: type, status, stream, text, exit_code and
// data of an Event; the caller adds the ids, numbers and wraps it. Types:
// "started", "output" (stream stdout/stderr), "status" (paused, running,
// waiting_input, canceled), "error", "git", "plan", "question", "input",
// and the agents' "session", "assistant_message", "tool_use",
// "tool_result", "result", "warning".
using TaskEvent = pb::Event;

enum class TaskOutcome { kCompleted, kError, kCanceled };

struct TaskResult {
  TaskOutcome outcome = TaskOutcome::kError;
  // The exit code, or 128 + signal when a signal ended the process.
  int exit_code = 0;
  std::string error_message;
  // What the task left (tasks with a repository or an agent).
  std::optional<pb::Artifacts> artifacts;
  // The agent session to continue later (resume_from), when one was stored.
  std::optional<pb::SessionSnapshot> session;
};

// The callbacks run on the executor's own thread, one at a time, in the
// order things happened. They may take the owner's locks, so the owner must
// not Join() or destroy the executor while holding a lock a callback takes.
struct TaskCallbacks {
  std::function<void(TaskEvent)> on_event;
  // Instead of on_event for the "input" event that approved a plan, with
  // where a later attempt continues should this one be lost (unset: that
  // event goes to on_event).
  std::function<void(TaskEvent, pb::Checkpoint)> on_checkpoint;
  // Called once, last (not after Kill()).
  std::function<void(TaskResult)> on_finish;
};

// Environment variables the runner keeps from tasks.
inline constexpr char kApiKeyEnv[] = "BUILDD_API_KEY";

// Runs one task on its own thread:
//  1. "started"; the directory: with a repository a worktree on the work
//     branch ("git" events of each stage), else <tasks_dir>/<task id>.
//  2. the provider in a new process group: `command` as `/bin/sh -c`, its
//     lines "output" events; `claude`/`codex` with their machine output
//     parsed into typed events. Plan-first agents run a planning pass, post
//     a "plan" event, go "waiting_input" and continue the same session with
//     the answer given to Input(); so does a question that ends a turn of a
//     plan-first task. A "revert" task reverts its commit instead.
//  3. on success with a repository: commit (autoCommit) and push (push);
//     the result carries the artifacts and the agent's session transcript.
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
  // The human's answer to a task waiting for input; ignored otherwise.
  void Input(std::string text);
  // SIGKILL to the group right away and no further callbacks, except one
  // that may already be under way: owners must tolerate a late callback.
  void Kill();

  // True once the thread is past its last callback.
  bool done() const;
  // Waits for the thread to end.
  void Join();

  const TaskSpec& spec() const { return spec_; }

 private:
  enum class ActionKind { kPause, kResume, kCancel, kKill, kInput };
  struct Action {
    ActionKind kind;
    std::string text;
  };
  enum class Stop { kNone, kCancel, kTimeout, kKill };
  using LineFn = std::function<void(bool is_stderr, std::string line)>;

  void Post(Action action);
  // Stops the task's git commands, the one under way and every later one.
  void StopGit();
  // What stops the task's git commands: StopGit() and the deadline.
  GitControl GitLimits() const;
  void Run();
  void Emit(TaskEvent event);
  std::vector<Action> TakeActions();
  // Runs one process to its end under the controls and the deadline; an
  // error when it cannot be started.
  absl::StatusOr<ExitStatus> RunProcess(const SpawnOptions& options, const LineFn& on_line);
  // Waits for Input(); nullopt when the task is stopped meanwhile.
  std::optional<std::string> WaitForInput();
  // Applies pause/resume/cancel/kill; inputs are kept for WaitForInput().
  void ApplyActions(ProcessGroup* group, bool exited, bool* paused);
  void Terminate(ProcessGroup* group, Stop why, bool* paused);
  // The provider step of an agent task; fills `result` (outcome, error,
  // session) and `artifacts` (session id, cost, plan).
  void RunAgent(const std::string& dir, TaskResult* result, pb::Artifacts* artifacts);
  // Puts the transcript of artifacts.session_id into result->session.
  void KeepSession(const std::string& dir, const pb::Artifacts& artifacts, TaskResult* result);
  // The transcript of `session_id` as a snapshot; nullopt (logged) when it
  // cannot be read or is over max_snapshot_bytes.
  std::optional<pb::SessionSnapshot> Snapshot(const std::string& dir, const std::string& session_id);
  // Makes the task's home (with its agent's configuration) and the view of
  // its sandbox once its directory `dir` exists, and gives both to the
  // task user.
  absl::Status PrepareSandbox(const std::string& dir, const std::optional<Worktree>& tree);

  const TaskSpec spec_;
  // spec_.providers with the task's own state directories.
  ProviderSettings providers_;
  // What the task's processes see; its home is removed at the end.
  SandboxView view_;
  // Its cgroups (memory, processes) where the runner may make them.
  std::unique_ptr<TaskCgroup> cgroup_;
  const std::chrono::milliseconds cancel_grace_;
  // The task's directory name: its worktree under spec_.git, or under
  // tasks_dir when it has no repository.
  const std::string worktree_name_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  std::chrono::steady_clock::time_point kill_at_ = std::chrono::steady_clock::time_point::max();
  Stop stop_ = Stop::kNone;
  std::vector<std::string> inputs_;  // answers not consumed yet
  const TaskCallbacks callbacks_;
  int wake_read_ = -1;
  // Readable once StopGit() was called.
  int git_stop_read_ = -1;
  int git_stop_write_ = -1;
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
