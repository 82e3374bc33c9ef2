#include "services/broker/broker_service.h"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/text.h"
#include "services/broker/resume.h"
#include "services/broker/task_states.h"
#include "services/broker/task_validation.h"

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

// A revert runs git in the workspace's repository: it needs one.
absl::Status CheckHasRepo(BrokerStore& store, const std::string& workspace_id) {
  BUILDD_ASSIGN_OR_RETURN(WorkspaceRecord ws, store.GetWorkspace(workspace_id));
  if (!ws.repo_url.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "workspace ", workspace_id, " has no repoUrl: there is nothing to revert in"));
}

constexpr size_t kMaxMessageText = 64 << 10;
constexpr int kMaxAttachments = 4;
constexpr size_t kMaxAttachmentBytes = 512 << 10;

absl::Status CheckBody(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("text is required");
  if (text.size() > kMaxMessageText) {
    return absl::InvalidArgumentError(absl::StrCat("text is longer than ", kMaxMessageText, " bytes"));
  }
  return CheckText("text", text, TextKind::kMultiline);
}

absl::Status ValidateMessage(const pb::PostMessageRequest& m) {
  BUILDD_RETURN_IF_ERROR(CheckBody(m.text()));
  if (m.attachments_size() > kMaxAttachments) {
    return absl::InvalidArgumentError(absl::StrCat("attachments: at most ", kMaxAttachments));
  }
  for (const pb::Attachment& a : m.attachments()) {
    if (a.name().empty() || a.name().size() > 255 || a.name().find_first_of("/\\") != std::string::npos ||
        a.name() == "." || a.name() == "..") {
      return absl::InvalidArgumentError(
          "attachments.name: 1 to 255 characters, a file name without / or \\");
    }
    BUILDD_RETURN_IF_ERROR(CheckText("attachments.name", a.name()));
    const std::string& type = a.content_type();
    const bool type_ok = type.empty() || (type.size() <= 127 && type.find('/') != std::string::npos &&
                                          std::all_of(type.begin(), type.end(), [](char c) {
                                            return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                                                   std::string_view("/+-.=; _").find(c) != std::string_view::npos;
                                          }));
    if (!type_ok) {
      return absl::InvalidArgumentError("attachments.contentType: a media type such as text/plain");
    }
    if (a.data().size() > kMaxAttachmentBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("attachments.data: at most ", kMaxAttachmentBytes, " bytes each"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateComment(const pb::PostCommentRequest& c) {
  static const std::set<std::string> kArtifacts = {"patch", "commit", "branch", "diffStat", "prUrl", "plan"};
  if (kArtifacts.count(c.artifact()) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "artifact: \"", c.artifact().substr(0, 64),
        "\" is not one of patch, commit, branch, diffStat, prUrl, plan"));
  }
  if (c.path().size() > 1024) return absl::InvalidArgumentError("path is longer than 1024 bytes");
  BUILDD_RETURN_IF_ERROR(CheckText("path", c.path()));
  if (c.line() < 0) return absl::InvalidArgumentError("line may not be negative");
  return CheckBody(c.text());
}

}  // namespace

BrokerServiceImpl::BrokerServiceImpl(Authenticator& auth, BrokerStore& store,
                                     Dispatcher& dispatcher, PollingAgents& agents,
                                     Journal& journal, EventHub& hub,
                                     boost::asio::thread_pool& pool,
                                     boost::asio::thread_pool& stream_pool, Options options)
    : auth_(auth),
      store_(store),
      dispatcher_(dispatcher),
      agents_(agents),
      journal_(journal),
      pool_(pool),
      github_webhook_(options.github_webhook),
      subscriptions_(auth, store, hub, pool, stream_pool, options.max_subscriptions_per_key) {}

template <typename Fn>
grpc::ServerUnaryReactor* BrokerServiceImpl::RunAsync(grpc::CallbackServerContext* ctx,
                                                      const google::protobuf::Message& request,
                                                      Fn fn) {
  static auto& calls = Metrics::Global().Counter("buildd_broker_unary_calls_total",
                                                 "Unary BrokerService calls.");
  ++calls;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status st = CheckRequestSize(request); !st.ok()) {
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }
  boost::asio::post(pool_, [this, reactor, key = BearerToken(*ctx), fn = std::move(fn)]() mutable {
    Reply reply = [reactor](const absl::Status& status) { reactor->Finish(ToGrpcStatus(status)); };
    absl::StatusOr<Principal> principal = auth_.Authenticate(key);
    if (!principal.ok()) {
      reply(principal.status());
      return;
    }
    if (absl::Status st = fn(*principal, reply); !st.ok()) reply(st);
  });
  return reactor;
}

template <typename Fn>
grpc::ServerUnaryReactor* BrokerServiceImpl::Run(grpc::CallbackServerContext* ctx,
                                                 const google::protobuf::Message& request, Fn fn) {
  return RunAsync(ctx, request,
                  [fn = std::move(fn)](const Principal& p, const Reply& reply) mutable {
                    reply(fn(p));
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::CreateWorkspace(grpc::CallbackServerContext* ctx,
                                                             const pb::CreateWorkspaceRequest* req,
                                                             pb::Workspace* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    if (!p.is_admin) return absl::PermissionDeniedError("creating a workspace needs an admin key");
    BUILDD_RETURN_IF_ERROR(ValidateNewWorkspace(*req));
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

grpc::ServerUnaryReactor* BrokerServiceImpl::CreateTask(grpc::CallbackServerContext* ctx,
                                                        const pb::CreateTaskRequest* req,
                                                        pb::Task* resp) {
  return RunAsync(ctx, *req, [this, req, resp](const Principal& p, Reply reply) -> absl::Status {
    pb::Task task = req->task();
    BUILDD_RETURN_IF_ERROR(ResolveResumeFrom(store_, p, task));
    BUILDD_RETURN_IF_ERROR(ValidateNewTask(task));
    if (!p.CanCreate(task.workspace_id())) {
      return absl::PermissionDeniedError(absl::StrCat("account ", p.account_id,
                                                      " may not create tasks in workspace ",
                                                      task.workspace_id(), " (needs canCreate)"));
    }
    if (task.kind() == "revert") BUILDD_RETURN_IF_ERROR(CheckHasRepo(store_, task.workspace_id()));
    // The task's own credentials leave it here: sealed beside the record,
    // never in its spec.
    const CredentialMap credentials = TakeCredentials(task);
    // Parsed once: the record keeps the task as it is, for the store, the
    // runner's Assign and this reply alike.
    TaskRecord record = NewTaskRecord(std::move(task), p.account_id);
    record.sealed_credentials = store_.SealTaskCredentials(record.id, credentials);
    dispatcher_.CreateTask(std::move(record),
                           [resp, reply = std::move(reply)](absl::StatusOr<TaskRecord> saved) {
                             if (saved.ok()) {
                               saved->created_at = saved->updated_at = NowRfc3339();
                               *resp = TaskToProto(*saved);
                             }
                             reply(saved.status());
                           });
    return absl::OkStatus();
  });
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
    std::vector<const TaskRecord*> records;
    std::vector<pb::Task*> protos;
    for (const auto& t : tasks) {
      pb::Task* task = resp->add_tasks();
      *task = TaskToProto(t);
      // Patches are for GET /api/tasks/:id; a list of them would be huge.
      task->mutable_artifacts()->clear_patch();
      if (task->artifacts().ByteSizeLong() == 0) task->clear_artifacts();
      records.push_back(&t);
      protos.push_back(task);
    }
    return DescribePending(p, records, protos);
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
    BUILDD_RETURN_IF_ERROR(DescribePending(p, {&t}, {resp->mutable_task()}));
    BUILDD_ASSIGN_OR_RETURN(auto workers, store_.ListWorkers(t.id, "", std::nullopt));
    for (const auto& w : workers) *resp->add_workers() = WorkerToProto(w);
    return absl::OkStatus();
  });
}

absl::Status BrokerServiceImpl::DescribePending(const Principal& p,
                                                const std::vector<const TaskRecord*>& records,
                                                const std::vector<pb::Task*>& tasks) {
  std::vector<const TaskRecord*> pending;
  std::vector<pb::Task*> out;
  std::vector<std::string> ids;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i]->state != "pending") continue;
    pending.push_back(records[i]);
    out.push_back(tasks[i]);
    ids.push_back(records[i]->id);
  }
  if (pending.empty()) return absl::OkStatus();
  BUILDD_ASSIGN_OR_RETURN(auto positions, store_.QueuePositions(ids));
  BUILDD_ASSIGN_OR_RETURN(std::vector<Waiting> waiting, dispatcher_.WhyWaiting(pending, p.is_admin ? "" : p.account_id));
  for (size_t i = 0; i < pending.size(); ++i) {
    // A task claimed since it was read has no place any more.
    auto at = positions.find(pending[i]->id);
    if (at != positions.end()) out[i]->set_queue_position(at->second);
    out[i]->set_waiting_reason(waiting[i].reason);
    out[i]->set_waiting_detail(waiting[i].detail);
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* BrokerServiceImpl::RetryTask(grpc::CallbackServerContext* ctx,
                                                       const pb::RetryTaskRequest* req,
                                                       pb::Task* resp) {
  return RunAsync(ctx, *req, [this, req, resp](const Principal& p, Reply reply) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->id(), "id"));
    BUILDD_ASSIGN_OR_RETURN(TaskRecord ended, store_.GetTask(req->id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, ended.workspace_id, absl::StrCat("task ", req->id())));
    if (!p.CanCreate(ended.workspace_id)) {
      return absl::PermissionDeniedError(absl::StrCat("account ", p.account_id,
                                                      " may not create tasks in workspace ",
                                                      ended.workspace_id, " (needs canCreate)"));
    }
    if (!IsTerminalTaskState(ended.state)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", ended.id, " is ", ended.state,
          ": only a task that ended (completed, failed or canceled) is retried"));
    }
    // Checked again as a new task: grants, limits and the session it
    // resumes may have changed since.
    pb::Task spec = RetrySpec(ended);
    BUILDD_RETURN_IF_ERROR(ResolveResumeFrom(store_, p, spec));
    BUILDD_RETURN_IF_ERROR(ValidateNewTask(spec));
    TaskRecord record = NewTaskRecord(std::move(spec), p.account_id, ended.id);
    pb::Event retried = EventOf("retried", ended.id, "", ended.workspace_id);
    retried.set_status(ended.state);
    retried.set_text(absl::StrCat("retried as task ", record.id));
    (*retried.mutable_data()->mutable_fields())["taskId"].set_string_value(record.id);
    dispatcher_.CreateTask(
        std::move(record),
        [resp, reply = std::move(reply)](absl::StatusOr<TaskRecord> saved) {
          if (saved.ok()) {
            saved->created_at = saved->updated_at = NowRfc3339();
            *resp = TaskToProto(*saved);
          }
          reply(saved.status());
        },
        /*delivery_id=*/"", {std::move(retried)});
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
    BUILDD_RETURN_IF_ERROR(ValidateControlWorker(*req));
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

grpc::ServerWriteReactor<pb::Event>* BrokerServiceImpl::Subscribe(
    grpc::CallbackServerContext* ctx, const pb::SubscribeRequest* req) {
  return subscriptions_.Open<pb::Event>(BearerToken(*ctx), *req);
}

grpc::ServerWriteReactor<pb::EventBatch>* BrokerServiceImpl::SubscribeBatches(
    grpc::CallbackServerContext* ctx, const pb::SubscribeRequest* req) {
  return subscriptions_.Open<pb::EventBatch>(BearerToken(*ctx), *req);
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ListRunners(grpc::CallbackServerContext* ctx,
                                                         const pb::ListRunnersRequest* req,
                                                         pb::ListRunnersResponse* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    if (!req->account_id().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(req->account_id(), "accountId"));
    const std::string account = p.is_admin ? req->account_id() : p.account_id;
    if (!p.is_admin && !req->account_id().empty() && req->account_id() != p.account_id) {
      return absl::PermissionDeniedError("listing another account's runners needs an admin key");
    }
    BUILDD_ASSIGN_OR_RETURN(std::vector<pb::RunnerInfo> all, dispatcher_.AllRunners());
    for (pb::RunnerInfo& r : all) {
      if (account.empty() || r.account_id() == account) *resp->add_runners() = std::move(r);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::GetQueue(grpc::CallbackServerContext* ctx,
                                                      const pb::GetQueueRequest* req,
                                                      pb::GetQueueResponse* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    if (!req->workspace_id().empty()) {
      BUILDD_RETURN_IF_ERROR(CheckUuid(req->workspace_id(), "workspaceId"));
      BUILDD_RETURN_IF_ERROR(
          CheckVisible(p, req->workspace_id(), absl::StrCat("workspace ", req->workspace_id())));
    }
    BUILDD_ASSIGN_OR_RETURN(std::vector<PendingGroup> groups,
                            store_.PendingGroups(req->workspace_id(), Visible(p)));
    int64_t depth = 0;
    for (const PendingGroup& g : groups) {
      pb::PendingGroup* q = resp->add_queues();
      q->set_provider(g.provider);
      for (const std::string& label : g.labels) q->add_labels(label);
      q->set_depth(static_cast<int32_t>(g.tasks));
      q->set_oldest_task_id(g.oldest_task_id);
      q->set_oldest_created_at(g.oldest_created_at);
      depth += g.tasks;
    }
    resp->set_depth(static_cast<int32_t>(depth));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ListUsage(grpc::CallbackServerContext* ctx,
                                                       const pb::ListUsageRequest* req,
                                                       pb::ListUsageResponse* resp) {
  return Run(ctx, *req, [this, resp](const Principal& p) -> absl::Status {
    std::map<std::string, double> costs;
    if (p.is_admin) {
      BUILDD_ASSIGN_OR_RETURN(costs, store_.CostsToday());
    } else {
      BUILDD_ASSIGN_OR_RETURN(costs[p.account_id], store_.CostToday(p.account_id));
    }
    // The limits this replica holds: its runners' accounts' (refreshed on
    // every change of them) and the caller's own; no call to accounts.
    std::map<std::string, double> limits;
    for (const RunnerSlot& runner : dispatcher_.runners().Slots()) {
      limits[runner.account_id] = runner.access.account_max_cost_per_day;
    }
    limits[p.account_id] = p.max_cost_per_day;
    for (const auto& [account_id, cost] : costs) {
      pb::AccountUsage* u = resp->add_accounts();
      u->set_account_id(account_id);
      u->set_cost_today(cost);
      auto limit = limits.find(account_id);
      if (limit != limits.end()) u->set_max_cost_per_day(limit->second);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ClaimWorkers(grpc::CallbackServerContext* ctx,
                                                          const pb::ClaimWorkersRequest* req,
                                                          pb::ClaimWorkersResponse* resp) {
  return RunAsync(ctx, *req, [this, req, resp, key = BearerToken(*ctx)](const Principal& p,
                                                                        const Reply& reply) {
    agents_.Claim(p, key, *req, resp, reply);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::UpdateWorker(grpc::CallbackServerContext* ctx,
                                                          const pb::UpdateWorkerRequest* req,
                                                          pb::UpdateWorkerResponse* resp) {
  return RunAsync(ctx, *req, [this, req, resp, key = BearerToken(*ctx)](const Principal& p,
                                                                        const Reply& reply) {
    agents_.Update(p, key, *req, resp, reply);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::CreateWorker(grpc::CallbackServerContext* ctx,
                                                          const pb::CreateWorkerRequest* req,
                                                          pb::Worker* resp) {
  return RunAsync(ctx, *req, [this, req, resp](const Principal& p, const Reply& reply) -> absl::Status {
    if (req->task_id().empty()) return absl::InvalidArgumentError("taskId is required");
    if (req->runner_id().empty()) return absl::InvalidArgumentError("runnerId is required");
    BUILDD_ASSIGN_OR_RETURN(TaskRecord task, store_.GetTask(req->task_id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, task.workspace_id, absl::StrCat("task ", task.id)));
    if (!p.CanCreate(task.workspace_id)) {
      return absl::PermissionDeniedError("assigning a task needs canCreate on its workspace");
    }
    dispatcher_.AssignByHand(task.id, req->runner_id(),
                             [resp, reply](absl::StatusOr<WorkerRecord> worker) {
                               if (worker.ok()) *resp = WorkerToProto(*worker);
                               reply(worker.status());
                             });
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::StartWorker(grpc::CallbackServerContext* ctx,
                                                         const pb::StartWorkerRequest* req,
                                                         pb::Worker* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_ASSIGN_OR_RETURN(WorkerRecord w, store_.GetWorker(req->id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, w.workspace_id, absl::StrCat("worker ", req->id())));
    if (!p.CanCreate(w.workspace_id)) {
      return absl::PermissionDeniedError("starting a worker needs canCreate on its workspace");
    }
    BUILDD_RETURN_IF_ERROR(dispatcher_.StartWorker(w.id));
    *resp = WorkerToProto(w);
    resp->set_state(pb::Worker::starting);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ListMessages(grpc::CallbackServerContext* ctx,
                                                          const pb::ListMessagesRequest* req,
                                                          pb::ListMessagesResponse* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_ASSIGN_OR_RETURN(WorkerRecord w, store_.GetWorker(req->worker_id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, w.workspace_id, absl::StrCat("worker ", w.id)));
    BUILDD_ASSIGN_OR_RETURN(std::vector<pb::Message> human, store_.ListMessages(w.id));
    EventFilter filter;
    filter.worker_id = w.id;
    BUILDD_ASSIGN_OR_RETURN(std::vector<pb::Event> events, store_.ReadEvents(0, filter, 10000));
    std::vector<pb::Message> all = std::move(human);
    for (pb::Event& e : events) {
      if (e.type() != "assistant_message") continue;
      pb::Message m;
      m.set_id(absl::StrCat("event-", e.id()));
      m.set_worker_id(w.id);
      m.set_task_id(w.task_id);
      m.set_role("agent");
      m.set_text(std::move(*e.mutable_text()));
      m.set_created_at(e.created_at());
      m.set_event_id(e.id());
      all.push_back(std::move(m));
    }
    std::stable_sort(all.begin(), all.end(), [](const pb::Message& a, const pb::Message& b) {
      return a.created_at() < b.created_at();
    });
    for (pb::Message& m : all) *resp->add_messages() = std::move(m);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::PostMessage(grpc::CallbackServerContext* ctx,
                                                         const pb::PostMessageRequest* req,
                                                         pb::Message* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(ValidateMessage(*req));
    BUILDD_ASSIGN_OR_RETURN(WorkerRecord w, store_.GetWorker(req->worker_id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, w.workspace_id, absl::StrCat("worker ", w.id)));
    if (!p.CanCreate(w.workspace_id)) {
      return absl::PermissionDeniedError("writing to a worker needs canCreate on its workspace");
    }
    pb::Message m;
    m.set_id(NewUuid());
    m.set_worker_id(w.id);
    m.set_task_id(w.task_id);
    m.set_role("human");
    m.set_account_id(p.account_id);
    m.set_text(req->text());
    *m.mutable_attachments() = req->attachments();
    for (pb::Attachment& a : *m.mutable_attachments()) {
      if (a.content_type().empty()) a.set_content_type("application/octet-stream");
      a.set_size(static_cast<int64_t>(a.data().size()));
    }
    m.set_created_at(NowRfc3339());
    // To a worker waiting for input it is the answer.
    if (w.state == "waiting_input") {
      absl::Status sent = dispatcher_.Control(w.id, pb::Control::input, req->text());
      m.set_delivered(sent.ok());
      if (!sent.ok()) Log()->info("worker={} message not delivered: {}", w.id, sent.message());
    }
    pb::Event e = EventOf("message", w.task_id, w.id, w.workspace_id);
    e.set_text(req->text());
    auto& data = *e.mutable_data()->mutable_fields();
    data["messageId"].set_string_value(m.id());
    data["attachments"].set_number_value(m.attachments_size());
    data["delivered"].set_bool_value(m.delivered());
    BUILDD_RETURN_IF_ERROR(journal_.Run([&m, &e](JournalTx& tx) {
      tx.store().InsertMessage(m);
      tx.Append(std::move(e));
      return absl::OkStatus();
    }));
    *resp = std::move(m);
    for (pb::Attachment& a : *resp->mutable_attachments()) a.clear_data();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::GetAttachment(grpc::CallbackServerContext* ctx,
                                                           const pb::GetAttachmentRequest* req,
                                                           pb::Attachment* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    const absl::Status not_found = absl::NotFoundError(
        absl::StrCat("attachment ", req->index(), " of message ", req->message_id(), " not found"));
    absl::StatusOr<std::string> worker_id = store_.MessageWorker(req->message_id());
    if (!worker_id.ok()) return worker_id.status();
    if (!req->worker_id().empty() && req->worker_id() != *worker_id) return not_found;
    BUILDD_ASSIGN_OR_RETURN(WorkerRecord w, store_.GetWorker(*worker_id));
    if (!p.CanSee(w.workspace_id)) return not_found;
    BUILDD_ASSIGN_OR_RETURN(*resp, store_.GetAttachment(req->message_id(), req->index()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::ListComments(grpc::CallbackServerContext* ctx,
                                                          const pb::ListCommentsRequest* req,
                                                          pb::ListCommentsResponse* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_ASSIGN_OR_RETURN(TaskRecord t, store_.GetTask(req->task_id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, t.workspace_id, absl::StrCat("task ", t.id)));
    BUILDD_ASSIGN_OR_RETURN(std::vector<pb::Comment> comments, store_.ListComments(t.id));
    for (pb::Comment& c : comments) *resp->add_comments() = std::move(c);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::PostComment(grpc::CallbackServerContext* ctx,
                                                         const pb::PostCommentRequest* req,
                                                         pb::Comment* resp) {
  return Run(ctx, *req, [this, req, resp](const Principal& p) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(ValidateComment(*req));
    BUILDD_ASSIGN_OR_RETURN(TaskRecord t, store_.GetTask(req->task_id()));
    BUILDD_RETURN_IF_ERROR(CheckVisible(p, t.workspace_id, absl::StrCat("task ", t.id)));
    if (!p.CanCreate(t.workspace_id)) {
      return absl::PermissionDeniedError("commenting needs canCreate on the task's workspace");
    }
    pb::Comment c;
    c.set_id(NewUuid());
    c.set_task_id(t.id);
    c.set_artifact(req->artifact());
    c.set_path(req->path());
    c.set_line(req->line());
    c.set_text(req->text());
    c.set_account_id(p.account_id);
    c.set_created_at(NowRfc3339());
    pb::Event e = EventOf("comment", t.id, "", t.workspace_id);
    e.set_text(c.text());
    auto& data = *e.mutable_data()->mutable_fields();
    data["commentId"].set_string_value(c.id());
    data["artifact"].set_string_value(c.artifact());
    if (!c.path().empty()) data["path"].set_string_value(c.path());
    if (c.line() > 0) data["line"].set_number_value(c.line());
    BUILDD_RETURN_IF_ERROR(journal_.Run([&c, &e](JournalTx& tx) {
      tx.store().InsertComment(c);
      tx.Append(std::move(e));
      return absl::OkStatus();
    }));
    *resp = std::move(c);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerServiceImpl::DeliverGitHubWebhook(
    grpc::CallbackServerContext* ctx, const pb::GitHubWebhookRequest* req,
    pb::GitHubWebhookResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status st = CheckRequestSize(*req); !st.ok()) {
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }
  boost::asio::post(pool_, [this, reactor, req, resp] {
    const auto reply = [reactor](const absl::Status& status) { reactor->Finish(ToGrpcStatus(status)); };
    if (github_webhook_ == nullptr) {
      return reply(absl::UnauthenticatedError("this broker takes no GitHub webhooks"));
    }
    if (absl::Status st = github_webhook_->Verify(req->signature(), req->body()); !st.ok()) {
      return reply(st);
    }
    absl::StatusOr<GitHubWebhook::Outcome> outcome =
        github_webhook_->TaskFor(req->event(), req->body());
    if (!outcome.ok()) return reply(outcome.status());
    resp->set_outcome(outcome->why);
    if (!outcome->task.has_value()) return reply(absl::OkStatus());
    // A delivery that was seen before (GitHub redelivers) makes no task; one
    // whose task could not be stored is not recorded, so its redelivery does.
    dispatcher_.CreateTask(
        *std::move(outcome->task),
        [reply, resp](absl::StatusOr<TaskRecord> saved) {
          if (absl::IsAlreadyExists(saved.status())) {
            resp->set_outcome(std::string(saved.status().message()));
            return reply(absl::OkStatus());
          }
          if (saved.ok()) resp->set_task_id(saved->id);
          reply(saved.status());
        },
        req->delivery());
  });
  return reactor;
}

void BrokerServiceImpl::RefreshSubscriptions(const std::string& account_id) {
  subscriptions_.Refresh(account_id);
}

}  // namespace buildd::broker
