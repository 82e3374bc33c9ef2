#include "gateway/rest_api.h"

#include <google/protobuf/struct.pb.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gateway/dashboard.h"
#include "gateway/github_webhook.h"
#include "gateway/http_errors.h"
#include "gateway/json_codec.h"
#include "common/status.h"

namespace buildd::gateway {
namespace {

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

// POST /revert: {"workspaceId", "branch", "commit", "push"} → a task of
// kind revert (push defaults to true).
absl::StatusOr<pb::Task> RevertTask(absl::string_view body) {
  google::protobuf::Struct input;
  BUILDD_RETURN_IF_ERROR(ParseJsonBody(body, &input));
  pb::Task task;
  task.set_kind("revert");
  task.set_push(true);
  for (const auto& [name, value] : input.fields()) {
    const bool is_string = value.kind_case() == google::protobuf::Value::kStringValue;
    if (name == "workspaceId" || name == "branch" || name == "commit" || name == "title") {
      if (!is_string) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid value for field ", name, " (expected a string)"));
      }
      if (name == "workspaceId") task.set_workspace_id(value.string_value());
      if (name == "branch") task.set_work_branch(value.string_value());
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
                       " in the revert body (expected workspaceId, branch, commit, push, title)"));
    }
  }
  if (task.work_branch().empty()) return absl::InvalidArgumentError("field branch is required");
  if (task.revert_commit().empty()) return absl::InvalidArgumentError("field commit is required");
  // The broker checks the values (as revertCommit and workBranch).
  return task;
}

void AddAccountRoutes(Router& router, std::shared_ptr<AccountsClient> accounts) {
  router.Post("/api/accounts", [accounts](const HttpRequest& request, Reply reply) {
    pb::CreateAccountRequest body;
    if (!ParseBody(request, &body, reply)) return;
    accounts->CreateAccount(MetaOf(request), body,
                            RespondJson<pb::CreateAccountResponse>(std::move(reply), 201));
  });
  router.Get("/api/accounts", [accounts](const HttpRequest& request, Reply reply) {
    pb::ListAccountsRequest query;
    if (!ParseQuery(request, &query, reply)) return;
    accounts->ListAccounts(MetaOf(request), query,
                           RespondJson<pb::ListAccountsResponse>(std::move(reply)));
  });
  router.Get("/api/accounts/:id", [accounts](const HttpRequest& request, Reply reply) {
    pb::GetAccountRequest get;
    get.set_id(request.Param("id"));
    accounts->GetAccount(MetaOf(request), get, RespondJson<pb::Account>(std::move(reply)));
  });
  // The fields the body names change; the others keep their value.
  router.Patch("/api/accounts/:id", [accounts](const HttpRequest& request, Reply reply) {
    pb::UpdateAccountRequest update;
    if (!ParseBody(request, &update, reply)) return;
    if (!SameAsPath(update.id(), request.Param("id"), "id", reply)) return;
    update.set_id(request.Param("id"));
    accounts->UpdateAccount(MetaOf(request), update, RespondJson<pb::Account>(std::move(reply)));
  });
  router.Post("/api/accounts/:id/workspaces", [accounts](const HttpRequest& request, Reply reply) {
    pb::GrantWorkspaceRequest grant;
    if (!ParseBody(request, &grant, reply)) return;
    if (!SameAsPath(grant.account_id(), request.Param("id"), "accountId", reply)) return;
    grant.set_account_id(request.Param("id"));
    accounts->GrantWorkspace(MetaOf(request), grant, RespondJson<pb::Grant>(std::move(reply)));
  });
  router.Post("/api/accounts/:id/keys", [accounts](const HttpRequest& request, Reply reply) {
    pb::RotateKeyRequest rotate;
    if (!ParseBody(request, &rotate, reply, /*allow_empty=*/true)) return;
    if (!SameAsPath(rotate.account_id(), request.Param("id"), "accountId", reply)) return;
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
  router.Delete("/api/accounts/:id/keys/:keyId", revoke);
  router.Delete("/api/accounts/:id/keys", revoke);
}

void AddWorkspaceRoutes(Router& router, std::shared_ptr<BrokerClient> broker) {
  router.Get("/api/workspaces", [broker](const HttpRequest& request, Reply reply) {
    pb::ListWorkspacesRequest query;
    if (!ParseQuery(request, &query, reply)) return;
    broker->ListWorkspaces(MetaOf(request), query,
                           RespondJson<pb::ListWorkspacesResponse>(std::move(reply)));
  });
  router.Post("/api/workspaces", [broker](const HttpRequest& request, Reply reply) {
    pb::CreateWorkspaceRequest body;
    if (!ParseBody(request, &body, reply)) return;
    broker->CreateWorkspace(MetaOf(request), body,
                            RespondJson<pb::Workspace>(std::move(reply), 201));
  });
  router.Get("/api/workspaces/:id", [broker](const HttpRequest& request, Reply reply) {
    pb::GetWorkspaceRequest get;
    get.set_id(request.Param("id"));
    broker->GetWorkspace(MetaOf(request), get, RespondJson<pb::Workspace>(std::move(reply)));
  });
}

void AddTaskRoutes(Router& router, std::shared_ptr<BrokerClient> broker) {
  router.Post("/api/tasks", [broker](const HttpRequest& request, Reply reply) {
    // Clients write the task's fields directly, as in the seeds' API.
    pb::CreateTaskRequest create;
    if (!ParseBody(request, create.mutable_task(), reply)) return;
    broker->CreateTask(MetaOf(request), create, RespondJson<pb::Task>(std::move(reply), 201));
  });
  router.Get("/api/tasks", [broker](const HttpRequest& request, Reply reply) {
    pb::ListTasksRequest query;
    if (!ParseQuery(request, &query, reply)) return;
    broker->ListTasks(MetaOf(request), query, RespondJson<pb::ListTasksResponse>(std::move(reply)));
  });
  router.Get("/api/tasks/:id", [broker](const HttpRequest& request, Reply reply) {
    pb::GetTaskRequest get;
    get.set_id(request.Param("id"));
    broker->GetTask(MetaOf(request), get, RespondJson<pb::GetTaskResponse>(std::move(reply)));
  });
  router.Post("/api/tasks/:id/cancel", [broker](const HttpRequest& request, Reply reply) {
    pb::CancelTaskRequest cancel;
    cancel.set_id(request.Param("id"));
    broker->CancelTask(MetaOf(request), cancel, RespondJson<pb::Task>(std::move(reply)));
  });
}

void AddWorkerRoutes(Router& router, std::shared_ptr<BrokerClient> broker) {
  router.Get("/api/workers", [broker](const HttpRequest& request, Reply reply) {
    pb::ListWorkersRequest query;
    if (!ParseQuery(request, &query, reply)) return;
    broker->ListWorkers(MetaOf(request), query,
                        RespondJson<pb::ListWorkersResponse>(std::move(reply)));
  });
  router.Get("/api/workers/:id", [broker](const HttpRequest& request, Reply reply) {
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
                [broker, action = action](const HttpRequest& request, Reply reply) {
                  pb::ControlWorkerRequest control;
                  control.set_id(request.Param("id"));
                  control.set_action(action);
                  broker->ControlWorker(MetaOf(request), control,
                                        RespondJson<pb::Worker>(std::move(reply)));
                });
  }
  router.Post("/revert", [broker](const HttpRequest& request, Reply reply) {
    absl::StatusOr<pb::Task> task = RevertTask(request.body);
    if (!task.ok()) return reply(ErrorResponse(task.status()));
    pb::CreateTaskRequest create;
    *create.mutable_task() = *std::move(task);
    broker->CreateTask(MetaOf(request), create, RespondJson<pb::Task>(std::move(reply), 202));
  });
  router.Post("/api/workers/:id/input", [broker](const HttpRequest& request, Reply reply) {
    absl::StatusOr<std::string> text = InputText(request.body);
    if (!text.ok()) return reply(ErrorResponse(text.status()));
    pb::ControlWorkerRequest control;
    control.set_id(request.Param("id"));
    control.set_action(pb::ControlWorkerRequest::input);
    control.set_text(*std::move(text));
    broker->ControlWorker(MetaOf(request), control, RespondJson<pb::Worker>(std::move(reply)));
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
              response.headers.emplace_back("Set-Cookie",
                                            SessionCookie(secure, token, false));
              response.headers.emplace_back("Cache-Control", "no-store");
              reply(std::move(response));
            });
      },
      Auth::kNone);
  router.Delete(
      "/api/session",
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
  router.Get("/api/sessions", [accounts](const HttpRequest& request, Reply reply) {
    pb::ListSessionsRequest list;
    list.set_account_id(request.Query("accountId"));
    accounts->ListSessions(MetaOf(request), list,
                           RespondJson<pb::ListSessionsResponse>(std::move(reply)));
  });
  router.Delete("/api/sessions/:id", [accounts](const HttpRequest& request, Reply reply) {
    pb::RevokeSessionRequest revoke;
    revoke.set_id(request.Param("id"));
    accounts->RevokeSession(MetaOf(request), revoke, RespondJson<pb::Session>(std::move(reply)));
  });
}

// Both services' grpc.health.v1 Check, in parallel.
void AddHealthRoute(Router& router, std::shared_ptr<AccountsClient> accounts,
                    std::shared_ptr<BrokerClient> broker) {
  router.Get(
      "/health",
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
  router->Get(
      "/",
      [](const HttpRequest&, Reply reply) {
        HttpResponse page;
        page.content_type = "text/html; charset=utf-8";
        page.body = std::string(DashboardHtml());
        page.headers = {
            {"Cache-Control", "no-store"},
            {"X-Content-Type-Options", "nosniff"},
            {"Referrer-Policy", "no-referrer"},
            {"Content-Security-Policy",
             "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"},
        };
        reply(std::move(page));
      },
      Auth::kNone);
  AddHealthRoute(*router, accounts, broker);
  AddSessionRoutes(*router, accounts);
  AddAccountRoutes(*router, accounts);
  AddWorkspaceRoutes(*router, broker);
  AddTaskRoutes(*router, broker);
  AddWorkerRoutes(*router, broker);
  AddGitHubWebhookRoute(*router, broker);
  router->GetStream("/api/events", EventStreamHandler(broker, options.sse));
  return router;
}

}  // namespace buildd::gateway
