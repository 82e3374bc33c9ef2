#include "services/runner/task_executor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/status.h"
#include "services/runner/process_group.h"

namespace buildd::runner {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long output may keep flowing after the shell exited (a background
// child still holding the pipes) before the rest of the group is killed.
constexpr milliseconds kLeftoverOutputWait(2000);

// The last lines of a stream, for an error message.
class Tail {
 public:
  void Add(const std::string& line) {
    if (line.empty()) return;
    lines_.push_back(SanitizeUtf8(line.substr(0, 500)));
    if (lines_.size() > 5) lines_.erase(lines_.begin());
  }
  std::string Text() const { return absl::StrJoin(lines_, " | "); }

 private:
  std::vector<std::string> lines_;
};

void PutString(TaskEvent& e, const std::string& key, const std::string& value) {
  (*e.mutable_data()->mutable_fields())[key].set_string_value(value);
}

// What a human's answer to a plan means to the agent.
std::string AnswerPrompt(const std::string& input, bool to_plan) {
  const std::string word = absl::AsciiStrToLower(absl::StripAsciiWhitespace(input));
  if (to_plan && (word.empty() || word == "approve" || word == "approved" || word == "yes" ||
                  word == "ok" || word == "lgtm")) {
    return "The plan is approved. Implement it now.";
  }
  return input;
}

bool EndsWithQuestion(const std::string& text) {
  const absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(text);
  return !trimmed.empty() && trimmed.back() == '?';
}

TaskEvent MakeEvent(std::string type, std::string status, std::string stream, std::string text) {
  TaskEvent event;
  event.set_type(std::move(type));
  event.set_status(std::move(status));
  event.set_stream(std::move(stream));
  event.set_text(std::move(text));
  return event;
}

TaskEvent StatusEvent(std::string status) { return MakeEvent("status", std::move(status), "", ""); }

constexpr Clock::time_point kNever = Clock::time_point::max();

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
    : spec_(std::move(spec)),
      providers_(spec_.providers),
      cancel_grace_(cancel_grace),
      worktree_name_(SafePathComponent(spec_.task_id.empty() ? spec_.worker_id : spec_.task_id)),
      callbacks_(std::move(callbacks)) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    wake_read_ = fds[0];
    wake_write_ = fds[1];
  }
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    git_stop_read_ = fds[0];
    git_stop_write_ = fds[1];
  }
}

TaskExecutor::~TaskExecutor() {
  if (thread_.joinable()) {
    if (!done()) Kill();
    thread_.join();
  }
  for (int fd : {wake_read_, wake_write_, git_stop_read_, git_stop_write_}) {
    if (fd >= 0) close(fd);
  }
}

void TaskExecutor::Start() {
  thread_ = std::thread([this] { Run(); });
}

void TaskExecutor::Pause() { Post({ActionKind::kPause, ""}); }
void TaskExecutor::Resume() { Post({ActionKind::kResume, ""}); }
void TaskExecutor::Cancel() {
  Post({ActionKind::kCancel, ""});
  StopGit();
}

void TaskExecutor::StopGit() {
  // Stays readable: this git command and every later one of the task stop.
  const char byte = 1;
  ssize_t ignored = write(git_stop_write_, &byte, 1);
  (void)ignored;
}

GitControl TaskExecutor::GitLimits() const {
  return GitControl{git_stop_read_, deadline_, spec_.git_token, TokenHostOf(spec_.repo_url)};
}

void TaskExecutor::Input(std::string text) { Post({ActionKind::kInput, std::move(text)}); }

void TaskExecutor::Kill() {
  killed_.store(true);
  Post({ActionKind::kKill, ""});
  StopGit();
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
    actions_.push_back(std::move(action));
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

void TaskExecutor::Terminate(ProcessGroup* group, Stop why, bool* paused) {
  stop_ = why;
  if (group == nullptr) return;
  group->Signal(SIGTERM).IgnoreError();
  // A stopped process only sees SIGTERM once continued.
  if (*paused) group->Signal(SIGCONT).IgnoreError();
  *paused = false;
  kill_at_ = Clock::now() + cancel_grace_;
}

void TaskExecutor::ApplyActions(ProcessGroup* group, bool exited, bool* paused) {
  for (Action& action : TakeActions()) {
    if (action.kind == ActionKind::kKill) {
      stop_ = Stop::kKill;
      if (group != nullptr) group->Signal(SIGKILL).IgnoreError();
      continue;
    }
    if (action.kind == ActionKind::kInput) {
      inputs_.push_back(std::move(action.text));
      continue;
    }
    if (stop_ != Stop::kNone) continue;
    switch (action.kind) {
      case ActionKind::kPause:
        if (group != nullptr && !exited && !*paused && group->Signal(SIGSTOP).ok()) {
          *paused = true;
          Emit(StatusEvent("paused"));
        }
        break;
      case ActionKind::kResume:
        if (group != nullptr && !exited && *paused && group->Signal(SIGCONT).ok()) {
          *paused = false;
          Emit(StatusEvent("running"));
        }
        break;
      case ActionKind::kCancel:
        Log()->info("worker={} canceling: SIGTERM, SIGKILL in {} ms", spec_.worker_id,
                    cancel_grace_.count());
        Terminate(exited ? nullptr : group, Stop::kCancel, paused);
        break;
      default:
        break;
    }
  }
}

absl::StatusOr<ExitStatus> TaskExecutor::RunProcess(const SpawnOptions& options,
                                                    const LineFn& on_line) {
  SpawnOptions spawn = options;
  spawn.env.insert(spawn.env.begin(), {{"BUILDD_TASK_ID", spec_.task_id},
                                       {"BUILDD_WORKER_ID", spec_.worker_id},
                                       {"BUILDD_WORKSPACE_ID", spec_.workspace_id}});
  spawn.env.insert(spawn.env.end(), spec_.env.begin(), spec_.env.end());
  spawn.unset_env.push_back(kApiKeyEnv);
  if (spec_.sandbox != nullptr) {
    BUILDD_ASSIGN_OR_RETURN(spawn, SandboxedSpawn(*spec_.sandbox, view_, spawn));
  }
  BUILDD_ASSIGN_OR_RETURN(std::unique_ptr<ProcessGroup> group, ProcessGroup::Spawn(spawn));
  Log()->info("worker={} task={} pid={} dir={}", spec_.worker_id, spec_.task_id, group->pid(),
              options.working_dir);
  const ProcessGroup::LineFn lines = [&](OutputStream stream, std::string line) {
    on_line(stream == OutputStream::kStderr, std::move(line));
  };

  bool paused = false;
  kill_at_ = kNever;
  Clock::time_point leftovers_at = kNever;  // give up on output after the exit
  std::optional<ExitStatus> exit;
  // Stopped before it started (canceled while preparing): end it now.
  if (stop_ != Stop::kNone) Terminate(group.get(), stop_, &paused);

  while (true) {
    ApplyActions(group.get(), exit.has_value(), &paused);
    if (stop_ == Stop::kKill) group->Signal(SIGKILL).IgnoreError();
    Clock::time_point now = Clock::now();
    if (!exit.has_value()) {
      if (stop_ == Stop::kNone && now >= deadline_) {
        Log()->info("worker={} timed out after {} s", spec_.worker_id, spec_.timeout_seconds);
        Terminate(group.get(), Stop::kTimeout, &paused);
      }
      if (now >= kill_at_) {
        Log()->info("worker={} still alive after the grace period: SIGKILL", spec_.worker_id);
        group->Signal(SIGKILL).IgnoreError();
        kill_at_ = kNever;
      }
      exit = group->PollExit();
      if (exit.has_value()) {
        // Once the task is being stopped, nothing of it may linger.
        leftovers_at = stop_ == Stop::kNone ? now + kLeftoverOutputWait : now;
      }
    }
    if (exit.has_value()) {
      if (group->output_closed()) break;
      if (now >= leftovers_at) {
        group->Signal(SIGKILL).IgnoreError();
        group->CloseOutput(lines);
        break;
      }
    }
    milliseconds wait(1000);
    if (!exit.has_value() && stop_ == Stop::kNone) wait = std::min(wait, Until(deadline_, now));
    if (!exit.has_value()) wait = std::min(wait, Until(kill_at_, now));
    wait = std::min(wait, Until(leftovers_at, now));
    group->Pump(wait, wake_read_, lines);
  }
  group->FlushLines(lines);
  // Background processes that closed their output would outlive the task.
  group->Signal(SIGKILL).IgnoreError();
  group->Reap();
  return *exit;
}

std::optional<std::string> TaskExecutor::WaitForInput() {
  bool paused = false;
  while (true) {
    ApplyActions(nullptr, /*exited=*/true, &paused);
    if (stop_ != Stop::kNone) return std::nullopt;
    if (!inputs_.empty()) {
      // One answer per wait: a second one sent meanwhile answered nothing.
      std::string input = std::move(inputs_.front());
      if (inputs_.size() > 1) {
        Log()->info("worker={} dropping {} extra answers", spec_.worker_id, inputs_.size() - 1);
      }
      inputs_.clear();
      return input;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline_) {
      stop_ = Stop::kTimeout;
      return std::nullopt;
    }
    pollfd wake{wake_read_, POLLIN, 0};
    const milliseconds wait = std::min(milliseconds(60000), Until(deadline_, now));
    poll(&wake, 1, static_cast<int>(wait.count()));
  }
}

void TaskExecutor::RunAgent(const std::string& dir, TaskResult* result, pb::Artifacts* artifacts) {
  const std::string& provider = spec_.provider;
  result->outcome = TaskOutcome::kError;
  result->exit_code = -1;
  absl::StatusOr<ProviderOptions> options = ParseProviderOptions(spec_.provider_options);
  if (!options.ok()) {
    result->error_message = std::string(options.status().message());
    return;
  }
  // Inside our sandbox Codex's own (bubblewrap again) cannot write: ours is
  // the boundary, so a coding run gets full access to what ours lets it see.
  // A planning pass stays read-only, and so does a task that asks for it.
  if (spec_.sandbox != nullptr && spec_.sandbox->enabled && options->sandbox == "workspace-write") {
    options->sandbox = "danger-full-access";
  }
  if (absl::Status made = EnsureStateDir(provider, providers_); !made.ok()) {
    result->error_message = std::string(made.message());
    return;
  }
  std::string session_id;
  if (!spec_.resume_session.session_id().empty()) {
    session_id = spec_.resume_session.session_id();
    if (absl::Status bad = CheckSessionId(session_id); !bad.ok()) {
      result->error_message = absl::StrCat("cannot resume: ", bad.message());
      return;
    }
    if (!spec_.resume_session.data().empty()) {
      absl::Status restored = RestoreSessionSnapshot(provider, providers_, session_id,
                                                     spec_.resume_session.data(), dir);
      if (!restored.ok()) {
        result->error_message =
            absl::StrCat("cannot restore session ", session_id, ": ", restored.message());
        return;
      }
      // Written by the runner: the agent appends to it.
      if (!view_.home.empty() && spec_.sandbox != nullptr) {
        restored = GiveTree(view_.home, spec_.sandbox->uid, spec_.sandbox->gid);
        if (!restored.ok()) {
          result->error_message = std::string(restored.message());
          return;
        }
      }
    }
    TaskEvent e = MakeEvent("session", "", "", session_id);
    PutString(e, "resumedFrom", spec_.resume_session.task_id());
    Emit(std::move(e));
  }

  // A checkpoint skips the planning pass its plan came from.
  const bool continues = !spec_.continue_prompt.empty();
  if (continues) artifacts->set_plan(spec_.approved_plan);
  AgentRun run;
  run.prompt = continues ? spec_.continue_prompt : spec_.prompt;
  run.session_id = session_id;
  run.plan = spec_.plan_first && !continues;
  double cost = 0;
  while (true) {
    std::unique_ptr<AgentStreamParser> parser = MakeStreamParser(provider);
    Tail stderr_tail;
    const absl::StatusOr<ExitStatus> end = RunProcess(
        AgentCommand(provider, providers_, *options, run, dir),
        [&](bool is_stderr, std::string line) {
          if (is_stderr) {
            stderr_tail.Add(line);
            Emit(MakeEvent("output", "", "stderr", std::move(line)));
            return;
          }
          for (pb::Event& e : parser->Parse(line)) Emit(std::move(e));
        });
    const AgentSummary& summary = parser->summary();
    if (!summary.session_id.empty()) session_id = summary.session_id;
    if (summary.total_cost_usd.has_value()) cost += *summary.total_cost_usd;
    artifacts->set_session_id(session_id);
    artifacts->set_cost_usd(cost);
    if (!end.ok()) {
      result->error_message = absl::StrCat("cannot start ", provider, ": ", end.status().message());
      return;
    }
    result->exit_code = end->exit_code;
    if (stop_ != Stop::kNone) return;
    if (summary.is_error) {
      result->error_message = absl::StrCat(provider, " reported an error: ",
                                           summary.result_text.empty() ? end->Describe()
                                                                       : summary.result_text);
      return;
    }
    if (!end->success() || !summary.finished) {
      const std::string tail = stderr_tail.Text();
      result->error_message =
          absl::StrCat(provider, " ", end->success() ? "ended without a result" : "failed", " (",
                       end->Describe(), ")", tail.empty() ? "" : ": ", tail);
      return;
    }

    // Plan first: post the plan and wait; a plan-first task also waits on a
    // question that ends a turn.
    const bool planning = run.plan;
    if (planning) {
      const std::string plan = summary.plan.empty() ? summary.result_text : summary.plan;
      artifacts->set_plan(plan);
      TaskEvent e = MakeEvent("plan", "", "", plan);
      PutString(e, "sessionId", session_id);
      Emit(std::move(e));
    } else if (spec_.plan_first && EndsWithQuestion(summary.result_text)) {
      Emit(MakeEvent("question", "", "", summary.result_text));
    } else {
      result->outcome = TaskOutcome::kCompleted;
      result->exit_code = 0;
      break;
    }
    if (session_id.empty()) {
      result->error_message = absl::StrCat(provider, " reported no session id to continue");
      return;
    }
    // It came from the agent's output, and goes on its command line.
    if (absl::Status bad = CheckSessionId(session_id); !bad.ok()) {
      result->error_message = absl::StrCat(provider, " reported ", bad.message());
      return;
    }
    Emit(StatusEvent("waiting_input"));
    std::optional<std::string> input = WaitForInput();
    if (!input.has_value()) return;
    run.prompt = AnswerPrompt(*input, planning);
    TaskEvent answered = MakeEvent("input", "", "", *input);
    std::optional<pb::SessionSnapshot> snapshot;
    if (planning && callbacks_.on_checkpoint && !killed_.load()) snapshot = Snapshot(dir, session_id);
    if (snapshot.has_value()) {
      pb::Checkpoint checkpoint;
      *checkpoint.mutable_session() = std::move(*snapshot);
      checkpoint.set_prompt(run.prompt);
      checkpoint.set_plan(artifacts->plan());
      callbacks_.on_checkpoint(std::move(answered), std::move(checkpoint));
    } else {
      Emit(std::move(answered));
    }
    Emit(StatusEvent("running"));
    run.session_id = session_id;
    run.plan = false;
  }

}

void TaskExecutor::KeepSession(const std::string& dir, const pb::Artifacts& artifacts,
                               TaskResult* result) {
  if (artifacts.session_id().empty()) return;
  result->session = Snapshot(dir, artifacts.session_id());
}

std::optional<pb::SessionSnapshot> TaskExecutor::Snapshot(const std::string& dir,
                                                          const std::string& session_id) {
  const std::string& provider = spec_.provider;
  absl::StatusOr<std::string> transcript = ReadSessionSnapshot(provider, providers_, session_id, dir);
  if (!transcript.ok()) {
    Log()->warn("worker={} no session transcript to keep: {}", spec_.worker_id,
                transcript.status().message());
    return std::nullopt;
  }
  if (transcript->size() > spec_.max_snapshot_bytes) {
    Log()->warn("worker={} session transcript of {} bytes is over the {} byte limit: not kept",
                spec_.worker_id, transcript->size(), spec_.max_snapshot_bytes);
    return std::nullopt;
  }
  pb::SessionSnapshot snapshot;
  snapshot.set_task_id(spec_.task_id);
  snapshot.set_provider(provider);
  snapshot.set_session_id(session_id);
  snapshot.set_data(std::move(*transcript));
  return snapshot;
}

absl::Status TaskExecutor::PrepareSandbox(const std::string& dir,
                                          const std::optional<Worktree>& tree) {
  if (spec_.homes_dir.empty()) return absl::OkStatus();
  namespace fs = std::filesystem;
  const int uid = spec_.sandbox == nullptr ? -1 : spec_.sandbox->uid;
  const int gid = spec_.sandbox == nullptr ? -1 : spec_.sandbox->gid;
  if (spec_.sandbox == nullptr || !spec_.sandbox->enabled) {
    Log()->warn("worker={} task={} runs WITHOUT a sandbox (--sandbox=none): it can read and change "
                "everything the runner's user can",
                spec_.worker_id, spec_.task_id);
  }
  const std::string attempt = SafePathComponent(spec_.worker_id);
  const std::string home = absl::StrCat(spec_.homes_dir, "/", attempt);
  std::error_code ec;
  fs::remove_all(home, ec);
  fs::create_directories(home, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", home, ": ", ec.message()));
  fs::permissions(home, fs::perms::owner_all, ec);

  // The agent's own state; spec_.env holds exactly the credentials the
  // task was given for its provider.
  providers_.claude_config_dir = home + "/.claude";
  providers_.codex_home = home + "/.codex";
  if (spec_.provider == "claude" || spec_.provider == "codex") {
    BUILDD_RETURN_IF_ERROR(SeedStateDir(spec_.provider, spec_.providers, providers_,
                                        /*has_key=*/!spec_.env.empty()));
  }
  {
    // Git inside the sandbox works in a worktree whose metadata the runner owns.
    std::ofstream config(home + "/.gitconfig");
    config << "[safe]\n\tdirectory = *\n";
  }
  BUILDD_RETURN_IF_ERROR(GiveTree(home, uid, gid));
  BUILDD_RETURN_IF_ERROR(GiveTree(dir, uid, gid));

  view_.cwd = dir;
  view_.home = home;
  view_.writable = {dir};
  // Its pointer to the cache stays the runner's: the runner's own git reads it.
  view_.protected_files.clear();
  if (tree.has_value()) view_.protected_files.push_back(dir + "/.git");
  view_.network = spec_.network != "none";
  view_.read_only.clear();
  if (tree.has_value()) view_.read_only.push_back(tree->cache_dir);
  if (spec_.sandbox != nullptr) {
    BUILDD_ASSIGN_OR_RETURN(cgroup_, TaskCgroup::Make(*spec_.sandbox, attempt));
    view_.cgroup_procs = cgroup_ == nullptr ? std::vector<std::string>{} : cgroup_->procs();
  }
  return absl::OkStatus();
}

void TaskExecutor::Run() {
  const std::string log_ids = absl::StrCat("worker=", spec_.worker_id, " task=", spec_.task_id);
  if (spec_.timeout_seconds > 0) deadline_ = Clock::now() + std::chrono::seconds(spec_.timeout_seconds);
  const bool agent = spec_.provider == "claude" || spec_.provider == "codex";
  const bool revert = spec_.kind == "revert";
  std::optional<Worktree> tree;
  std::string dir;
  pb::Artifacts artifacts;
  const auto finish = [&](TaskResult result) {
    if (tree.has_value()) spec_.git->Release(tree->name);
    if (!killed_.load() && callbacks_.on_finish) callbacks_.on_finish(std::move(result));
    // The attempt's own home and cgroups (named after the worker, so a retry
    // of the task never meets them) go after it is reported.
    if (!view_.home.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(view_.home, ignored);
    }
    cgroup_.reset();
    absl::MutexLock lock(&mu_);
    done_ = true;
  };
  const auto timed_out = [&] { return absl::StrCat("timed out after ", spec_.timeout_seconds, " s"); };
  const auto fail = [&](const std::string& message, TaskResult result) {
    Log()->warn("{} failed: {}", log_ids, message);
    Emit(MakeEvent("error", "", "", message));
    result.outcome = TaskOutcome::kError;
    result.error_message = message;
    finish(std::move(result));
  };
  // The ending of a task that was killed or canceled (stop_ says which).
  const auto end_stopped = [&](TaskResult result) {
    if (stop_ == Stop::kKill) {
      Log()->info("{} killed", log_ids);
      return finish(std::move(result));  // suppressed by killed_
    }
    Emit(StatusEvent("canceled"));
    result.outcome = TaskOutcome::kCanceled;
    result.error_message = "canceled";
    if (agent || tree.has_value()) result.artifacts = artifacts;
    Log()->info("{} canceled; its directory {} is kept", log_ids, dir);
    finish(std::move(result));
  };
  // Ends the task when it was canceled, killed or timed out meanwhile (a
  // git command interrupted by it fails); false when it was not.
  const auto stopped = [&](TaskResult result) {
    bool paused = false;
    ApplyActions(nullptr, /*exited=*/true, &paused);
    if (stop_ == Stop::kNone && Clock::now() >= deadline_) stop_ = Stop::kTimeout;
    switch (stop_) {
      case Stop::kKill:
      case Stop::kCancel:
        end_stopped(std::move(result));
        return true;
      case Stop::kTimeout:
        fail(timed_out(), std::move(result));
        return true;
      case Stop::kNone:
        break;
    }
    return false;
  };
  TaskEvent started = MakeEvent(
      "started", "", "",
      agent    ? absl::StrCat(spec_.provider, ": ", spec_.title.empty() ? spec_.prompt : spec_.title)
      : revert ? absl::StrCat("revert ", spec_.revert_commit, " on ", spec_.work_branch)
               : spec_.command);
  // It codes on from an approved plan (Assign.checkpoint).
  if (agent && !spec_.continue_prompt.empty()) PutString(started, "stage", "coding");
  if (agent && spec_.kind == "integration") PutString(started, "stage", "installing");
  Emit(std::move(started));

  // The directory: a worktree of the repository, or a plain one.
  const GitWorkspace::Progress progress = [&](const std::string& stage, const std::string& message) {
    TaskEvent e = MakeEvent("git", "", "", message);
    PutString(e, "stage", stage);
    Emit(std::move(e));
  };
  TaskResult none;
  none.exit_code = -1;
  if (!spec_.repo_url.empty()) {
    if (spec_.git == nullptr) return fail("this runner keeps no git worktrees", none);
    absl::StatusOr<Worktree> prepared = spec_.git->Prepare(
        spec_.workspace_id, spec_.repo_url, spec_.base_branch, spec_.work_branch, worktree_name_, progress,
        /*carry_over=*/!revert, GitLimits());
    if (!prepared.ok()) {
      if (stopped(none)) return;
      return fail(std::string(prepared.status().message()), none);
    }
    tree = *prepared;
    dir = tree->path;
    artifacts.set_branch(tree->branch);
    artifacts.set_base_sha(tree->base_sha);
  } else if (revert) {
    return fail("a revert needs a workspace with a repository (repoUrl)", none);
  } else {
    dir = absl::StrCat(spec_.tasks_dir, "/", worktree_name_);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail(absl::StrCat("cannot create ", dir, ": ", ec.message()), none);
  }
  if (absl::Status sandbox = PrepareSandbox(dir, tree); !sandbox.ok()) {
    return fail(std::string(sandbox.message()), none);
  }
  {
    bool paused = false;
    ApplyActions(nullptr, /*exited=*/true, &paused);  // canceled while preparing?
  }

  TaskResult result;
  result.outcome = TaskOutcome::kCompleted;
  // From here on every ending reports what the task left.
  const auto end_with_error = [&](const std::string& message) {
    if (agent || tree.has_value()) result.artifacts = artifacts;
    const std::string copy = message;  // may live in `result`
    if (stop_ == Stop::kNone && stopped(result)) return;
    fail(copy, std::move(result));
  };
  std::optional<CommitResult> commit;
  if (revert) {
    if (stop_ == Stop::kNone) {
      absl::StatusOr<CommitResult> reverted = spec_.git->Revert(
          *tree, spec_.revert_commit, spec_.commit_author, spec_.max_patch_bytes, progress,
          GitLimits());
      if (!reverted.ok()) return end_with_error(std::string(reverted.status().message()));
      commit = *reverted;
    }
  } else if (agent) {
    RunAgent(dir, &result, &artifacts);
    artifacts.set_provider(spec_.provider);
    // Kept whatever the ending, so that a failed or canceled conversation
    // can be continued too.
    KeepSession(dir, artifacts, &result);
  } else {
    SpawnOptions options;
    options.command = spec_.command;
    options.working_dir = dir;
    const absl::StatusOr<ExitStatus> end = RunProcess(options, [&](bool is_stderr, std::string line) {
      Emit(MakeEvent("output", "", is_stderr ? "stderr" : "stdout", std::move(line)));
    });
    if (!end.ok()) return end_with_error(std::string(end.status().message()));
    result.exit_code = end->exit_code;
    if (!end->success()) {
      result.outcome = TaskOutcome::kError;
      result.error_message = end->Describe();
      if (cgroup_ != nullptr && cgroup_->HitMemoryLimit()) {
        absl::StrAppend(&result.error_message, ": the task reached its memory limit of ",
                        spec_.sandbox->memory_bytes, " bytes (--task_memory)");
      }
    }
  }

  switch (stop_) {
    case Stop::kKill:
    case Stop::kCancel:
      return end_stopped(std::move(result));
    case Stop::kTimeout:
      return end_with_error(timed_out());
    case Stop::kNone:
      break;
  }
  if (result.outcome != TaskOutcome::kCompleted) {
    // An agent's failure gets an "error" event with the reason; a
    // command's exit code speaks for itself.
    if (agent) return end_with_error(result.error_message);
    if (tree.has_value()) result.artifacts = artifacts;
    Log()->info("{} finished: {}", log_ids, result.error_message);
    finish(std::move(result));
    return;
  }

  // Finish: commit and push what the task changed.
  if (tree.has_value() && !revert && spec_.auto_commit) {
    const std::string subject =
        SanitizeUtf8(spec_.title.empty() ? spec_.prompt.substr(0, 72) : spec_.title);
    absl::StatusOr<CommitResult> committed = spec_.git->CommitAll(
        *tree, absl::StrCat(subject.empty() ? "buildd task" : subject, "\n\nbuildd-task: ", spec_.task_id),
        spec_.commit_author, spec_.max_patch_bytes, progress, GitLimits());
    if (!committed.ok()) return end_with_error(std::string(committed.status().message()));
    commit = *committed;
  }
  if (commit.has_value()) {
    artifacts.set_commit_sha(commit->sha);
    artifacts.set_diff_stat(commit->diff_stat);
    artifacts.set_patch(commit->patch);
    artifacts.set_patch_truncated(commit->patch_truncated);
  }
  if (tree.has_value() && spec_.push && commit.has_value() && commit->changed) {
    absl::Status pushed = spec_.git->Push(*tree, progress, GitLimits());
    if (!pushed.ok()) return end_with_error(std::string(pushed.message()));
    artifacts.set_pushed(true);
  }
  if (tree.has_value() || agent) result.artifacts = artifacts;
  Log()->info("{} completed", log_ids);
  finish(std::move(result));
}

}  // namespace buildd::runner
