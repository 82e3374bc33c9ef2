#include "services/broker/broker_service.h"

#include <boost/asio/post.hpp>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/text.h"
#include "common/write_queue.h"

namespace buildd::broker {
namespace {

std::optional<std::set<std::string>> Visible(const Principal& p) {
  if (p.is_admin) return std::nullopt;
  return p.visible;
}

absl::Status CheckVisible(const Principal& p, const std::string& workspace_id,
                          const std::string& what) {
  // Not found rather than forbidden: do not reveal other workspaces' ids.
  if (!p.CanSee(workspace_id)) return absl::NotFoundError(absl::StrCat(what, " not found"));
  return absl::OkStatus();
}

// Git's rules for a branch name (git check-ref-format), a little stricter:
// it becomes a path and a command argument on runners.
absl::Status CheckBranchName(const std::string& name, const char* field) {
  const auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", name, "\" is not a valid branch name: ", why));
  };
  if (name.empty()) return absl::OkStatus();
  if (name.size() > 200) return bad("longer than 200 characters");
  for (char c : name) {
    const bool ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '-' ||
                    c == '_' || c == '.' || c == '+';
    if (!ok) return bad("only letters, digits and / - _ . + are allowed");
  }
  if (name.front() == '-' || name.front() == '/' || name.front() == '.') {
    return bad("it must not start with - / or .");
  }
  if (name.back() == '/' || name.back() == '.' || absl::EndsWith(name, ".lock")) {
    return bad("it must not end with / . or .lock");
  }
  if (absl::StrContains(name, "..") || absl::StrContains(name, "//") ||
      absl::StrContains(name, "/.")) {
    return bad("it must not contain .. // or /.");
  }
  return absl::OkStatus();
}

// A repository URL or path git will be given as-is on runners.
absl::Status CheckRepoUrl(const std::string& url) {
  if (url.empty()) return absl::OkStatus();
  const auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("repoUrl ", why));
  };
  if (url.size() > 2000) return bad("is longer than 2000 characters");
  if (url.front() == '-') return bad("must not start with '-'");
  for (char c : url) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return bad("must not hold control characters");
  }
  // Credentials would be stored and shown with the workspace: runners
  // authenticate with their own SSH keys or credential helpers instead.
  const size_t scheme = url.find("://");
  if (scheme != std::string::npos) {
    const std::string authority = url.substr(scheme + 3, url.find('/', scheme + 3) - scheme - 3);
    const size_t at = authority.rfind('@');
    if (at != std::string::npos) {
      const std::string userinfo = authority.substr(0, at);
      const std::string kind = absl::AsciiStrToLower(url.substr(0, scheme));
      if (userinfo.find(':') != std::string::npos || kind == "http" || kind == "https") {
        return bad("must not embed credentials (user:password@ or token@): give the runners "
                   "their own git credentials");
      }
    }
  }
  return absl::OkStatus();
}

bool IsCommitSha(const std::string& sha) {
  if (sha.size() < 7 || sha.size() > 64) return false;
  return std::all_of(sha.begin(), sha.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
  });
}

}  // namespace

namespace {

// The server takes messages as large as a runner's Finished; a unary call
// gets no more than the other services allow.
absl::Status CheckRequestSize(const google::protobuf::Message& request) {
  if (request.ByteSizeLong() <= static_cast<size_t>(kMaxRequestBytes)) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("the request is larger than ", kMaxRequestBytes, " bytes"));
}

absl::Status CheckNetwork(const std::string& network) {
  if (network.empty() || network == "none") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("network must be empty (on) or none, not \"", network.substr(0, 40), "\""));
}

}  // namespace

absl::Status ValidateNewTask(pb::Task& task) {
  BUILDD_RETURN_IF_ERROR(CheckNetwork(task.network()));
  BUILDD_RETURN_IF_ERROR(CheckUuid(task.workspace_id(), "workspaceId"));
  if (!task.kind().empty() && task.kind() != "revert") {
    return absl::InvalidArgumentError(
        absl::StrCat("kind must be empty or revert, not \"", task.kind(), "\""));
  }
  BUILDD_RETURN_IF_ERROR(CheckBranchName(task.base_branch(), "baseBranch"));
  BUILDD_RETURN_IF_ERROR(CheckBranchName(task.work_branch(), "workBranch"));
  if (task.concurrency_key().size() > 200) {
    return absl::InvalidArgumentError("concurrencyKey is longer than 200 characters");
  }
  for (char c : task.concurrency_key()) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("concurrencyKey must not contain control characters");
    }
  }
  if (!task.resume_from().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(task.resume_from(), "resumeFrom"));
  if (task.kind() == "revert") {
    task.set_revert_commit(absl::AsciiStrToLower(task.revert_commit()));
    if (!IsCommitSha(task.revert_commit())) {
      return absl::InvalidArgumentError("revertCommit must be a commit sha (7 to 64 hex digits)");
    }
    if (task.work_branch().empty()) {
      return absl::InvalidArgumentError("workBranch is required: the branch to revert on");
    }
    // Every runner can revert: git is all it takes.
    if (task.provider().empty()) task.set_provider("command");
    if (task.provider() != "command") {
      return absl::InvalidArgumentError("provider must be empty or command for kind revert");
    }
    if (task.title().empty()) task.set_title(absl::StrCat("Revert ", task.revert_commit()));
    task.set_auto_commit(true);
  } else if (!task.revert_commit().empty()) {
    return absl::InvalidArgumentError("revertCommit is only for kind revert");
  }
  // JSON and gRPC clients may send enum numbers the proto does not name.
  if (!pb::Task::RunnerPreference_IsValid(task.runner_preference())) {
    return absl::InvalidArgumentError("runnerPreference must be any, user, service or action");
  }
  if (task.provider().empty()) task.set_provider(task.command().empty() ? "claude" : "command");
  if (task.provider() != "command" && task.provider() != "claude" && task.provider() != "codex") {
    return absl::InvalidArgumentError(
        absl::StrCat("provider must be command, claude or codex, not \"", task.provider(), "\""));
  }
  if (task.provider() == "command" && task.command().empty() && task.kind() != "revert") {
    return absl::InvalidArgumentError("command is required when provider is command");
  }
  if (task.provider() != "command" && task.prompt().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is required when provider is ", task.provider()));
  }
  // Both reach the agent or shell as one argument, which the kernel caps.
  constexpr size_t kMaxArgument = 100 * 1024;
  if (task.prompt().size() > kMaxArgument) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is longer than ", kMaxArgument, " bytes"));
  }
  if (task.command().size() > kMaxArgument) {
    return absl::InvalidArgumentError(absl::StrCat("command is longer than ", kMaxArgument, " bytes"));
  }
  BUILDD_RETURN_IF_ERROR(CheckText("title", task.title()));
  BUILDD_RETURN_IF_ERROR(CheckText("prompt", task.prompt(), TextKind::kMultiline));
  BUILDD_RETURN_IF_ERROR(CheckText("command", task.command(), TextKind::kMultiline));
  BUILDD_RETURN_IF_ERROR(CheckStrings("providerOptions", task.provider_options()));
  // One workspace's tasks may go first on a shared runner, not starve the
  // others; and a task that kills its runner does so a bounded number of times.
  if (task.priority() < kMinPriority || task.priority() > kMaxPriority) {
    return absl::InvalidArgumentError(absl::StrCat("priority must be within ", kMinPriority, "…",
                                                   kMaxPriority, ", not ", task.priority()));
  }
  if (task.max_attempts() == 0) task.set_max_attempts(kDefaultMaxAttempts);
  if (task.max_attempts() < 1 || task.max_attempts() > kMaxAttempts) {
    return absl::InvalidArgumentError(absl::StrCat("maxAttempts must be within 1…", kMaxAttempts,
                                                   " (0 means ", kDefaultMaxAttempts, "), not ",
                                                   task.max_attempts()));
  }
  if (task.timeout_seconds() < 0) return absl::InvalidArgumentError("timeoutSeconds must not be negative");
  if (task.title().size() > 500) return absl::InvalidArgumentError("title is longer than 500 characters");
  if (task.title().empty()) {
    const std::string& source = task.prompt().empty() ? task.command() : task.prompt();
    task.set_title(source.substr(0, 80));
  }
  for (const std::string& label : task.required_labels()) {
    if (label.empty()) return absl::InvalidArgumentError("requiredLabels must not hold empty labels");
    BUILDD_RETURN_IF_ERROR(CheckText("requiredLabels", label));
  }
  return absl::OkStatus();
}

BrokerServiceImpl::BrokerServiceImpl(Authenticator& auth, BrokerStore& store,
                                     Dispatcher& dispatcher, Journal& journal, EventHub& hub,
                                     boost::asio::thread_pool& pool,
                                     boost::asio::thread_pool& stream_pool, Options options)
    : auth_(auth),
      store_(store),
      dispatcher_(dispatcher),
      journal_(journal),
      hub_(hub),
      pool_(pool),
      stream_pool_(stream_pool),
      options_(options) {}

template <typename Fn>
grpc::ServerUnaryReactor* BrokerServiceImpl::Run(grpc::CallbackServerContext* ctx,
                                                 const google::protobuf::Message& request, Fn fn) {
  static auto& calls = Metrics::Global().Counter("buildd_broker_unary_calls_total",
                                                 "Unary BrokerService calls.");
  ++calls;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status st = CheckRequestSize(request); !st.ok()) {
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }
  boost::asio::post(pool_, [this, reactor, key = BearerToken(*ctx), fn = std::move(fn)]() mutable {
    absl::StatusOr<Principal> principal = auth_.Authenticate(key);
    if (!principal.ok()) {
      reactor->Finish(ToGrpcStatus(principal.status()));
      return;
    }
    reactor->Finish(ToGrpcStatus(fn(*principal)));
  });
  return reactor;
}

grpc::ServerUnaryReactor* BrokerServiceImpl::CreateWorkspace(grpc::CallbackServerContext* ctx,
                                                             const pb::CreateWorkspaceRequest* req,
                                                             pb::Workspace* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    if (!p.is_admin) return absl::PermissionDeniedError("creating a workspace needs an admin key");
    if (req->name().empty()) return absl::InvalidArgumentError("name is required");
    if (req->name().size() > 200) return absl::InvalidArgumentError("name is longer than 200 characters");
    BUILDD_RETURN_IF_ERROR(CheckText("name", req->name()));
    BUILDD_RETURN_IF_ERROR(CheckRepoUrl(req->repo_url()));
    BUILDD_RETURN_IF_ERROR(CheckBranchName(req->default_branch(), "defaultBranch"));
    BUILDD_RETURN_IF_ERROR(CheckNetwork(req->network()));
    WorkspaceRecord w;
    w.network = req->network();
    w.id = NewUuid();
    w.name = req->name();
    w.repo_url = req->repo_url();
    w.default_branch = req->default_branch().empty() ? "main" : req->default_branch();
    w.created_by = p.account_id;
    BUILDD_RETURN_IF_ERROR(journal_.Run([&w](JournalTx& tx) {
      tx.store().InsertWorkspace(w);
      return absl::OkStatus();
    }));
    BUILDD_ASSIGN_OR_RETURN(WorkspaceRecord saved, store_.GetWorkspace(w.id));
    *resp = WorkspaceToProto(saved);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ListWorkspaces(grpc::CallbackServerContext* ctx,
                                                            const pb::ListWorkspacesRequest* req,
                                                            pb::ListWorkspacesResponse* resp) {
  return Run(ctx, *req, [this, resp](const Principal& p) -> absl::Status {
    BUILDD_ASSIGN_OR_RETURN(auto list, store_.ListWorkspaces(Visible(p)));
    for (const auto& w : list) *resp->add_workspaces() = WorkspaceToProto(w);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::GetWorkspace(grpc::CallbackServerContext* ctx,
                                                          const pb::GetWorkspaceRequest* req,
                                                          pb::Workspace* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->id(), "id"));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, req->id(), absl::StrCat("workspace ", req->id())));
    BUILDD_ASSIGN_OR_RETURN(WorkspaceRecord w, store_.GetWorkspace(req->id()));
    *resp = WorkspaceToProto(w);
    return absl::OkStatus();
  });
}

absl::Status BrokerServiceImpl::ResolveResumeFrom(const Principal& p, pb::Task& task) {
  const std::string from = task.resume_from();
  if (from.empty()) return absl::OkStatus();
  BUILDD_RETURN_IF_ERROR(CheckUuid(from, "resumeFrom"));
  absl::StatusOr<TaskRecord> earlier = store_.GetTask(from);
  if (absl::IsNotFound(earlier.status()) || (earlier.ok() && !p.CanSee(earlier->workspace_id))) {
    return absl::InvalidArgumentError(absl::StrCat("resumeFrom: task ", from, " not found"));
  }
  BUILDD_RETURN_IF_ERROR(earlier.status());
  // A conversation goes only to the account that had it (or an admin).
  if (!p.is_admin && earlier->created_by != p.account_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "resumeFrom: task ", from, " was created by another account; only it may continue it"));
  }
  if (earlier->workspace_id != task.workspace_id()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resumeFrom: task ", from, " belongs to another workspace"));
  }
  const pb::Task spec = TaskToProto(*earlier);
  if (task.provider().empty()) task.set_provider(spec.provider());
  if (task.provider() != spec.provider()) {
    return absl::InvalidArgumentError(absl::StrCat("resumeFrom: task ", from, " ran provider ",
                                                   spec.provider(), ", not ", task.provider()));
  }
  if (task.work_branch().empty()) task.set_work_branch(spec.work_branch());
  if (task.base_branch().empty()) task.set_base_branch(spec.base_branch());
  BUILDD_ASSIGN_OR_RETURN(auto session, store_.GetSession(from));
  if (!session.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("resumeFrom: task ", from, " left no agent session to resume (yet)"));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* BrokerServiceImpl::CreateTask(grpc::CallbackServerContext* ctx,
                                                        const pb::CreateTaskRequest* req,
                                                        pb::Task* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status st = CheckRequestSize(*req); !st.ok()) {
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }
  boost::asio::post(pool_, [this, reactor, req, resp, key = BearerToken(*ctx)] {
    absl::StatusOr<Principal> principal = auth_.Authenticate(key);
    if (!principal.ok()) {
      reactor->Finish(ToGrpcStatus(principal.status()));
      return;
    }
    pb::Task task = req->task();
    if (absl::Status st = ResolveResumeFrom(*principal, task); !st.ok()) {
      reactor->Finish(ToGrpcStatus(st));
      return;
    }
    if (absl::Status st = ValidateNewTask(task); !st.ok()) {
      reactor->Finish(ToGrpcStatus(st));
      return;
    }
    if (!principal->CanCreate(task.workspace_id())) {
      reactor->Finish(ToGrpcStatus(absl::PermissionDeniedError(absl::StrCat(
          "account ", principal->account_id, " may not create tasks in workspace ",
          task.workspace_id(), " (needs canCreate)"))));
      return;
    }
    if (task.kind() == "revert") {
      absl::StatusOr<WorkspaceRecord> ws = store_.GetWorkspace(task.workspace_id());
      absl::Status st = ws.status();
      if (ws.ok() && ws->repo_url.empty()) {
        st = absl::InvalidArgumentError(absl::StrCat(
            "workspace ", task.workspace_id(), " has no repoUrl: there is nothing to revert in"));
      }
      if (!st.ok()) {
        reactor->Finish(ToGrpcStatus(st));
        return;
      }
    }
    // Also the broker's: the artifacts of earlier runs.
    task.clear_artifacts();
    // Keep only what the client describes; the broker owns the rest.
    for (void (pb::Task::*clear)() : {&pb::Task::clear_id, &pb::Task::clear_state, &pb::Task::clear_attempts,
                        &pb::Task::clear_worker_id, &pb::Task::clear_created_by,
                        &pb::Task::clear_created_at, &pb::Task::clear_updated_at,
                        &pb::Task::clear_exit_code, &pb::Task::clear_error}) {
      (task.*clear)();
    }
    // Parsed once: the record keeps the task as it is, for the store and
    // the runner's Assign alike.
    TaskRecord record = TaskRecord::FromSpec(NewUuid(), std::move(task), principal->account_id);
    dispatcher_.CreateTask(std::move(record), [reactor, resp](absl::StatusOr<TaskRecord> saved) {
      if (saved.ok()) {
        saved->created_at = saved->updated_at = NowRfc3339();
        *resp = TaskToProto(*saved);
      }
      reactor->Finish(ToGrpcStatus(saved.status()));
    });
  });
  return reactor;
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ListTasks(grpc::CallbackServerContext* ctx,
                                                       const pb::ListTasksRequest* req,
                                                       pb::ListTasksResponse* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    if (!req->workspace_id().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(req->workspace_id(), "workspaceId"));
    const std::string state =
        req->state() == pb::Task::state_unspecified ? "" : pb::Task::State_Name(req->state());
    const int limit = req->limit() <= 0 ? 100 : std::min(req->limit(), 1000);
    BUILDD_ASSIGN_OR_RETURN(auto tasks, store_.ListTasks(req->workspace_id(), state, limit, Visible(p)));
    for (const auto& t : tasks) {
      pb::Task* task = resp->add_tasks();
      *task = TaskToProto(t);
      // Patches are for GET /api/tasks/:id; a list of them would be huge.
      task->mutable_artifacts()->clear_patch();
      if (task->artifacts().ByteSizeLong() == 0) task->clear_artifacts();
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::GetTask(grpc::CallbackServerContext* ctx,
                                                     const pb::GetTaskRequest* req,
                                                     pb::GetTaskResponse* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->id(), "id"));
    BUILDD_ASSIGN_OR_RETURN(TaskRecord t, store_.GetTask(req->id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, t.workspace_id, absl::StrCat("task ", req->id())));
    *resp->mutable_task() = TaskToProto(t);
    BUILDD_ASSIGN_OR_RETURN(auto workers, store_.ListWorkers(t.id, "", std::nullopt));
    for (const auto& w : workers) *resp->add_workers() = WorkerToProto(w);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::CancelTask(grpc::CallbackServerContext* ctx,
                                                        const pb::CancelTaskRequest* req,
                                                        pb::Task* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->id(), "id"));
    BUILDD_ASSIGN_OR_RETURN(TaskRecord t, store_.GetTask(req->id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, t.workspace_id, absl::StrCat("task ", req->id())));
    if (!p.CanCreate(t.workspace_id)) {
      return absl::PermissionDeniedError("canceling a task needs canCreate on its workspace");
    }
    BUILDD_ASSIGN_OR_RETURN(TaskRecord canceled, dispatcher_.CancelTask(req->id()));
    *resp = TaskToProto(canceled);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ListWorkers(grpc::CallbackServerContext* ctx,
                                                         const pb::ListWorkersRequest* req,
                                                         pb::ListWorkersResponse* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    if (!req->task_id().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(req->task_id(), "taskId"));
    if (!req->workspace_id().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(req->workspace_id(), "workspaceId"));
    BUILDD_ASSIGN_OR_RETURN(auto workers, store_.ListWorkers(req->task_id(), req->workspace_id(), Visible(p)));
    for (const auto& w : workers) *resp->add_workers() = WorkerToProto(w);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::GetWorker(grpc::CallbackServerContext* ctx,
                                                       const pb::GetWorkerRequest* req,
                                                       pb::Worker* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->id(), "id"));
    BUILDD_ASSIGN_OR_RETURN(WorkerRecord w, store_.GetWorker(req->id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, w.workspace_id, absl::StrCat("worker ", req->id())));
    *resp = WorkerToProto(w);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ControlWorker(grpc::CallbackServerContext* ctx,
                                                           const pb::ControlWorkerRequest* req,
                                                           pb::Worker* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->id(), "id"));
    if (req->action() == pb::ControlWorkerRequest::action_unspecified ||
        !pb::ControlWorkerRequest::Action_IsValid(req->action())) {
      return absl::InvalidArgumentError("action is required: pause, resume, cancel or input");
    }
    if (req->text().size() > 100 * 1024) {
      return absl::InvalidArgumentError("text is longer than 102400 bytes");
    }
    BUILDD_RETURN_IF_ERROR(CheckText("text", req->text(), TextKind::kMultiline));
    BUILDD_ASSIGN_OR_RETURN(WorkerRecord w, store_.GetWorker(req->id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, w.workspace_id, absl::StrCat("worker ", req->id())));
    if (!p.CanCreate(w.workspace_id)) {
      return absl::PermissionDeniedError("controlling a worker needs canCreate on its workspace");
    }
    BUILDD_RETURN_IF_ERROR(dispatcher_.Control(
        req->id(), static_cast<pb::Control::Action>(req->action()), req->text()));
    *resp = WorkerToProto(w);
    return absl::OkStatus();
  });
}

namespace {

// One Subscribe call: reads what was missed from the hub's ring or, when
// older, from the database in bounded ranges of ids (one range per turn on
// the stream pool, filtered in the query), then follows the hub. The state
// outlives the reactor: pool work and the hub's wake-ups hold it, not the
// reactor.
class Subscription final : public QueuedWriteReactor<pb::Event> {
 public:
  struct State {
    State(BrokerStore& store, EventHub& hub, boost::asio::thread_pool& pool)
        : store(store), hub(hub), pool(pool) {}
    BrokerStore& store;
    EventHub& hub;
    boost::asio::thread_pool& pool;
    // Runs once the stream is done (the service forgets it).
    std::function<void()> on_closed;
    absl::Mutex mu;
    Subscription* reactor ABSL_GUARDED_BY(mu) = nullptr;
    bool in_setup ABSL_GUARDED_BY(mu) = true;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    int64_t cursor ABSL_GUARDED_BY(mu) = 0;
    bool pumping ABSL_GUARDED_BY(mu) = false;
    bool again ABSL_GUARDED_BY(mu) = false;
    EventFilter filter ABSL_GUARDED_BY(mu);
    int hub_token ABSL_GUARDED_BY(mu) = -1;
  };

  Subscription(BrokerStore& store, EventHub& hub, boost::asio::thread_pool& pool)
      : state_(std::make_shared<State>(store, hub, pool)) {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
  }

  std::shared_ptr<State> state() const { return state_; }

  // Ends the set-up: starts following (status ok) or finishes with `status`.
  // Touches only `s` after the reactor may be gone.
  static void EndSetup(const std::shared_ptr<State>& s, const absl::Status& status,
                       int64_t after_id, EventFilter filter) {
    bool follow = false;
    {
      absl::MutexLock lock(&s->mu);
      s->in_setup = false;
      if (s->reactor == nullptr) return;
      if (!status.ok() || s->cancelled) {
        s->reactor->FinishOnce(status.ok() ? grpc::Status::CANCELLED : ToGrpcStatus(status));
        return;
      }
      s->cursor = after_id;
      s->filter = std::move(filter);
      s->reactor->StartSendInitialMetadata();
      std::weak_ptr<State> weak = s;
      s->hub_token = s->hub.Subscribe([weak] {
        if (auto locked = weak.lock()) Schedule(locked);
      });
      follow = true;
    }
    if (follow) Schedule(s);
  }

  // Ends the stream with `status` (revoked key, removed grant), if open.
  static void End(const std::shared_ptr<State>& s, const absl::Status& status) {
    absl::MutexLock lock(&s->mu);
    if (s->reactor != nullptr && !s->in_setup) s->reactor->FinishOnce(ToGrpcStatus(status));
  }

  static void SetAllowed(const std::shared_ptr<State>& s, std::set<std::string> allowed) {
    absl::MutexLock lock(&s->mu);
    s->filter.allowed_workspaces = std::move(allowed);
  }

 protected:
  void OnCancel() override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->cancelled = true;
      if (state_->in_setup) return;
    }
    FinishOnce(grpc::Status::CANCELLED);
  }
  void OnQueueEmpty() override { Schedule(state_); }
  void OnClosed() override {
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->hub_token >= 0) state_->hub.Unsubscribe(state_->hub_token);
      state_->reactor = nullptr;
    }
    if (state_->on_closed) state_->on_closed();
  }

 private:
  static constexpr size_t kHighWater = 256;
  // Ids one database read of a backfill spans, and events it returns.
  static constexpr int64_t kScanIds = 5000;
  static constexpr int kScanEvents = 500;

  static void Schedule(const std::shared_ptr<State>& s) {
    {
      absl::MutexLock lock(&s->mu);
      if (s->reactor == nullptr || s->in_setup) return;
      if (s->pumping) {
        s->again = true;
        return;
      }
      s->pumping = true;
    }
    boost::asio::post(s->pool, [s] { Pump(s); });
  }

  // Sends what is after the cursor until caught up or the queue is full.
  static void Pump(const std::shared_ptr<State>& s) {
    while (true) {
      int64_t cursor;
      EventFilter filter;
      {
        absl::MutexLock lock(&s->mu);
        if (s->reactor == nullptr) return;
        cursor = s->cursor;
        filter = s->filter;
        s->again = false;
      }
      std::vector<pb::Event> events;
      const int64_t last = s->hub.last_id();
      int64_t scanned_to = 0;  // set when read from the database
      if (cursor < last && !s->hub.ReadAfter(cursor, 500, &events)) {
        const int64_t up_to = std::min(last, cursor + kScanIds);
        auto from_db = s->store.ReadEvents(cursor, filter, kScanEvents, up_to);
        if (!from_db.ok()) {
          absl::MutexLock lock(&s->mu);
          if (s->reactor) {
            s->reactor->FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot read events"));
          }
          return;
        }
        events = std::move(*from_db);
        scanned_to = events.size() == static_cast<size_t>(kScanEvents) ? events.back().id() : up_to;
      }
      absl::MutexLock lock(&s->mu);
      if (s->reactor == nullptr) return;
      for (const pb::Event& e : events) {
        s->cursor = e.id();
        if (s->filter.Matches(e)) s->reactor->Send(e);
      }
      s->cursor = std::max(s->cursor, scanned_to);
      const bool full = s->reactor->Queued() >= kHighWater;
      if (full || (events.empty() && scanned_to == 0 && !s->again)) {
        // Caught up, or waiting for the client to read: a wake-up resumes.
        s->pumping = false;
        return;
      }
      if (scanned_to > 0) {
        // One range per turn: other streams' work goes in between.
        boost::asio::post(s->pool, [s] { Pump(s); });
        return;
      }
    }
  }

  std::shared_ptr<State> state_;
};

}  // namespace

// An open Subscribe stream, for revalidation.
struct BrokerServiceImpl::Watched {
  std::string key;
  std::string account_id;
  bool is_admin = false;
  // The workspaces its key could see when it started; losing one ends it.
  std::set<std::string> visible;
  std::weak_ptr<Subscription::State> state;
};

grpc::ServerWriteReactor<pb::Event>* BrokerServiceImpl::Subscribe(
    grpc::CallbackServerContext* ctx, const pb::SubscribeRequest* req) {
  auto* sub = new Subscription(store_, hub_, stream_pool_);
  boost::asio::post(pool_, [this, state = sub->state(), req = *req, key = BearerToken(*ctx)] {
    absl::StatusOr<Principal> p = auth_.Authenticate(key);
    absl::Status status = p.status();
    if (status.ok() && !req.branch().empty()) {
      status = absl::UnimplementedError("the branch filter is not supported yet");
    }
    for (const auto& [id, field] : {std::pair{req.workspace_id(), "workspaceId"},
                                    std::pair{req.task_id(), "taskId"},
                                    std::pair{req.worker_id(), "workerId"}}) {
      if (status.ok() && !id.empty()) status = CheckUuid(id, field);
    }
    if (status.ok() && req.after_id() < 0) {
      status = absl::InvalidArgumentError("lastEventId must not be negative");
    }
    EventFilter filter;
    filter.workspace_id = req.workspace_id();
    filter.task_id = req.task_id();
    filter.worker_id = req.worker_id();
    if (status.ok() && !p->is_admin) filter.allowed_workspaces = p->visible;
    if (status.ok()) {
      auto watched = std::make_shared<Watched>();
      watched->key = key;
      watched->account_id = p->account_id;
      watched->is_admin = p->is_admin;
      watched->visible = p->visible;
      watched->state = state;
      absl::StatusOr<int64_t> id = Watch(std::move(watched));
      status = id.status();
      if (id.ok()) {
        state->on_closed = [this, id = *id] {
          absl::MutexLock lock(&watched_mu_);
          watched_.erase(id);
        };
      }
    }
    Subscription::EndSetup(state, status, req.after_id(), std::move(filter));
  });
  return sub;
}

absl::StatusOr<int64_t> BrokerServiceImpl::Watch(std::shared_ptr<Watched> watched) {
  absl::MutexLock lock(&watched_mu_);
  const auto same_key = std::count_if(watched_.begin(), watched_.end(), [&](const auto& entry) {
    return entry.second->key == watched->key;
  });
  if (same_key >= options_.max_subscriptions_per_key) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this key already follows ", same_key, " event streams, the most one key may"));
  }
  const int64_t id = next_watched_++;
  watched_[id] = std::move(watched);
  return id;
}

void BrokerServiceImpl::RefreshSubscriptions(const std::string& account_id) {
  std::vector<std::shared_ptr<Watched>> affected;
  {
    absl::MutexLock lock(&watched_mu_);
    for (const auto& [id, w] : watched_) {
      if (account_id.empty() || w->account_id == account_id) affected.push_back(w);
    }
  }
  if (affected.empty()) return;
  boost::asio::post(pool_, [this, affected = std::move(affected)] {
    for (const std::shared_ptr<Watched>& w : affected) {
      std::shared_ptr<Subscription::State> state = w->state.lock();
      if (state == nullptr) continue;
      absl::StatusOr<Principal> p = auth_.Authenticate(w->key);
      if (!p.ok()) {
        // The key (or session) is gone; an unreachable accounts service
        // leaves the stream alone.
        if (p.status().code() == absl::StatusCode::kUnavailable) continue;
        Log()->info("account={}: its key no longer works; ending its event stream", w->account_id);
        Subscription::End(state, absl::UnauthenticatedError(absl::StrCat(
                                     "the credential of this stream no longer works: ",
                                     p.status().message())));
        continue;
      }
      if (p->is_admin || w->is_admin) continue;
      const bool lost = std::any_of(w->visible.begin(), w->visible.end(),
                                    [&](const std::string& ws) { return p->visible.count(ws) == 0; });
      if (lost) {
        Log()->info("account={}: a grant was removed; ending its event stream", w->account_id);
        Subscription::End(state, absl::PermissionDeniedError(
                                     "a workspace grant this stream relied on was removed"));
        continue;
      }
      Subscription::SetAllowed(state, p->visible);
    }
  });
}

}  // namespace buildd::broker
