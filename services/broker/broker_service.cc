#include "services/broker/broker_service.h"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "common/status.h"
#include "services/broker/resume.h"
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

}  // namespace

BrokerServiceImpl::BrokerServiceImpl(Authenticator& auth, BrokerStore& store,
                                     Dispatcher& dispatcher, Journal& journal, EventHub& hub,
                                     boost::asio::thread_pool& pool,
                                     boost::asio::thread_pool& stream_pool, Options options)
    : auth_(auth),
      store_(store),
      dispatcher_(dispatcher),
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
        github_webhook_->TaskFor(req->event(), req->delivery(), req->body());
    if (!outcome.ok()) return reply(outcome.status());
    resp->set_outcome(outcome->why);
    if (!outcome->task.has_value()) return reply(absl::OkStatus());
    resp->set_task_id(outcome->task->id);
    dispatcher_.CreateTask(*std::move(outcome->task),
                           [reply](absl::StatusOr<TaskRecord> saved) { reply(saved.status()); });
  });
  return reactor;
}

void BrokerServiceImpl::RefreshSubscriptions(const std::string& account_id) {
  subscriptions_.Refresh(account_id);
}

}  // namespace buildd::broker
