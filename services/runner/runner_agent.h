#ifndef BUILDD_SERVICES_RUNNER_RUNNER_AGENT_H_
#define BUILDD_SERVICES_RUNNER_RUNNER_AGENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "buildd/v1/runner.pb.h"
#include "services/runner/capabilities.h"
#include "services/runner/outbox.h"
#include "services/runner/sandbox.h"
#include "services/runner/task_executor.h"

namespace buildd::runner {

namespace pb = ::buildd::v1;

// True when the credential `variable` (from the runner's account) belongs
// in the environment of `provider`'s process: ANTHROPIC_API_KEY and
// CLAUDE_CODE_OAUTH_TOKEN for claude, OPENAI_API_KEY for codex, none for a
// command.
bool CredentialFor(const std::string& provider, const std::string& variable);

// Where the agent's outgoing messages go: the stream of the current
// session. Send() queues and returns at once; it may be called with the
// agent's lock held, so it must not call back into the agent.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  virtual void Send(pb::RunnerMessage message) = 0;
};

struct AgentOptions {
  std::string name;
  std::vector<std::string> labels;
  std::vector<Capability> capabilities;
  int max_tasks = 3;
  std::string version;
  // Non-empty: only take tasks of these workspaces.
  std::vector<std::string> workspace_ids;
  // Takes one task, then no more (it drains once it accepted one).
  bool once = false;
  // Non-empty: only this task (Hello.task_id), any other is rejected.
  std::string task_id;
  // Tasks run in <work_dir>/tasks/<task id>.
  std::string work_dir;
  std::chrono::milliseconds cancel_grace{10000};
  // Worktrees of tasks with a repository; null: such tasks fail.
  GitWorkspace* git = nullptr;
  ProviderSettings providers;
  std::string commit_author = "buildd <buildd@localhost>";
  // How every task is isolated; null runs tasks unsandboxed (unit tests).
  const SandboxConfig* sandbox = nullptr;
};

// The runner's side of the protocol, without the transport: holds the
// workers (running and finished-but-unacknowledged), answers the broker's
// messages, numbers events into the outbox and sends them on the live sink.
//
// Sessions: MakeHello() for a new stream, OnWelcome() makes the sink live
// (after stopping stale workers and replaying everything unacknowledged, in
// seq order), OnDisconnected() detaches it; events produced while detached
// wait in the outbox. Thread-safe.
class RunnerAgent {
 public:
  explicit RunnerAgent(AgentOptions options);
  // Kills whatever still runs. REQUIRES: no session uses the agent any more.
  ~RunnerAgent();

  RunnerAgent(const RunnerAgent&) = delete;
  RunnerAgent& operator=(const RunnerAgent&) = delete;

  // Hello with identity, capabilities and resume = every held worker.
  pb::Hello MakeHello() const;

  // Stops and drops Welcome.stale_workers, sends Replay() on `sink`, then
  // sends new messages there until OnDisconnected().
  void OnWelcome(const pb::Welcome& welcome, std::shared_ptr<MessageSink> sink);
  void OnDisconnected();

  // Assign, Control, Ack and Drain. REQUIRES: after OnWelcome().
  void Handle(const pb::BrokerMessage& message);

  // Called (outside the agent's lock) when the broker sends Drain.
  void SetDrainRequestedCallback(std::function<void()> callback);

  // From now on, Assign is rejected with "draining", and the broker is told
  // (Heartbeat.draining) so that it offers none.
  void BeginDrain();
  // Cancels every running task (the normal cancel, with grace).
  void CancelAll();

  // Waits until no task process runs / nothing is left to deliver.
  bool WaitUntilNoRunningTasks(absl::Duration timeout);
  bool WaitUntilDelivered(absl::Duration timeout);
  // Waits until the agent holds no worker and has accepted `enough` tasks
  // (0: any number; kEnough), or has held none for `quiet` (kIdle), or
  // StopWaiting() was called (kStopped).
  enum class Idle { kEnough, kIdle, kStopped };
  Idle WaitUntilIdle(absl::Duration quiet, int64_t enough);
  void StopWaiting();

  int running_tasks() const;
  size_t held_workers() const;
  bool draining() const;

 private:
  struct Worker {
    int64_t epoch = 0;
    uint64_t generation = 0;  // tells a late executor callback from the current one
    std::string task_id;
    bool running = false;
    std::unique_ptr<TaskExecutor> executor;
  };

  void HandleAssign(const pb::Assign& assign) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleControl(const pb::Control& control) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleAck(const pb::Ack& ack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Reject(const pb::Assign& assign, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLocked(pb::RunnerMessage message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrainLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A Heartbeat now, saying whether it drains.
  void SendHeartbeatLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the worker's executor to retired_ (killed when `kill`) and forgets it.
  void RetireLocked(const std::string& worker_id, bool kill) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Joins retired executors; must run without mu_ (their callbacks take it).
  void JoinRetired() ABSL_LOCKS_EXCLUDED(mu_);

  // `checkpoint` travels with the event (RunnerEvent.checkpoint).
  void OnTaskEvent(const std::string& worker_id, uint64_t generation, TaskEvent event,
                   std::optional<pb::Checkpoint> checkpoint = std::nullopt);
  void OnTaskFinished(const std::string& worker_id, uint64_t generation, TaskResult result);

  const AgentOptions options_;

  mutable absl::Mutex mu_;
  std::map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  Outbox outbox_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<MessageSink> sink_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int64_t accepted_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_waiting_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<std::unique_ptr<TaskExecutor>> retired_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_drain_requested_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_RUNNER_AGENT_H_
