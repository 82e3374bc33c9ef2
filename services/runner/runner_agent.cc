#include "services/runner/runner_agent.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/logging.h"

namespace buildd::runner {

RunnerAgent::RunnerAgent(AgentOptions options) : options_(std::move(options)) {}

RunnerAgent::~RunnerAgent() {
  std::vector<std::unique_ptr<TaskExecutor>> executors;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, worker] : workers_) {
      if (worker.executor == nullptr) continue;
      worker.executor->Kill();
      executors.push_back(std::move(worker.executor));
    }
    workers_.clear();
    for (auto& executor : retired_) executors.push_back(std::move(executor));
    retired_.clear();
    sink_.reset();
  }
  executors.clear();  // joins; late callbacks find no worker
}

pb::Hello RunnerAgent::MakeHello() const {
  pb::Hello hello;
  hello.set_name(options_.name);
  for (const std::string& label : options_.labels) hello.add_labels(label);
  for (const Capability& capability : options_.capabilities) {
    pb::Capability* out = hello.add_capabilities();
    out->set_name(capability.name);
    out->set_version(capability.version);
  }
  hello.set_max_tasks(options_.max_tasks);
  hello.set_version(options_.version);
  // One workspace also the way brokers before workspace_ids read it.
  if (options_.workspace_ids.size() == 1) hello.set_workspace_id(options_.workspace_ids.front());
  for (const std::string& ws : options_.workspace_ids) hello.add_workspace_ids(ws);
  hello.set_task_id(options_.task_id);
  absl::MutexLock lock(&mu_);
  for (pb::ResumeWorker& resume : outbox_.ResumeList()) *hello.add_resume() = std::move(resume);
  return hello;
}

void RunnerAgent::OnWelcome(const pb::Welcome& welcome, std::shared_ptr<MessageSink> sink) {
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& worker_id : welcome.stale_workers()) {
      if (workers_.count(worker_id) == 0) continue;
      Log()->warn("worker={} is stale for the broker: killing it and dropping its events",
                  worker_id);
      RetireLocked(worker_id, /*kill=*/true);
    }
    sink_ = std::move(sink);
    std::vector<pb::RunnerMessage> replay = outbox_.Replay();
    if (!replay.empty()) {
      Log()->info("replaying {} unacknowledged messages of {} workers", replay.size(),
                  outbox_.worker_count());
    }
    for (pb::RunnerMessage& message : replay) sink_->Send(std::move(message));
    if (draining_) SendHeartbeatLocked();
  }
  JoinRetired();
}

void RunnerAgent::OnDisconnected() {
  absl::MutexLock lock(&mu_);
  sink_.reset();
  outbox_.MarkAllUnsent();
}

void RunnerAgent::SetDrainRequestedCallback(std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  on_drain_requested_ = std::move(callback);
}

void RunnerAgent::Handle(const pb::BrokerMessage& message) {
  std::function<void()> drain_requested;
  {
    absl::MutexLock lock(&mu_);
    switch (message.msg_case()) {
      case pb::BrokerMessage::kAssign:
        HandleAssign(message.assign());
        break;
      case pb::BrokerMessage::kControl:
        HandleControl(message.control());
        break;
      case pb::BrokerMessage::kAck:
        HandleAck(message.ack());
        break;
      case pb::BrokerMessage::kDrain:
        Log()->info("the broker asked this runner to drain");
        draining_ = true;
        drain_requested = on_drain_requested_;
        break;
      case pb::BrokerMessage::kWelcome:
        Log()->warn("ignoring a second Welcome on the same stream");
        break;
      case pb::BrokerMessage::MSG_NOT_SET:
        break;
    }
  }
  JoinRetired();
  if (drain_requested) drain_requested();
}

void RunnerAgent::Reject(const pb::Assign& assign, const std::string& reason) {
  Log()->info("worker={} task={} rejected: {}", assign.worker().id(), assign.task().id(), reason);
  pb::RunnerMessage message;
  pb::Reject* reject = message.mutable_reject();
  reject->set_worker_id(assign.worker().id());
  reject->set_epoch(assign.epoch());
  reject->set_reason(reason);
  SendLocked(std::move(message));
}

bool CredentialFor(const std::string& provider, const std::string& variable) {
  if (provider == "claude") {
    return variable == "ANTHROPIC_API_KEY" || variable == "CLAUDE_CODE_OAUTH_TOKEN";
  }
  if (provider == "codex") return variable == "OPENAI_API_KEY";
  return false;
}

void RunnerAgent::HandleAssign(const pb::Assign& assign) {
  const std::string& worker_id = assign.worker().id();
  const pb::Task& task = assign.task();
  if (worker_id.empty()) {
    Log()->warn("ignoring an Assign without worker id (task={})", task.id());
    return;
  }
  if (draining_) return Reject(assign, "draining");
  if (task.provider().empty()) return Reject(assign, "the task names no provider");
  const bool has_provider =
      std::any_of(options_.capabilities.begin(), options_.capabilities.end(),
                  [&](const Capability& c) { return c.name == task.provider(); });
  if (task.provider() != kCommandProvider && !has_provider) {
    return Reject(assign,
                  absl::StrCat("provider ", task.provider(), " is not available on this runner"));
  }
  std::string workspace_id = task.workspace_id();
  if (workspace_id.empty()) workspace_id = assign.workspace().id();
  if (workspace_id.empty()) workspace_id = assign.worker().workspace_id();
  if (!options_.workspace_ids.empty() &&
      std::find(options_.workspace_ids.begin(), options_.workspace_ids.end(), workspace_id) ==
          options_.workspace_ids.end()) {
    return Reject(assign, absl::StrCat("this runner only takes tasks of workspace ",
                                       absl::StrJoin(options_.workspace_ids, ", ")));
  }

  if (!options_.task_id.empty() && task.id() != options_.task_id) {
    return Reject(assign, absl::StrCat("this runner only takes task ", options_.task_id));
  }

  auto held = workers_.find(worker_id);
  if (held != workers_.end()) {
    if (held->second.epoch == assign.epoch()) {
      // A repeated Assign (e.g. after a reconnect): the work is already ours.
      pb::RunnerMessage message;
      message.mutable_accept()->set_worker_id(worker_id);
      message.mutable_accept()->set_epoch(assign.epoch());
      SendLocked(std::move(message));
      return;
    }
    if (held->second.epoch > assign.epoch()) {
      return Reject(assign, absl::StrCat("epoch ", assign.epoch(), " is older than epoch ",
                                         held->second.epoch, " held by this runner"));
    }
    Log()->info("worker={} reassigned with epoch {}: dropping epoch {}", worker_id, assign.epoch(),
                held->second.epoch);
    RetireLocked(worker_id, /*kill=*/true);
  }

  const int running = static_cast<int>(std::count_if(
      workers_.begin(), workers_.end(), [](const auto& entry) { return entry.second.running; }));
  if (running >= options_.max_tasks) {
    return Reject(assign, absl::StrCat("runner at capacity: ", running, " of ", options_.max_tasks,
                                       " tasks running"));
  }
  if (task.provider() == kCommandProvider && task.kind().empty() && task.command().empty()) {
    return Reject(assign, "the task has no command");
  }

  pb::RunnerMessage accept;
  accept.mutable_accept()->set_worker_id(worker_id);
  accept.mutable_accept()->set_epoch(assign.epoch());
  SendLocked(std::move(accept));
  Log()->info("worker={} task={} epoch={} accepted", worker_id, task.id(), assign.epoch());
  ++accepted_;
  if (options_.once) DrainLocked();

  TaskSpec spec;
  spec.worker_id = worker_id;
  spec.task_id = task.id();
  spec.workspace_id = workspace_id;
  spec.title = task.title();
  spec.provider = task.provider();
  spec.kind = task.kind();
  spec.revert_commit = task.revert_commit();
  spec.command = task.command();
  spec.prompt = task.prompt();
  spec.provider_options = task.provider_options();
  spec.plan_first = task.plan_first();
  spec.resume_session = assign.resume_session();
  if (assign.has_checkpoint() && task.plan_first()) {
    spec.resume_session = assign.checkpoint().session();
    spec.continue_prompt = assign.checkpoint().prompt();
    spec.approved_plan = assign.checkpoint().plan();
  }
  spec.repo_url = assign.workspace().repo_url();
  spec.base_branch = task.base_branch().empty() ? assign.workspace().default_branch() : task.base_branch();
  spec.work_branch = task.work_branch();
  spec.auto_commit = task.auto_commit();
  spec.push = task.push();
  spec.git = options_.git;
  spec.providers = options_.providers;
  spec.commit_author = options_.commit_author;
  spec.timeout_seconds = task.timeout_seconds();
  // Sorted, so the child's environment does not depend on map order.
  // The account's provider keys go to its agents only, each to its own.
  for (const auto& [key, value] : assign.credentials().env()) {
    if (CredentialFor(task.provider(), key)) spec.env.emplace_back(key, value);
  }
  // Only git sees the task's git token, through its credential helper.
  if (auto git_token = assign.credentials().env().find("GIT_TOKEN");
      git_token != assign.credentials().env().end()) {
    spec.git_token = git_token->second;
  }
  std::sort(spec.env.begin(), spec.env.end());
  spec.tasks_dir = absl::StrCat(options_.work_dir, "/tasks");
  spec.homes_dir = absl::StrCat(options_.work_dir, "/homes");
  spec.sandbox = options_.sandbox;
  spec.network = task.network().empty() ? assign.workspace().network() : task.network();

  Worker& worker = workers_[worker_id];
  worker.epoch = assign.epoch();
  worker.generation = next_generation_++;
  worker.task_id = task.id();
  worker.running = true;
  outbox_.Open(worker_id, assign.epoch());
  const uint64_t generation = worker.generation;
  TaskCallbacks callbacks;
  callbacks.on_event = [this, worker_id, generation](TaskEvent event) {
    OnTaskEvent(worker_id, generation, std::move(event));
  };
  callbacks.on_checkpoint = [this, worker_id, generation](TaskEvent event, pb::Checkpoint checkpoint) {
    OnTaskEvent(worker_id, generation, std::move(event), std::move(checkpoint));
  };
  callbacks.on_finish = [this, worker_id, generation](TaskResult result) {
    OnTaskFinished(worker_id, generation, std::move(result));
  };
  worker.executor =
      std::make_unique<TaskExecutor>(std::move(spec), options_.cancel_grace, std::move(callbacks));
  // Its callbacks wait for mu_, so "started" follows the Accept.
  worker.executor->Start();
}

void RunnerAgent::HandleControl(const pb::Control& control) {
  auto it = workers_.find(control.worker_id());
  if (it == workers_.end() || it->second.epoch != control.epoch()) {
    Log()->info("ignoring control {} for unknown worker={} epoch={}",
                pb::Control::Action_Name(control.action()), control.worker_id(), control.epoch());
    return;
  }
  Worker& worker = it->second;
  if (!worker.running) {
    Log()->info("ignoring control {} for finished worker={}",
                pb::Control::Action_Name(control.action()), control.worker_id());
    return;
  }
  Log()->info("worker={} control {}", control.worker_id(),
              pb::Control::Action_Name(control.action()));
  switch (control.action()) {
    case pb::Control::pause:
      worker.executor->Pause();
      break;
    case pb::Control::resume:
      worker.executor->Resume();
      break;
    case pb::Control::cancel:
      worker.executor->Cancel();
      break;
    case pb::Control::input:
      worker.executor->Input(control.text());
      break;
    default:
      break;
  }
}

void RunnerAgent::HandleAck(const pb::Ack& ack) {
  if (outbox_.Ack(ack.worker_id(), ack.up_to_seq())) {
    Log()->debug("worker={} fully acknowledged: forgotten", ack.worker_id());
    RetireLocked(ack.worker_id(), /*kill=*/false);
  }
}

void RunnerAgent::SendLocked(pb::RunnerMessage message) {
  if (sink_ != nullptr) sink_->Send(std::move(message));
}

void RunnerAgent::DrainLocked() {
  if (draining_) return;
  draining_ = true;
  SendHeartbeatLocked();
}

void RunnerAgent::SendHeartbeatLocked() {
  pb::RunnerMessage message;
  message.mutable_heartbeat()->set_load(static_cast<int32_t>(std::count_if(
      workers_.begin(), workers_.end(), [](const auto& entry) { return entry.second.running; })));
  message.mutable_heartbeat()->set_draining(draining_);
  SendLocked(std::move(message));
}

void RunnerAgent::RetireLocked(const std::string& worker_id, bool kill) {
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) {
    if (it->second.executor != nullptr) {
      if (kill) it->second.executor->Kill();
      retired_.push_back(std::move(it->second.executor));
    }
    workers_.erase(it);
  }
  outbox_.Drop(worker_id);
}

void RunnerAgent::JoinRetired() {
  std::vector<std::unique_ptr<TaskExecutor>> retired;
  {
    absl::MutexLock lock(&mu_);
    retired.swap(retired_);
  }
  retired.clear();
}

void RunnerAgent::OnTaskEvent(const std::string& worker_id, uint64_t generation, TaskEvent event,
                              std::optional<pb::Checkpoint> checkpoint) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.generation != generation) return;
  pb::Event out = std::move(event);
  out.set_worker_id(worker_id);
  out.set_task_id(it->second.task_id);
  if (out.created_at().empty()) out.set_created_at(NowRfc3339());
  out.set_text(SanitizeUtf8(out.text()));
  out.set_runner_name(options_.name);
  pb::RunnerMessage message;
  *message.mutable_event() = outbox_.Append(worker_id, std::move(out), std::move(checkpoint));
  SendLocked(std::move(message));
}

void RunnerAgent::OnTaskFinished(const std::string& worker_id, uint64_t generation,
                                 TaskResult result) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.generation != generation) return;
  it->second.running = false;
  pb::Finished finished;
  switch (result.outcome) {
    case TaskOutcome::kCompleted:
      finished.set_outcome(pb::Finished::completed);
      break;
    case TaskOutcome::kError:
      finished.set_outcome(pb::Finished::error);
      break;
    case TaskOutcome::kCanceled:
      finished.set_outcome(pb::Finished::canceled);
      break;
  }
  finished.set_exit_code(result.exit_code);
  finished.set_error_message(SanitizeUtf8(result.error_message));
  if (result.artifacts.has_value()) *finished.mutable_artifacts() = std::move(*result.artifacts);
  if (result.session.has_value()) *finished.mutable_session() = std::move(*result.session);
  pb::RunnerMessage message;
  *message.mutable_finished() = outbox_.Finish(worker_id, std::move(finished));
  if (sink_ != nullptr) {
    sink_->Send(std::move(message));
    outbox_.MarkFinishedSent(worker_id);
  }
}

void RunnerAgent::BeginDrain() {
  absl::MutexLock lock(&mu_);
  DrainLocked();
}

void RunnerAgent::CancelAll() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, worker] : workers_) {
    if (worker.running && worker.executor != nullptr) {
      Log()->info("worker={} canceled by the drain", id);
      worker.executor->Cancel();
    }
  }
}

bool RunnerAgent::WaitUntilNoRunningTasks(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto none_running = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return std::none_of(workers_.begin(), workers_.end(),
                        [](const auto& entry) { return entry.second.running; });
  };
  return mu_.AwaitWithTimeout(absl::Condition(&none_running), timeout);
}

bool RunnerAgent::WaitUntilDelivered(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto delivered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return workers_.empty(); };
  return mu_.AwaitWithTimeout(absl::Condition(&delivered), timeout);
}

RunnerAgent::Idle RunnerAgent::WaitUntilIdle(absl::Duration quiet, int64_t enough) {
  absl::MutexLock lock(&mu_);
  while (true) {
    const auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_waiting_ || workers_.empty();
    };
    mu_.Await(absl::Condition(&idle));
    if (stop_waiting_) return Idle::kStopped;
    if (enough > 0 && accepted_ >= enough) return Idle::kEnough;
    // Idle from now: it stays so for `quiet` unless it takes a task.
    const int64_t seen = accepted_;
    const auto busy = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_waiting_ || accepted_ != seen;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&busy), quiet)) return Idle::kIdle;
    if (stop_waiting_) return Idle::kStopped;
  }
}

void RunnerAgent::StopWaiting() {
  absl::MutexLock lock(&mu_);
  stop_waiting_ = true;
}

int RunnerAgent::running_tasks() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(std::count_if(workers_.begin(), workers_.end(),
                                        [](const auto& entry) { return entry.second.running; }));
}

size_t RunnerAgent::held_workers() const {
  absl::MutexLock lock(&mu_);
  return workers_.size();
}

bool RunnerAgent::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

}  // namespace buildd::runner
