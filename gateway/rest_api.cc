#include "gateway/rest_api.h"

#include <google/protobuf/struct.pb.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "gateway/dashboard.h"
#include "gateway/dashboard_api.h"
#include "gateway/execute_api.h"
#include "gateway/github_webhook.h"
#include "gateway/http_errors.h"
#include "gateway/json_codec.h"
#include "gateway/openapi.h"
#include "gateway/workflow_api.h"
#include "common/status.h"

namespace buildd::gateway {
namespace {

// What the services behind a route may answer besides success (RouteDoc::errors).
const std::vector<unsigned> kListErrors = {403};
const std::vector<unsigned> kGetErrors = {403, 404};
const std::vector<unsigned> kChangeErrors = {403, 404, 409};
const std::vector<unsigned> kCreateErrors = {403, 404, 409, 429};

CallMeta MetaOf(const HttpRequest& request) {
  return CallMeta{request.api_key, request.request_id};
}

// Replies with the call's result as JSON (`ok_status` on success) or its
// mapped error.
template <typename T>
Callback<T> RespondJson(Reply reply, unsigned ok_status = 200) {
  return [reply = std::move(reply), ok_status](absl::StatusOr<T> result) {
    if (!result.ok()) return reply(ErrorResponse(result.status()));
    reply(JsonResponse(ok_status, ToJson(*result)));
  };
}

// Parses the body into `message`; on failure replies 400 and returns false.
bool ParseBody(const HttpRequest& request, google::protobuf::Message* message, const Reply& reply,
               bool allow_empty = false) {
  absl::Status status = ParseJsonBody(request.body, message, allow_empty);
  if (status.ok()) return true;
  reply(ErrorResponse(status));
  return false;
}

bool ParseQuery(const HttpRequest& request, google::protobuf::Message* message,
                const Reply& reply) {
  absl::Status status = QueryToMessage(request.query, message);
  if (status.ok()) return true;
  reply(ErrorResponse(status));
  return false;
}

// A path id that the body repeats must agree with the path.
bool SameAsPath(const std::string& from_body, const std::string& from_path, absl::string_view field,
                const Reply& reply) {
  if (from_body.empty() || from_body == from_path) return true;
  reply(ErrorResponse(absl::InvalidArgumentError(
      absl::StrCat("field ", field, " in the body does not match the path"))));
  return false;
}

// {"text": "..."} or {"approve": true}: the text sent to a waiting worker.
absl::StatusOr<std::string> InputText(absl::string_view body) {
  google::protobuf::Struct input;
  absl::Status status = ParseJsonBody(body, &input);
  if (!status.ok()) return status;
  std::string text;
  bool approve = false;
  for (const auto& [name, value] : input.fields()) {
    if (name == "text") {
      if (value.kind_case() != google::protobuf::Value::kStringValue) {
        return absl::InvalidArgumentError("invalid value for field text (expected a string)");
      }
      text = value.string_value();
    } else if (name == "approve") {
      if (value.kind_case() != google::protobuf::Value::kBoolValue) {
        return absl::InvalidArgumentError("invalid value for field approve (expected true)");
      }
      approve = value.bool_value();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown field ", JsonQuote(name), " in the input body (expected text or approve)"));
    }
  }
  if (!text.empty()) return text;
  if (approve) return std::string("approve");
  return absl::InvalidArgumentError(R"(field text is required (or "approve": true))");
}

// `value` as an RFC 5987 ext-value's characters: attr-chars as they are,
// every other byte percent-encoded.
std::string Rfc5987(absl::string_view value) {
  std::string out;
  for (unsigned char c : value) {
    if (absl::ascii_isalnum(c) || absl::string_view("!#$&+-.^_`|~").find(static_cast<char>(c)) !=
                                      absl::string_view::npos) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// POST /revert: {"workspaceId", "branch", "commit", "push"} → a task of
// kind revert (push defaults to true). 002's projectId and branchId are
// workspaceId and branch.
absl::StatusOr<pb::Task> RevertTask(absl::string_view body) {
  google::protobuf::Struct input;
  BUILDD_RETURN_IF_ERROR(ParseJsonBody(body, &input));
  pb::Task task;
  task.set_kind("revert");
  task.set_push(true);
  for (const auto& [name, value] : input.fields()) {
    const bool is_string = value.kind_case() == google::protobuf::Value::kStringValue;
    if (name == "workspaceId" || name == "branch" || name == "commit" || name == "title" ||
        name == "projectId" || name == "branchId") {
      if (!is_string) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid value for field ", name, " (expected a string)"));
      }
      if (name == "workspaceId" || name == "projectId") task.set_workspace_id(value.string_value());
      if (name == "branch" || name == "branchId") task.set_work_branch(value.string_value());
      if (name == "commit") task.set_revert_commit(value.string_value());
      if (name == "title") task.set_title(value.string_value());
    } else if (name == "push") {
      if (value.kind_case() != google::protobuf::Value::kBoolValue) {
        return absl::InvalidArgumentError("invalid value for field push (expected true or false)");
      }
      task.set_push(value.bool_value());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown field ", JsonQuote(name),
                       " in the revert body (expected workspaceId or projectId, branch or "
                       "branchId, commit, push, title)"));
    }
  }
  if (task.work_branch().empty()) return absl::InvalidArgumentError("field branch is required");
  if (task.revert_commit().empty()) return absl::InvalidArgumentError("field commit is required");
  // The broker checks the values (as revertCommit and workBranch).
  return task;
}

void AddAccountRoutes(Router& router, std::shared_ptr<AccountsClient> accounts) {
  router.Post("/api/accounts",
              RouteDoc("Create an account and its first API key (shown once)")
                  .Body<pb::CreateAccountRequest>()
                  .Returns<pb::CreateAccountResponse>(201)
                  .Errors({403, 409}),
              [accounts](const HttpRequest& request, Reply reply) {
                pb::CreateAccountRequest body;
                if (!ParseBody(request, &body, reply)) return;
                accounts->CreateAccount(
                    MetaOf(request), body,
                    RespondJson<pb::CreateAccountResponse>(std::move(reply), 201));
              });
  router.Get("/api/accounts",
             RouteDoc("List accounts")
                 .Query<pb::ListAccountsRequest>()
                 .Returns<pb::ListAccountsResponse>()
                 .Errors(kListErrors),
             [accounts](const HttpRequest& request, Reply reply) {
               pb::ListAccountsRequest query;
               if (!ParseQuery(request, &query, reply)) return;
               accounts->ListAccounts(MetaOf(request), query,
                                      RespondJson<pb::ListAccountsResponse>(std::move(reply)));
             });
  router.Get(
      "/api/accounts/:id", RouteDoc("Get an account").Returns<pb::Account>().Errors(kGetErrors),
      [accounts](const HttpRequest& request, Reply reply) {
        pb::GetAccountRequest get;
        get.set_id(request.Param("id"));
        accounts->GetAccount(MetaOf(request), get, RespondJson<pb::Account>(std::move(reply)));
      });
  // The fields the body names change; the others keep their value.
  router.Patch("/api/accounts/:id",
               RouteDoc("Change an account's name or limits (admin)")
                   .Describe("Only the fields the body names change. An `id` in the body must "
                             "be the path's.")
                   .Body<pb::UpdateAccountRequest>()
                   .Returns<pb::Account>()
                   .Errors(kGetErrors),
               [accounts](const HttpRequest& request, Reply reply) {
                 pb::UpdateAccountRequest update;
                 if (!ParseBody(request, &update, reply)) return;
                 if (!SameAsPath(update.id(), request.Param("id"), "id", reply)) return;
                 update.set_id(request.Param("id"));
                 accounts->UpdateAccount(MetaOf(request), update,
                                         RespondJson<pb::Account>(std::move(reply)));
               });
  router.Post("/api/accounts/:id/workspaces",
              RouteDoc("Grant an account a workspace (canClaim, canCreate)")
                  .Describe("An `accountId` in the body must be the path's.")
                  .Body<pb::GrantWorkspaceRequest>()
                  .Returns<pb::Grant>()
                  .Errors(kChangeErrors),
              [accounts](const HttpRequest& request, Reply reply) {
                pb::GrantWorkspaceRequest grant;
                if (!ParseBody(request, &grant, reply)) return;
                if (!SameAsPath(grant.account_id(), request.Param("id"), "accountId", reply))
                  return;
                grant.set_account_id(request.Param("id"));
                accounts->GrantWorkspace(MetaOf(request), grant,
                                         RespondJson<pb::Grant>(std::move(reply)));
              });
  router.Post("/api/accounts/:id/keys",
              RouteDoc("Make a new API key for an account (shown once)")
                  .Body<pb::RotateKeyRequest>(/*optional=*/true)
                  .Returns<pb::RotateKeyResponse>(201)
                  .Errors(kGetErrors),
              [accounts](const HttpRequest& request, Reply reply) {
                pb::RotateKeyRequest rotate;
                if (!ParseBody(request, &rotate, reply, /*allow_empty=*/true)) return;
                if (!SameAsPath(rotate.account_id(), request.Param("id"), "accountId", reply))
                  return;
                rotate.set_account_id(request.Param("id"));
                accounts->RotateKey(MetaOf(request), rotate,
                                    RespondJson<pb::RotateKeyResponse>(std::move(reply), 201));
              });
  auto revoke = [accounts](const HttpRequest& request, Reply reply) {
    pb::RevokeKeyRequest revoke;
    revoke.set_account_id(request.Param("id"));
    revoke.set_key_id(request.Param("keyId"));
    accounts->RevokeKey(MetaOf(request), revoke,
                        RespondJson<pb::RevokeKeyResponse>(std::move(reply)));
  };
  router.Delete("/api/accounts/:id/keys/:keyId",
                RouteDoc("Revoke one API key of an account")
                    .Returns<pb::RevokeKeyResponse>()
                    .Errors(kGetErrors),
                revoke);
  router.Delete("/api/accounts/:id/keys",
                RouteDoc("Revoke every API key of an account")
                    .Returns<pb::RevokeKeyResponse>()
                    .Errors(kGetErrors),
                revoke);
}

void AddWorkspaceRoutes(Router& router, std::shared_ptr<BrokerClient> broker) {
  router.Get("/api/workspaces",
             RouteDoc("List the workspaces the caller may see")
                 .Query<pb::ListWorkspacesRequest>()
                 .Returns<pb::ListWorkspacesResponse>()
                 .Errors(kListErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::ListWorkspacesRequest query;
               if (!ParseQuery(request, &query, reply)) return;
               broker->ListWorkspaces(MetaOf(request), query,
                                      RespondJson<pb::ListWorkspacesResponse>(std::move(reply)));
             });
  router.Post("/api/workspaces",
              RouteDoc("Create a workspace (a repository and its settings)")
                  .Body<pb::CreateWorkspaceRequest>()
                  .Returns<pb::Workspace>(201)
                  .Errors({403, 409}),
              [broker](const HttpRequest& request, Reply reply) {
                pb::CreateWorkspaceRequest body;
                if (!ParseBody(request, &body, reply)) return;
                broker->CreateWorkspace(MetaOf(request), body,
                                        RespondJson<pb::Workspace>(std::move(reply), 201));
              });
  router.Get("/api/workspaces/:id",
             RouteDoc("Get a workspace").Returns<pb::Workspace>().Errors(kGetErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::GetWorkspaceRequest get;
               get.set_id(request.Param("id"));
               broker->GetWorkspace(MetaOf(request), get,
                                    RespondJson<pb::Workspace>(std::move(reply)));
             });
}

void AddTaskRoutes(Router& router, std::shared_ptr<BrokerClient> broker) {
  router.Post("/api/tasks",
              RouteDoc("Create a task; it is pushed to an eligible runner at once")
                  .Describe("The body holds the task's fields directly (as in the seeds' API).")
                  .Body<pb::Task>()
                  .Returns<pb::Task>(201)
                  .Errors(kCreateErrors),
              [broker](const HttpRequest& request, Reply reply) {
                // Clients write the task's fields directly, as in the seeds' API.
                pb::CreateTaskRequest create;
                if (!ParseBody(request, create.mutable_task(), reply)) return;
                broker->CreateTask(MetaOf(request), create,
                                   RespondJson<pb::Task>(std::move(reply), 201));
              });
  router.Get("/api/tasks",
             RouteDoc("List tasks")
                 .Query<pb::ListTasksRequest>()
                 .Returns<pb::ListTasksResponse>()
                 .Errors(kListErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::ListTasksRequest query;
               if (!ParseQuery(request, &query, reply)) return;
               broker->ListTasks(MetaOf(request), query,
                                 RespondJson<pb::ListTasksResponse>(std::move(reply)));
             });
  router.Get("/api/tasks/:id",
             RouteDoc("Get a task with its workers and artifacts")
                 .Returns<pb::GetTaskResponse>()
                 .Errors(kGetErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::GetTaskRequest get;
               get.set_id(request.Param("id"));
               broker->GetTask(MetaOf(request), get,
                               RespondJson<pb::GetTaskResponse>(std::move(reply)));
             });
  router.Post(
      "/api/tasks/:id/cancel",
      RouteDoc("Cancel a task (and its running worker)").Returns<pb::Task>().Errors(kChangeErrors),
      [broker](const HttpRequest& request, Reply reply) {
        pb::CancelTaskRequest cancel;
        cancel.set_id(request.Param("id"));
        broker->CancelTask(MetaOf(request), cancel, RespondJson<pb::Task>(std::move(reply)));
      });
  router.Post("/api/tasks/:id/retry",
              RouteDoc("Retry an ended task: a new pending task with its description")
                  .Describe("Copies the task's title, prompt, provider and options, labels, "
                            "preference, priority, git options, attempts, timeout and "
                            "concurrency key (not its own credentials, gone with its end); the "
                            "new task's `retryOf` names it. 409 while it has not ended.")
                  .Returns<pb::Task>(201)
                  .Errors(kCreateErrors),
              [broker](const HttpRequest& request, Reply reply) {
                pb::RetryTaskRequest retry;
                retry.set_id(request.Param("id"));
                broker->RetryTask(MetaOf(request), retry,
                                  RespondJson<pb::Task>(std::move(reply), 201));
              });
  router.Get("/api/tasks/:id/comments",
             RouteDoc("List the comments on a task's artifacts")
                 .Returns<pb::ListCommentsResponse>()
                 .Errors(kGetErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::ListCommentsRequest list;
               list.set_task_id(request.Param("id"));
               broker->ListComments(MetaOf(request), list,
                                    RespondJson<pb::ListCommentsResponse>(std::move(reply)));
             });
  router.Post("/api/tasks/:id/comments",
              RouteDoc("Comment on a task's artifact (its patch, a file and line of it, its commit, "
                       "branch, pull request or plan)")
                  .Body<pb::PostCommentRequest>()
                  .Returns<pb::Comment>(201)
                  .Errors(kChangeErrors),
              [broker](const HttpRequest& request, Reply reply) {
                pb::PostCommentRequest post;
                if (!ParseBody(request, &post, reply)) return;
                if (!SameAsPath(post.task_id(), request.Param("id"), "taskId", reply)) return;
                post.set_task_id(request.Param("id"));
                broker->PostComment(MetaOf(request), post,
                                    RespondJson<pb::Comment>(std::move(reply), 201));
              });
}

void AddWorkerRoutes(Router& router, std::shared_ptr<BrokerClient> broker) {
  router.Get("/api/workers",
             RouteDoc("List workers (attempts at tasks)")
                 .Query<pb::ListWorkersRequest>()
                 .Returns<pb::ListWorkersResponse>()
                 .Errors(kListErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::ListWorkersRequest query;
               if (!ParseQuery(request, &query, reply)) return;
               broker->ListWorkers(MetaOf(request), query,
                                   RespondJson<pb::ListWorkersResponse>(std::move(reply)));
             });
  router.Get("/api/workers/:id", RouteDoc("Get a worker").Returns<pb::Worker>().Errors(kGetErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::GetWorkerRequest get;
               get.set_id(request.Param("id"));
               broker->GetWorker(MetaOf(request), get, RespondJson<pb::Worker>(std::move(reply)));
             });
  const std::pair<const char*, pb::ControlWorkerRequest::Action> kControls[] = {
      {"pause", pb::ControlWorkerRequest::pause},
      {"resume", pb::ControlWorkerRequest::resume},
      {"cancel", pb::ControlWorkerRequest::cancel},
  };
  for (const auto& [name, action] : kControls) {
    router.Post(absl::StrCat("/api/workers/:id/", name),
                RouteDoc(absl::StrCat("Send a worker the ", name, " control"))
                    .Returns<pb::Worker>()
                    .Errors(kChangeErrors),
                [broker, action = action](const HttpRequest& request, Reply reply) {
                  pb::ControlWorkerRequest control;
                  control.set_id(request.Param("id"));
                  control.set_action(action);
                  broker->ControlWorker(MetaOf(request), control,
                                        RespondJson<pb::Worker>(std::move(reply)));
                });
  }
  // A worker for a pending task on a runner chosen by hand, started later.
  router.Post("/api/workers",
              RouteDoc("Assign a pending task to a runner chosen by hand (idle until started)")
                  .Describe("The runner's choice stands in for the task's runner preference and "
                            "labels; grants and the runner's room still hold.")
                  .Body<pb::CreateWorkerRequest>()
                  .Returns<pb::Worker>(201)
                  .Errors(kCreateErrors),
              [broker](const HttpRequest& request, Reply reply) {
                pb::CreateWorkerRequest create;
                if (!ParseBody(request, &create, reply)) return;
                broker->CreateWorker(MetaOf(request), create,
                                     RespondJson<pb::Worker>(std::move(reply), 201));
              });
  router.Post("/api/workers/:id/start",
              RouteDoc("Start a worker assigned by hand")
                  .Returns<pb::Worker>()
                  .Errors(kChangeErrors),
              [broker](const HttpRequest& request, Reply reply) {
                pb::StartWorkerRequest start;
                start.set_id(request.Param("id"));
                broker->StartWorker(MetaOf(request), start,
                                    RespondJson<pb::Worker>(std::move(reply)));
              });
  // The conversation on a worker, and its attachments as files.
  router.Get("/api/workers/:id/messages",
             RouteDoc("The conversation on a worker: people's messages and the agent's")
                 .Returns<pb::ListMessagesResponse>()
                 .Errors(kGetErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::ListMessagesRequest list;
               list.set_worker_id(request.Param("id"));
               broker->ListMessages(MetaOf(request), list,
                                    RespondJson<pb::ListMessagesResponse>(std::move(reply)));
             });
  router.Post("/api/workers/:id/messages",
              RouteDoc("Send a worker a message, with attachments (base64 data); to a worker "
                       "waiting for input it is the answer")
                  .Body<pb::PostMessageRequest>()
                  .Returns<pb::Message>(201)
                  .Errors(kChangeErrors),
              [broker](const HttpRequest& request, Reply reply) {
                pb::PostMessageRequest post;
                if (!ParseBody(request, &post, reply)) return;
                if (!SameAsPath(post.worker_id(), request.Param("id"), "workerId", reply)) return;
                post.set_worker_id(request.Param("id"));
                broker->PostMessage(MetaOf(request), post,
                                    RespondJson<pb::Message>(std::move(reply), 201));
              });
  router.Get("/api/workers/:id/messages/:messageId/attachments/:n",
             RouteDoc("An attachment of a message, as a file (its own content type)")
                 .ReturnsMedia("application/octet-stream")
                 .Errors(kGetErrors),
             [broker](const HttpRequest& request, Reply reply) {
               pb::GetAttachmentRequest get;
               get.set_worker_id(request.Param("id"));
               get.set_message_id(request.Param("messageId"));
               int index = 0;
               if (!absl::SimpleAtoi(request.Param("n"), &index) || index < 0) {
                 return reply(ErrorResponse(absl::InvalidArgumentError(
                     "the attachment's index in the path must be a number from 0")));
               }
               get.set_index(index);
               broker->GetAttachment(
                   MetaOf(request), get,
                   [reply = std::move(reply)](absl::StatusOr<pb::Attachment> got) {
                     if (!got.ok()) return reply(ErrorResponse(got.status()));
                     HttpResponse file;
                     file.content_type = got->content_type();
                     file.body = std::move(*got->mutable_data());
                     file.headers = {
                         {"Content-Disposition",
                          absl::StrCat("attachment; filename*=UTF-8''", Rfc5987(got->name()))},
                         {"X-Content-Type-Options", "nosniff"},
                         {"Content-Security-Policy", "sandbox; default-src 'none'"},
                     };
                     reply(std::move(file));
                   });
             });
  // The seeds' polling agents: claim, then report on each worker.
  router.Post("/api/workers/claim",
              RouteDoc("Claim pending tasks for a polling agent (legacy)")
                  .Describe("Each claimed worker holds a lease that PATCH /api/workers/{id} "
                            "renews.")
                  .Body<pb::ClaimWorkersRequest>(/*optional=*/true)
                  .Returns<pb::ClaimWorkersResponse>()
                  .Errors({403, 429}),
              [broker](const HttpRequest& request, Reply reply) {
                pb::ClaimWorkersRequest claim;
                if (!ParseBody(request, &claim, reply, /*allow_empty=*/true)) return;
                broker->ClaimWorkers(MetaOf(request), claim,
                                     RespondJson<pb::ClaimWorkersResponse>(std::move(reply)));
              });
  router.Patch("/api/workers/:id",
               RouteDoc("Report a polling agent's progress on a worker (legacy)")
                   .Describe("Renews the worker's lease; the answer carries any control for "
                             "the agent. An `id` in the body must be the path's.")
                   .Body<pb::UpdateWorkerRequest>()
                   .Returns<pb::UpdateWorkerResponse>()
                   .Errors(kChangeErrors),
               [broker](const HttpRequest& request, Reply reply) {
                 pb::UpdateWorkerRequest update;
                 if (!ParseBody(request, &update, reply)) return;
                 if (!SameAsPath(update.id(), request.Param("id"), "id", reply)) return;
                 update.set_id(request.Param("id"));
                 broker->UpdateWorker(MetaOf(request), update,
                                      RespondJson<pb::UpdateWorkerResponse>(std::move(reply)));
               });
  router.Post("/revert",
              RouteDoc("Revert a commit on a branch, as a task of kind revert")
                  .Body(JsonFields({
                      {"workspaceId", "string", "The workspace (repository)."},
                      {"projectId", "string", "The workspace, as seed 002 names it."},
                      {"branch", "string", "The branch to revert on.", true},
                      {"branchId", "string", "The branch, as seed 002 names it."},
                      {"commit", "string", "The commit to revert.", true},
                      {"push", "boolean", "Push the revert (default true)."},
                      {"title", "string", "The task's title."},
                  }))
                  .Returns<pb::Task>(202)
                  .Errors(kCreateErrors),
              [broker](const HttpRequest& request, Reply reply) {
                absl::StatusOr<pb::Task> task = RevertTask(request.body);
                if (!task.ok()) return reply(ErrorResponse(task.status()));
                pb::CreateTaskRequest create;
                *create.mutable_task() = *std::move(task);
                broker->CreateTask(MetaOf(request), create,
                                   RespondJson<pb::Task>(std::move(reply), 202));
              });
  router.Post("/api/workers/:id/input",
              RouteDoc("Answer a worker waiting for input, or approve its plan")
                  .Body(JsonFields({
                      {"text", "string", "The message for the agent."},
                      {"approve", "boolean", "true: approve the plan (when no text)."},
                  }))
                  .Returns<pb::Worker>()
                  .Errors(kChangeErrors),
              [broker](const HttpRequest& request, Reply reply) {
                absl::StatusOr<std::string> text = InputText(request.body);
                if (!text.ok()) return reply(ErrorResponse(text.status()));
                pb::ControlWorkerRequest control;
                control.set_id(request.Param("id"));
                control.set_action(pb::ControlWorkerRequest::input);
                control.set_text(*std::move(text));
                broker->ControlWorker(MetaOf(request), control,
                                      RespondJson<pb::Worker>(std::move(reply)));
              });
}

// The session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS. It
// lasts as long as the browser's session (accounts ends the session itself
// when it expires); `clear` removes it.
std::string SessionCookie(bool secure, const std::string& value, bool clear) {
  return absl::StrCat(kSessionCookie, "=", value, "; Path=/", clear ? "; Max-Age=0" : "",
                      "; HttpOnly; SameSite=Strict", secure ? "; Secure" : "");
}

// The dashboard signs in once with a key and gets a session for it: a
// random token in an HttpOnly cookie (EventSource cannot send an
// Authorization header), never the key. Signing out revokes the session.
void AddSessionRoutes(Router& router, std::shared_ptr<AccountsClient> accounts) {
  router.Post(
      "/api/session",
      RouteDoc("Sign the dashboard in with an API key")
          .Tag("session")
          .Describe("Answers the session and sets it as the HttpOnly, SameSite=Strict "
                    "`buildd_session` cookie (Secure over HTTPS); the token is never in the "
                    "body.")
          .Body<pb::AuthenticateRequest>()
          .Returns<pb::CreateSessionResponse>()
          .Errors({401}),
      [accounts](const HttpRequest& request, Reply reply) {
        pb::AuthenticateRequest sign_in;
        if (!ParseBody(request, &sign_in, reply)) return;
        const std::string key = sign_in.api_key();
        if (!IsWellFormedKey(key)) {
          return reply(ErrorResponse(
              absl::InvalidArgumentError("invalid value for field apiKey (expected an API key)")));
        }
        pb::CreateSessionRequest create;
        create.set_user_agent(request.Header(boost::beast::http::field::user_agent));
        accounts->CreateSession(
            CallMeta{key, request.request_id}, create,
            [reply = std::move(reply),
             secure = request.secure](absl::StatusOr<pb::CreateSessionResponse> made) {
              if (!made.ok()) return reply(ErrorResponse(made.status()));
              const std::string token = made->token();
              made->clear_token();
              HttpResponse response = JsonResponse(200, ToJson(*made));
              response.headers.emplace_back("Set-Cookie", SessionCookie(secure, token, false));
              response.headers.emplace_back("Cache-Control", "no-store");
              reply(std::move(response));
            });
      },
      Auth::kNone);
  router.Delete(
      "/api/session",
      RouteDoc("Sign the dashboard out")
          .Tag("session")
          .Describe("Ends the cookie's session, if any, and clears the cookie.")
          .Errors({403, 404}),
      [accounts](const HttpRequest& request, Reply reply) {
        auto signed_out = [reply = std::move(reply), secure = request.secure](absl::Status status) {
          HttpResponse response = status.ok() ? JsonResponse(200, "{}") : ErrorResponse(status);
          response.headers.emplace_back("Set-Cookie", SessionCookie(secure, "", true));
          reply(std::move(response));
        };
        if (request.api_key.empty()) return signed_out(absl::OkStatus());
        accounts->RevokeSession(MetaOf(request), pb::RevokeSessionRequest(),
                                [signed_out](absl::StatusOr<pb::Session> revoked) {
                                  // A key (not a session) or an ended session: nothing to end.
                                  const absl::StatusCode code = revoked.status().code();
                                  signed_out(code == absl::StatusCode::kInvalidArgument ||
                                                     code == absl::StatusCode::kUnauthenticated
                                                 ? absl::OkStatus()
                                                 : revoked.status());
                                });
      },
      Auth::kNone);
  router.Get("/api/sessions",
             RouteDoc("List an account's dashboard sessions")
                 .Tag("session")
                 .QueryParam({"accountId", "string",
                              "Another account's (admin only); empty: the caller's."})
                 .Returns<pb::ListSessionsResponse>()
                 .Errors(kGetErrors),
             [accounts](const HttpRequest& request, Reply reply) {
               pb::ListSessionsRequest list;
               list.set_account_id(request.Query("accountId"));
               accounts->ListSessions(MetaOf(request), list,
                                      RespondJson<pb::ListSessionsResponse>(std::move(reply)));
             });
  router.Delete(
      "/api/sessions/:id",
      RouteDoc("End a dashboard session").Tag("session").Returns<pb::Session>().Errors(kGetErrors),
      [accounts](const HttpRequest& request, Reply reply) {
        pb::RevokeSessionRequest revoke;
        revoke.set_id(request.Param("id"));
        accounts->RevokeSession(MetaOf(request), revoke,
                                RespondJson<pb::Session>(std::move(reply)));
      });
}

// Both services' grpc.health.v1 Check, in parallel.
void AddHealthRoute(Router& router, std::shared_ptr<AccountsClient> accounts,
                    std::shared_ptr<BrokerClient> broker) {
  router.Get(
      "/health",
      RouteDoc("Whether the gateway reaches both services")
          .Returns(JsonFields({
              {"status", "string", "ok, or unavailable (then the status is 503)."},
              {"accounts", "string", "The accounts service's health: SERVING, ..."},
              {"broker", "string", "The broker's health: SERVING, ..."},
          }))
          .AlsoAnswers({503}),
      [accounts, broker](const HttpRequest& request, Reply reply) {
        struct Join {
          absl::Mutex mu;
          std::string accounts ABSL_GUARDED_BY(mu);
          std::string broker ABSL_GUARDED_BY(mu);
          int pending ABSL_GUARDED_BY(mu) = 2;
          Reply reply;
        };
        auto join = std::make_shared<Join>();
        join->reply = std::move(reply);
        auto done = [join](std::string Join::*slot, absl::StatusOr<std::string> status) {
          std::string accounts_status, broker_status;
          {
            absl::MutexLock lock(&join->mu);
            (*join).*slot = status.ok() ? *status : CodeName(status.status().code());
            if (--join->pending > 0) return;
            accounts_status = join->accounts;
            broker_status = join->broker;
          }
          const bool ok = accounts_status == "SERVING" && broker_status == "SERVING";
          join->reply(JsonResponse(
              ok ? 200 : 503, absl::StrCat(R"({"status":)", ok ? R"("ok")" : R"("unavailable")",
                                           R"(,"accounts":)", JsonQuote(accounts_status),
                                           R"(,"broker":)", JsonQuote(broker_status), "}")));
        };
        accounts->CheckHealth([done](absl::StatusOr<std::string> status) {
          done(&Join::accounts, std::move(status));
        });
        broker->CheckHealth(
            [done](absl::StatusOr<std::string> status) { done(&Join::broker, std::move(status)); });
      },
      Auth::kNone);
}

}  // namespace

std::shared_ptr<Router> BuildRouter(std::shared_ptr<AccountsClient> accounts,
                                    std::shared_ptr<BrokerClient> broker, RestApiOptions options) {
  auto router = std::make_shared<Router>();
  AddDashboardPageRoutes(*router);
  AddHealthRoute(*router, accounts, broker);
  AddSessionRoutes(*router, accounts);
  AddAccountRoutes(*router, accounts);
  AddWorkspaceRoutes(*router, broker);
  AddTaskRoutes(*router, broker);
  AddWorkerRoutes(*router, broker);
  AddDashboardRoutes(*router, accounts, broker);
  router->GetStream(
      "/api/events",
      RouteDoc("Follow events live (Server-Sent Events), resumable")
          .Describe("Each event's `id:` is its global id; a reconnecting client resumes after "
                    "it with the Last-Event-ID header (or ?lastEventId=).")
          .Query<pb::SubscribeRequest>()
          .QueryParam({"lastEventId", "integer", "Resume after this event id."})
          .Header({"Last-Event-ID", "integer", "Resume after this event id (wins over the query)."})
          .Returns<pb::Event>()
          .SaysOnSuccess("One message per event: `id:` its global id (what Last-Event-ID resumes "
                         "after), `event:` its type, `data:` the Event; `: heartbeat` when "
                         "idle. A refusal before the stream starts is an error answer instead.")
          .Errors(kGetErrors),
      EventStreamHandler(broker, options.sse));
  AddExecuteRoutes(*router, accounts, broker, options.sse);
  AddWorkflowRoutes(*router, broker, options.sse);
  AddGitHubWebhookRoute(*router, broker);
  // Made from this router's own routes, on the first request.
  router->Get("/openapi.json",
              RouteDoc("This document: every route of the gateway, as OpenAPI 3.1").Tag("openapi"),
              OpenApiHandler(router.get()), Auth::kNone);
  return router;
}

}  // namespace buildd::gateway
