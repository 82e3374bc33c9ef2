#include "gateway/execute_api.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "common/status.h"
#include "gateway/body_fields.h"
#include "gateway/http_errors.h"
#include "gateway/json_codec.h"

namespace buildd::gateway {
namespace {

using google::protobuf::Struct;

CallMeta MetaOf(const HttpRequest& request) {
  return CallMeta{request.api_key, request.request_id};
}

// What POST /execute asks for, parsed once.
struct ExecuteBody {
  std::string user_request;
  std::string provider;  // claude | codex
  std::map<std::string, std::string> credentials;
  std::string repo_url;
  std::string base_branch;
  std::string workspace;   // an id or a name
  std::string session_id;  // the session to continue
  bool auto_commit = false;
  Struct provider_options;
};

constexpr char kExecuteFields[] =
    "userRequest, codingAssistantProvider, codingAssistantAuthentication, "
    "codingAssistantAccessToken, github, autoCommit, websiteSessionId, resumeSessionId, "
    "providerOptions, workspace, database";

absl::StatusOr<std::string> ProviderOf(const std::string& name) {
  if (name == "claude-code" || name == "ClaudeAgentSDK" || name == "claude") {
    return std::string("claude");
  }
  if (name == "codex" || name == "CodexSDK") return std::string("codex");
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value ", JsonQuote(name.substr(0, 80)),
                   " for field codingAssistantProvider (expected claude-code, ClaudeAgentSDK, "
                   "codex or CodexSDK)"));
}

// 003's codingAssistantAuthentication (an OAuth JSON document, or a key)
// or 004's codingAssistantAccessToken: the environment the agent gets.
absl::Status PutProviderCredentials(const std::string& field, const std::string& value,
                                    const std::string& provider,
                                    std::map<std::string, std::string>* env) {
  const std::string trimmed(absl::StripAsciiWhitespace(value));
  if (absl::StartsWith(trimmed, "{")) {
    Struct doc;
    if (!google::protobuf::util::JsonStringToMessage(trimmed, &doc).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("field ", field, " is neither a key nor a JSON credentials document"));
    }
    auto oauth = doc.fields().find("claudeAiOauth");
    if (oauth != doc.fields().end() && provider == "claude") {
      const auto& fields = oauth->second.struct_value().fields();
      auto token = fields.find("accessToken");
      if (token == fields.end() || token->second.string_value().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("field ", field, ": claudeAiOauth.accessToken is required"));
      }
      (*env)["CLAUDE_CODE_OAUTH_TOKEN"] = token->second.string_value();
      return absl::OkStatus();
    }
    auto openai = doc.fields().find("OPENAI_API_KEY");
    if (openai != doc.fields().end() && provider == "codex" &&
        !openai->second.string_value().empty()) {
      (*env)["OPENAI_API_KEY"] = openai->second.string_value();
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "field ", field, " holds no credentials for ", provider,
        provider == "claude" ? " (expected {\"claudeAiOauth\":{\"accessToken\":...}} or a key)"
                             : " (expected {\"OPENAI_API_KEY\":...} or a key)"));
  }
  (*env)[provider == "codex" ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY"] = trimmed;
  return absl::OkStatus();
}

absl::StatusOr<ExecuteBody> ParseExecuteBody(absl::string_view text) {
  BUILDD_ASSIGN_OR_RETURN(BodyFields body, BodyFields::Parse(text));
  ExecuteBody out;
  BUILDD_ASSIGN_OR_RETURN(out.user_request,
                          body.RequiredString({"userRequest"}, 100 * 1024, /*multiline=*/true));
  BUILDD_ASSIGN_OR_RETURN(std::string provider,
                          body.RequiredString({"codingAssistantProvider"}));
  BUILDD_ASSIGN_OR_RETURN(out.provider, ProviderOf(provider));
  for (const char* field : {"codingAssistantAuthentication", "codingAssistantAccessToken"}) {
    BUILDD_ASSIGN_OR_RETURN(std::string value, body.String({field}, 16 * 1024));
    if (!value.empty()) {
      BUILDD_RETURN_IF_ERROR(PutProviderCredentials(field, value, out.provider, &out.credentials));
    }
  }
  BUILDD_ASSIGN_OR_RETURN(BodyFields github, body.Nested("github"));
  BUILDD_ASSIGN_OR_RETURN(out.repo_url, github.String({"repoUrl"}, 2048));
  BUILDD_ASSIGN_OR_RETURN(out.base_branch, github.String({"branch"}));
  BUILDD_ASSIGN_OR_RETURN(std::string git_token, github.String({"accessToken"}, 4096));
  if (!git_token.empty()) out.credentials["GIT_TOKEN"] = git_token;
  BUILDD_RETURN_IF_ERROR(github.NoOthers("repoUrl, branch, accessToken"));
  BUILDD_ASSIGN_OR_RETURN(out.auto_commit, body.Bool("autoCommit", false));
  BUILDD_ASSIGN_OR_RETURN(out.session_id, body.String({"websiteSessionId", "resumeSessionId"}));
  if (!out.session_id.empty() && !CheckUuid(out.session_id, "websiteSessionId").ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid value ", JsonQuote(out.session_id),
        " for field websiteSessionId (expected a session id from the connected event)"));
  }
  BUILDD_ASSIGN_OR_RETURN(out.provider_options, body.Object("providerOptions"));
  BUILDD_ASSIGN_OR_RETURN(out.workspace, body.String({"workspace"}));
  // The seeds' optional persistence settings: buildd keeps everything itself.
  body.Ignore("database");
  BUILDD_RETURN_IF_ERROR(body.NoOthers(kExecuteFields));
  return out;
}

// The same repository however it is spelled: no scheme case, no trailing
// slash or ".git".
std::string RepoKey(absl::string_view url) {
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(url));
  absl::string_view key = lower;
  while (absl::ConsumeSuffix(&key, "/") || absl::ConsumeSuffix(&key, ".git")) {
  }
  return std::string(key);
}

bool MayCreate(const pb::Principal& p, const std::string& workspace_id) {
  if (p.is_admin()) return true;
  for (const auto& g : p.grants()) {
    if (g.workspace_id() == workspace_id && g.can_create()) return true;
  }
  return false;
}

// The workspace a new session runs in: `workspace` (id or name), else the
// one whose repoUrl is github.repoUrl, else the caller's only one; among
// those the caller may create tasks in.
absl::StatusOr<pb::Workspace> PickWorkspace(const ExecuteBody& body, const pb::Principal& p,
                                            const pb::ListWorkspacesResponse& listed) {
  std::vector<const pb::Workspace*> usable;
  for (const auto& w : listed.workspaces()) {
    if (MayCreate(p, w.id())) usable.push_back(&w);
  }
  if (!body.workspace.empty()) {
    for (const pb::Workspace* w : usable) {
      if (w->id() == body.workspace || w->name() == body.workspace) {
        if (!body.repo_url.empty() && RepoKey(w->repo_url()) != RepoKey(body.repo_url)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "field github.repoUrl does not match the repoUrl of workspace ", body.workspace));
        }
        return *w;
      }
    }
    return absl::NotFoundError(absl::StrCat("field workspace: no workspace ",
                                            JsonQuote(body.workspace),
                                            " that this key may create tasks in"));
  }
  if (!body.repo_url.empty()) {
    for (const pb::Workspace* w : usable) {
      if (!w->repo_url().empty() && RepoKey(w->repo_url()) == RepoKey(body.repo_url)) return *w;
    }
    return absl::NotFoundError(
        absl::StrCat("field github.repoUrl: no workspace that this key may create tasks in has "
                     "repoUrl ",
                     JsonQuote(body.repo_url), " (an admin adds it with POST /api/workspaces)"));
  }
  if (usable.size() == 1) return *usable.front();
  if (usable.empty()) {
    return absl::PermissionDeniedError(
        "this key may create tasks in no workspace (needs a canCreate grant)");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("field github.repoUrl or workspace is required: this key may create tasks in ",
                   usable.size(), " workspaces"));
}

// The caller's sessions: its tasks that carry a session id, by session,
// oldest task first. Admins see every account's.
struct Sessions {
  pb::Principal caller;
  std::map<std::string, std::vector<pb::Task>> by_id;
};

// The most tasks one listing reads (newest first): older sessions fall out.
constexpr int kSessionTasks = 1000;

void LoadSessions(AccountsClient& accounts, BrokerClient& broker, const CallMeta& meta,
                  Callback<Sessions> done) {
  pb::AuthenticateRequest who;
  who.set_api_key(meta.api_key);
  accounts.Authenticate(meta, who, [&broker, meta, done = std::move(done)](
                                       absl::StatusOr<pb::Principal> caller) mutable {
    if (!caller.ok()) return done(caller.status());
    pb::ListTasksRequest list;
    list.set_limit(kSessionTasks);
    broker.ListTasks(meta, list, [caller = *std::move(caller), done = std::move(done)](
                                     absl::StatusOr<pb::ListTasksResponse> tasks) {
      if (!tasks.ok()) return done(tasks.status());
      Sessions out;
      out.caller = caller;
      for (auto it = tasks->tasks().rbegin(); it != tasks->tasks().rend(); ++it) {
        if (it->session_id().empty()) continue;
        if (!caller.is_admin() && it->created_by() != caller.account_id()) continue;
        out.by_id[it->session_id()].push_back(*it);
      }
      done(std::move(out));
    });
  });
}

absl::StatusOr<std::vector<pb::Task>> FindSession(const Sessions& sessions, const std::string& id,
                                                  const std::string& field) {
  auto it = sessions.by_id.find(id);
  if (it == sessions.by_id.end()) {
    // Not found rather than forbidden: another account's ids stay unknown.
    return absl::NotFoundError(
        absl::StrCat(field.empty() ? "" : absl::StrCat("field ", field, ": "), "session ", id,
                     " not found"));
  }
  return it->second;
}

// RFC 3339 to milliseconds between two of them; 0 when either does not parse.
double MillisBetween(const std::string& from, const std::string& to) {
  absl::Time a, b;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, from, &a, &err) ||
      !absl::ParseTime(absl::RFC3339_full, to, &b, &err)) {
    return 0;
  }
  return static_cast<double>(absl::ToInt64Milliseconds(b - a));
}

std::string DataString(const pb::Event& e, const std::string& name) {
  auto it = e.data().fields().find(name);
  return it == e.data().fields().end() ? "" : it->second.string_value();
}

// An "error" event that ends its task: the runner's Finished (status
// "error"). A lost runner's attempt also says "error", but "requeued" or
// "failed" follows it.
bool IsFinalError(const pb::Event& e) {
  return e.type() == "error" && e.status() == "error" &&
         !absl::StartsWith(e.text(), "runner lost");
}

// The seeds' execute events from buildd's task events. Stateless per event
// (what a resumed stream sends is what the first one did), given the tasks
// of the session; each event's last message carries its id.
class ExecuteDialect : public SseDialect {
 public:
  using Opener = std::function<void(const HttpRequest&, ExecuteDialect*,
                                    std::function<void(absl::StatusOr<Opening>)>)>;
  explicit ExecuteDialect(Opener opener) : opener_(std::move(opener)) {}

  void Open(const HttpRequest& request,
            std::function<void(absl::StatusOr<Opening>)> done) override {
    opener_(request, this, std::move(done));
  }

  // REQUIRES: before Open completes (called by the opener).
  void SetSession(std::string session_id, std::vector<pb::Task> tasks) {
    session_id_ = std::move(session_id);
    last_task_ = tasks.empty() ? "" : tasks.back().id();
    for (pb::Task& t : tasks) {
      std::string id = t.id();
      tasks_[id] = std::move(t);
    }
  }

  // connected and session_name, for the session's latest task.
  SseMessages Prelude() const {
    SseMessages out;
    auto it = tasks_.find(last_task_);
    if (it == tasks_.end()) return out;
    const pb::Task& task = it->second;
    JsonOut connected;
    connected.Set("type", "connected")
        .Set("sessionId", session_id_)
        .Set("taskId", task.id())
        .Set("workspaceId", task.workspace_id())
        .Set("provider", task.provider())
        .Set("timestamp", NowRfc3339());
    out.push_back(Message("", "connected", connected));
    JsonOut name;
    name.Set("type", "session_name")
        .Set("sessionId", session_id_)
        .Set("sessionName", task.title())
        .Set("branch", task.work_branch());
    out.push_back(Message("", "session_name", name));
    return out;
  }

  void Translate(const pb::Event& e, SseMessages* out) override {
    auto task_it = tasks_.find(e.task_id());
    if (task_it == tasks_.end()) return;
    const pb::Task& task = task_it->second;
    std::vector<std::pair<std::string, JsonOut>> messages;
    auto add = [&](const std::string& name) -> JsonOut& {
      messages.emplace_back(name, JsonOut());
      JsonOut& m = messages.back().second;
      m.Set("type", name).Set("sessionId", session_id_).Set("taskId", e.task_id());
      m.Set("timestamp", e.created_at());
      return m;
    };
    const std::string& type = e.type();
    if (type == "created") {
      add("message").Set("message", "Queued for a runner");
    } else if (type == "assigned") {
      add("message").Set("message", absl::StrCat("Assigned to runner ", e.runner_name()));
    } else if (type == "started") {
      add("message").Set("message", e.text().empty() ? "Started" : e.text());
    } else if (type == "requeued" || type == "rejected") {
      add("message").Set("message", absl::StrCat("Back in the queue: ", e.text()));
    } else if (type == "git") {
      const std::string stage = DataString(e, "stage");
      if (stage == "clone" || stage == "fetch") {
        add("github_pull_progress").Set("stage", stage).Set("message", e.text());
      } else if (stage == "branch") {
        add("branch_created").Set("branchName", task.work_branch()).Set("message", e.text());
      } else if (stage == "commit") {
        add("commit_progress").Set("stage", "analyzing").Set("message", "Analyzing the changes");
        add("commit_progress").Set("stage", "committing").Set("message", e.text());
      } else if (stage == "push") {
        add("commit_progress")
            .Set("stage", "pushing")
            .Set("branch", task.work_branch())
            .Set("message", absl::StrCat("Pushing ", e.text()));
      } else {
        add("message").Set("message", e.text());
      }
    } else if (type == "assistant_message" || type == "tool_use" || type == "tool_result" ||
               type == "result" || type == "plan" || type == "question") {
      JsonOut& m = add("assistant_message");
      m.Set("eventType", type).Set("content", e.text());
      if (e.data().fields_size() > 0) m.Set("data", e.data());
    } else if (type == "output") {
      add("message").Set("message", e.text()).Set("stream", e.stream());
    } else if (type == "status" && !e.status().empty()) {
      add("message").Set("message", absl::StrCat("Status: ", e.status())).Set("status", e.status());
    } else if (type == "completed") {
      JsonOut& m = add("completed");
      m.Set("duration", MillisBetween(task.created_at(), e.created_at()));
      m.Set("branch", task.work_branch());
      for (const char* field : {"commitSha", "branch"}) {
        const std::string v = DataString(e, field);
        if (!v.empty()) m.Set(field, v);
      }
      if (e.data().fields_size() > 0) m.Set("data", e.data());
    } else if (type == "canceled") {
      add("error").Set("code", "CANCELED").Set("error", "the task was canceled");
    } else if (type == "failed") {
      add("error").Set("code", "FAILED").Set("error", e.text());
    } else if (IsFinalError(e)) {
      add("error").Set("code", "EXECUTION_FAILED").Set("error", e.text());
    } else if (type == "error") {
      // The runner's own report; the final one follows.
      add("message").Set("message", e.text()).Set("level", "error");
    }
    for (size_t i = 0; i < messages.size(); ++i) {
      const bool last = i + 1 == messages.size();
      out->push_back(
          Message(last ? absl::StrCat(e.id()) : "", messages[i].first, messages[i].second));
    }
  }

  bool Ends(const pb::Event& e) override {
    if (e.task_id() != last_task_) return false;
    return e.type() == "completed" || e.type() == "canceled" || e.type() == "failed" ||
           IsFinalError(e);
  }

 private:
  static std::shared_ptr<const std::string> Message(const std::string& id, const std::string& name,
                                                    const JsonOut& data) {
    return std::make_shared<const std::string>(FormatSseMessage(id, name, data.Json()));
  }

  Opener opener_;
  std::string session_id_;
  std::string last_task_;
  std::map<std::string, pb::Task> tasks_;
};

// POST /execute: parse, find the workspace (or the session to continue),
// create the task, then follow it.
void OpenExecute(std::shared_ptr<AccountsClient> accounts, std::shared_ptr<BrokerClient> broker,
                 const HttpRequest& request, ExecuteDialect* dialect,
                 std::function<void(absl::StatusOr<SseDialect::Opening>)> done) {
  absl::StatusOr<ExecuteBody> parsed = ParseExecuteBody(request.body);
  if (!parsed.ok()) return done(parsed.status());
  auto body = std::make_shared<ExecuteBody>(*std::move(parsed));
  const CallMeta meta = MetaOf(request);

  // Last: the task, then the opening.
  auto create = [broker, meta, body, dialect, done](pb::Task task, std::string session_id,
                                                    std::vector<pb::Task> earlier) mutable {
    task.set_prompt(body->user_request);
    task.set_provider(body->provider);
    if (body->provider_options.fields_size() > 0) {
      *task.mutable_provider_options() = body->provider_options;
    }
    if (!body->base_branch.empty()) task.set_base_branch(body->base_branch);
    task.set_auto_commit(body->auto_commit);
    task.set_push(body->auto_commit);
    task.mutable_credentials()->insert(body->credentials.begin(), body->credentials.end());
    task.set_session_id(session_id);
    pb::CreateTaskRequest request;
    *request.mutable_task() = std::move(task);
    broker->CreateTask(meta, request, [dialect, done, session_id, earlier = std::move(earlier)](
                                         absl::StatusOr<pb::Task> created) mutable {
      if (!created.ok()) return done(created.status());
      created->clear_credentials();
      const std::string task_id = created->id();
      earlier.push_back(*std::move(created));
      dialect->SetSession(session_id, std::move(earlier));
      SseDialect::Opening opening;
      opening.subscribe.set_task_id(task_id);
      opening.prelude = dialect->Prelude();
      done(std::move(opening));
    });
  };

  if (!body->session_id.empty()) {
    // Continues the session's latest task, in its workspace and branch.
    LoadSessions(*accounts, *broker, meta,
                 [body, create, done](absl::StatusOr<Sessions> sessions) mutable {
                   if (!sessions.ok()) return done(sessions.status());
                   absl::StatusOr<std::vector<pb::Task>> tasks =
                       FindSession(*sessions, body->session_id, "websiteSessionId");
                   if (!tasks.ok()) return done(tasks.status());
                   const pb::Task& latest = tasks->back();
                   // The session's workspace is its first task's: a repoUrl
                   // or workspace given as well must name it.
                   if (!body->workspace.empty() && body->workspace != latest.workspace_id()) {
                     return done(absl::InvalidArgumentError(
                         "field workspace does not match the session's workspace"));
                   }
                   pb::Task task;
                   task.set_workspace_id(latest.workspace_id());
                   task.set_resume_from(latest.id());
                   create(std::move(task), body->session_id, *std::move(tasks));
                 });
    return;
  }
  pb::AuthenticateRequest who;
  who.set_api_key(meta.api_key);
  accounts->Authenticate(meta, who, [broker, meta, body, create, done](
                                        absl::StatusOr<pb::Principal> caller) mutable {
    if (!caller.ok()) return done(caller.status());
    broker->ListWorkspaces(meta, pb::ListWorkspacesRequest(),
                           [body, caller = *std::move(caller), create, done](
                               absl::StatusOr<pb::ListWorkspacesResponse> listed) mutable {
                             if (!listed.ok()) return done(listed.status());
                             absl::StatusOr<pb::Workspace> ws = PickWorkspace(*body, caller, *listed);
                             if (!ws.ok()) return done(ws.status());
                             pb::Task task;
                             task.set_workspace_id(ws->id());
                             create(std::move(task), NewUuid(), {});
                           });
  });
}

JsonOut SessionSummary(const std::string& id, const std::vector<pb::Task>& tasks) {
  const pb::Task& first = tasks.front();
  const pb::Task& latest = tasks.back();
  JsonOut out;
  out.Set("sessionId", id)
      .Set("sessionName", first.title())
      .Set("workspaceId", first.workspace_id())
      .Set("provider", latest.provider())
      .Set("branch", latest.work_branch())
      .Set("status", pb::Task::State_Name(latest.state()))
      .Set("latestTaskId", latest.id())
      .Set("createdAt", first.created_at())
      .Set("updatedAt", latest.updated_at());
  google::protobuf::ListValue* ids = out.Mutable("taskIds")->mutable_list_value();
  for (const pb::Task& t : tasks) ids->add_values()->set_string_value(t.id());
  return out;
}

void OpenSessionStream(std::shared_ptr<AccountsClient> accounts,
                       std::shared_ptr<BrokerClient> broker, const HttpRequest& request,
                       ExecuteDialect* dialect,
                       std::function<void(absl::StatusOr<SseDialect::Opening>)> done) {
  absl::StatusOr<int64_t> after_id = LastEventIdFromHttp(request);
  if (!after_id.ok()) return done(after_id.status());
  LoadSessions(*accounts, *broker, MetaOf(request),
               [id = request.Param("id"), after_id = *after_id, dialect,
                done](absl::StatusOr<Sessions> sessions) mutable {
                 if (!sessions.ok()) return done(sessions.status());
                 absl::StatusOr<std::vector<pb::Task>> tasks = FindSession(*sessions, id, "");
                 if (!tasks.ok()) return done(tasks.status());
                 SseDialect::Opening opening;
                 // A session's tasks share its first one's workspace.
                 opening.subscribe.set_workspace_id(tasks->front().workspace_id());
                 opening.subscribe.set_after_id(after_id);
                 dialect->SetSession(id, *std::move(tasks));
                 // A resumed stream already had the prelude.
                 if (after_id == 0) opening.prelude = dialect->Prelude();
                 done(std::move(opening));
               });
}

// {"status":"idle"} while a runner of the caller's account has a free
// slot, {"status":"busy"} with 429 when every slot is taken, 503 with
// none connected.
HttpResponse StatusResponse(const pb::ListRunnersResponse& runners) {
  int slots = 0, active = 0, live = 0;
  for (const pb::RunnerInfo& r : runners.runners()) {
    active += r.active_workers();
    if (r.draining()) continue;
    ++live;
    slots += std::max(r.max_tasks(), r.active_workers());
  }
  // Active workers of a draining runner take no slot of the others.
  int free = 0;
  for (const pb::RunnerInfo& r : runners.runners()) {
    if (!r.draining()) free += std::max(0, r.max_tasks() - r.active_workers());
  }
  JsonOut out;
  out.Set("runners", static_cast<double>(live))
      .Set("slots", static_cast<double>(slots))
      .Set("activeWorkers", static_cast<double>(active));
  if (live == 0) {
    out.Set("status", "unavailable");
    return JsonResponse(503, out.Json());
  }
  out.Set("status", free > 0 ? "idle" : "busy");
  return JsonResponse(free > 0 ? 200 : 429, out.Json());
}

}  // namespace

void AddExecuteRoutes(Router& router, std::shared_ptr<AccountsClient> accounts,
                      std::shared_ptr<BrokerClient> broker, SseOptions sse) {
  router.Add(Route{
      boost::beast::http::verb::post, "/execute", Auth::kRequired, nullptr,
      SseStreamHandler(
          broker,
          [accounts, broker] {
            return std::make_unique<ExecuteDialect>(
                [accounts, broker](const HttpRequest& request, ExecuteDialect* dialect,
                                   std::function<void(absl::StatusOr<SseDialect::Opening>)> done) {
                  OpenExecute(accounts, broker, request, dialect, std::move(done));
                });
          },
          sse)},
             RouteDoc("Run a one-shot task and stream it (seeds 003 and 004)")
                 .Describe("Answers Server-Sent Events named connected, session_name, message, "
                           "github_pull_progress, branch_created, commit_progress, "
                           "assistant_message, completed and error; the stream ends after "
                           "completed or error. Credentials are used for this task only.")
                 .Body(JsonFields({
                     {"userRequest", "string", "The prompt.", true},
                     {"codingAssistantProvider", "string",
                      "claude-code or ClaudeAgentSDK (Claude Code), codex or CodexSDK (Codex).", true},
                     {"codingAssistantAuthentication", "string",
                      "A {\"claudeAiOauth\":{\"accessToken\"}} JSON, or an API key."},
                     {"codingAssistantAccessToken", "string", "An API key or OAuth token."},
                     {"github", "object", "{repoUrl, branch, accessToken}: the repository to work in."},
                     {"autoCommit", "boolean", "Commit and push the work on a new branch."},
                     {"websiteSessionId", "uuid", "Continue this session."},
                     {"resumeSessionId", "uuid", "Continue this session."},
                     {"providerOptions", "object", "The provider's options (model, ...)."},
                     {"workspace", "string", "A workspace id or name."},
                     {"database", "object", "Accepted and ignored (buildd keeps everything)."},
                 }))
                 .SaysOnSuccess("The seeds' events, each with the buildd event id as its id.")
                 .Errors({403, 404, 409, 429}));
  router.Get("/sessions",
             RouteDoc("The caller's /execute sessions, newest first")
                 .Returns(JsonFields({{"sessions", "array", "Each session's summary."}}))
                 .Errors({403}),
             [accounts, broker](const HttpRequest& request, Reply reply) {
    LoadSessions(*accounts, *broker, MetaOf(request),
                 [reply = std::move(reply)](absl::StatusOr<Sessions> sessions) {
                   if (!sessions.ok()) return reply(ErrorResponse(sessions.status()));
                   // Newest first, by their latest task.
                   std::vector<std::pair<std::string, const std::vector<pb::Task>*>> order;
                   for (const auto& [id, tasks] : sessions->by_id) order.emplace_back(id, &tasks);
                   std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
                     return a.second->back().created_at() > b.second->back().created_at();
                   });
                   JsonOut out;
                   google::protobuf::ListValue* list = out.Mutable("sessions")->mutable_list_value();
                   for (const auto& [id, tasks] : order) {
                     *list->add_values()->mutable_struct_value() =
                         SessionSummary(id, *tasks).data();
                   }
                   reply(JsonResponse(200, out.Json()));
                 });
  });
  router.Get("/sessions/:id",
             RouteDoc("A session: its summary and its tasks")
                 .Returns(JsonFields({{"id", "string"}, {"tasks", "array", "Its tasks, oldest first."}}))
                 .Errors({403, 404}),
             [accounts, broker](const HttpRequest& request, Reply reply) {
    LoadSessions(*accounts, *broker, MetaOf(request),
                 [id = request.Param("id"), reply = std::move(reply)](
                     absl::StatusOr<Sessions> sessions) {
                   if (!sessions.ok()) return reply(ErrorResponse(sessions.status()));
                   absl::StatusOr<std::vector<pb::Task>> tasks = FindSession(*sessions, id, "");
                   if (!tasks.ok()) return reply(ErrorResponse(tasks.status()));
                   JsonOut out = SessionSummary(id, *tasks);
                   google::protobuf::ListValue* list = out.Mutable("tasks")->mutable_list_value();
                   for (const pb::Task& t : *tasks) {
                     pb::Task shown = t;
                     shown.clear_credentials();
                     google::protobuf::Struct* s = list->add_values()->mutable_struct_value();
                     if (!google::protobuf::util::JsonStringToMessage(ToJson(shown), s).ok()) continue;
                   }
                   reply(JsonResponse(200, out.Json()));
                 });
  });
  router.GetStream(
      "/sessions/:id/stream",
      RouteDoc("A session's stored history, as /execute's events, resumable")
          .Header({"Last-Event-ID", "integer", "Resume after this event id."})
          .SaysOnSuccess("The events /execute streamed, then the stream ends.")
          .Errors({403, 404}),
      SseStreamHandler(
          broker,
          [accounts, broker] {
            return std::make_unique<ExecuteDialect>(
                [accounts, broker](const HttpRequest& request, ExecuteDialect* dialect,
                                   std::function<void(absl::StatusOr<SseDialect::Opening>)> done) {
                  OpenSessionStream(accounts, broker, request, dialect, std::move(done));
                });
          },
          sse));
  router.Get("/status",
             RouteDoc("Whether the caller's runners have a free slot")
                 .Returns(JsonFields({{"status", "string", "idle, busy (with 429) or unavailable (503)."},
                                      {"slots", "number"}, {"activeWorkers", "number"}}))
                 .AlsoAnswers({429, 503})
                 .Errors({403}),
             [broker](const HttpRequest& request, Reply reply) {
    broker->ListRunners(MetaOf(request), pb::ListRunnersRequest(),
                        [reply = std::move(reply)](absl::StatusOr<pb::ListRunnersResponse> runners) {
                          if (!runners.ok()) return reply(ErrorResponse(runners.status()));
                          reply(StatusResponse(*runners));
                        });
  });
}

}  // namespace buildd::gateway
