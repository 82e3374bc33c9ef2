#include "gateway/workflow_api.h"

#include <google/protobuf/struct.pb.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status.h"
#include "gateway/body_fields.h"
#include "gateway/http_errors.h"
#include "gateway/json_codec.h"

namespace buildd::gateway {
namespace {

CallMeta MetaOf(const HttpRequest& request) {
  return CallMeta{request.api_key, request.request_id};
}

constexpr char kTriggerFields[] =
    "workspaceId (projectId), branch (branchId), message (userRequest, prompt), provider, "
    "providerOptions, push, title";

// What a branch's tasks share in the bodies of /trigger and
// /integrations/install: its workspace and branch, the agent and push.
absl::Status ReadBranchAgent(BodyFields& body, pb::Task& task) {
  BUILDD_ASSIGN_OR_RETURN(std::string workspace, body.RequiredString({"workspaceId", "projectId"}));
  if (!CheckUuid(workspace, "workspaceId").ok()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid value ", JsonQuote(workspace),
                                                   " for field workspaceId (expected a workspace id)"));
  }
  task.set_workspace_id(workspace);
  BUILDD_ASSIGN_OR_RETURN(std::string branch, body.RequiredString({"branch", "branchId"}));
  task.set_work_branch(branch);
  BUILDD_ASSIGN_OR_RETURN(std::string provider, body.String({"provider"}));
  task.set_provider(provider.empty() ? "claude" : provider);
  if (task.provider() != "claude" && task.provider() != "codex") {
    return absl::InvalidArgumentError(absl::StrCat("invalid value ", JsonQuote(provider),
                                                   " for field provider (expected claude or codex)"));
  }
  BUILDD_ASSIGN_OR_RETURN(*task.mutable_provider_options(), body.Object("providerOptions"));
  BUILDD_ASSIGN_OR_RETURN(bool push, body.Bool("push", false));
  task.set_push(push);
  return absl::OkStatus();
}

// POST /trigger's body as a plan-first task on the branch.
absl::StatusOr<pb::Task> TriggerTask(absl::string_view text) {
  BUILDD_ASSIGN_OR_RETURN(BodyFields body, BodyFields::Parse(text));
  pb::Task task;
  BUILDD_RETURN_IF_ERROR(ReadBranchAgent(body, task));
  BUILDD_ASSIGN_OR_RETURN(std::string message,
                          body.RequiredString({"message", "userRequest", "prompt"}, 100 * 1024,
                                              /*multiline=*/true));
  task.set_prompt(message);
  BUILDD_ASSIGN_OR_RETURN(std::string title, body.String({"title"}));
  task.set_title(title);
  BUILDD_RETURN_IF_ERROR(body.NoOthers(kTriggerFields));
  task.set_plan_first(true);
  // "complete" finalises the version: the work is committed on the branch.
  task.set_auto_commit(true);
  return task;
}

bool Unfinished(pb::Task::State s) {
  return s == pb::Task::pending || s == pb::Task::assigned || s == pb::Task::running ||
         s == pb::Task::waiting_input;
}

// The workflow events of a branch: one message per task event that a user
// of 002 cares for, named by what it is, with the event's id (stateless, so
// that a resumed stream repeats exactly what it missed).
constexpr char kInstallFields[] =
    "workspaceId (projectId), branch (branchId), integrations, provider, providerOptions, push";
constexpr char kIntegrationFields[] = "key, category, name, options";
constexpr size_t kMaxIntegrations = 20;

bool IsIntegrationKey(absl::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '@' || c == '/' || c == '.' ||
           c == '_' || c == '-';
  });
}

// One integration of POST /integrations/install, as the task installing it.
struct Install {
  std::string key;
  pb::Task task;
};

// POST /integrations/install's body: each integration an agent task of kind
// "integration" on the branch, in the order given (the branch's key queues
// them one after another, and a later /trigger behind them).
absl::StatusOr<std::vector<Install>> InstallTasks(absl::string_view text) {
  BUILDD_ASSIGN_OR_RETURN(BodyFields body, BodyFields::Parse(text));
  pb::Task shared;
  BUILDD_RETURN_IF_ERROR(ReadBranchAgent(body, shared));
  shared.set_kind("integration");
  shared.set_auto_commit(true);
  BUILDD_ASSIGN_OR_RETURN(std::vector<BodyFields> items,
                          body.Objects("integrations", kMaxIntegrations));
  BUILDD_RETURN_IF_ERROR(body.NoOthers(kInstallFields));
  if (items.empty()) {
    return absl::InvalidArgumentError(
        "field integrations is required: a list of {key, category, name, options}");
  }
  std::vector<Install> installs;
  std::set<std::string> keys;
  for (BodyFields& item : items) {
    BUILDD_ASSIGN_OR_RETURN(std::string key, item.RequiredString({"key"}, 100));
    if (!IsIntegrationKey(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value ", JsonQuote(key), " for field ", item.Path("key"),
                       " (letters, digits and @ / . _ -)"));
    }
    if (!keys.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("field ", item.Path("key"), ": integration ", JsonQuote(key), " is listed twice"));
    }
    BUILDD_ASSIGN_OR_RETURN(std::string category, item.String({"category"}, 40));
    if (!category.empty() && category != "authentication" && category != "backend" &&
        category != "database" && category != "frontend") {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value ", JsonQuote(category), " for field ", item.Path("category"),
                       " (expected authentication, backend, database or frontend)"));
    }
    BUILDD_ASSIGN_OR_RETURN(std::string name, item.String({"name"}));
    BUILDD_ASSIGN_OR_RETURN(google::protobuf::Struct options, item.Object("options"));
    BUILDD_RETURN_IF_ERROR(item.NoOthers(kIntegrationFields));
    pb::Task task = shared;
    task.set_title(absl::StrCat("Install ", name.empty() ? key : name));
    std::string prompt = absl::StrCat("Install the ", category.empty() ? "" : category + " ",
                                      "integration ", JsonQuote(key), " in this project",
                                      name.empty() ? "" : " (" + name + ")",
                                      ". Add its dependencies and configuration, generate the files "
                                      "it needs, wire it into the existing code, and keep the "
                                      "project building.");
    if (options.fields_size() > 0) {
      absl::StrAppend(&prompt, "\nIts options (JSON): ", ToJson(options));
    }
    task.set_prompt(std::move(prompt));
    installs.push_back(Install{key, std::move(task)});
  }
  return installs;
}

// Creates the installs' tasks one after another (so they queue in that
// order), then answers with each one's place behind the branch's
// unfinished tasks.
void CreateInstalls(std::shared_ptr<BrokerClient> broker, CallMeta meta, std::vector<Install> tasks,
                    std::vector<pb::Task> created, Reply reply) {
  if (created.size() < tasks.size()) {
    pb::CreateTaskRequest create;
    *create.mutable_task() = tasks[created.size()].task;
    broker->CreateTask(meta, create, [broker, meta, tasks = std::move(tasks),
                                      created = std::move(created), reply = std::move(reply)](
                                         absl::StatusOr<pb::Task> task) mutable {
      // Those created before a refusal stay queued: the answer names them.
      if (!task.ok() && created.empty()) return reply(ErrorResponse(task.status()));
      if (!task.ok()) {
        tasks.resize(created.size());
      } else {
        created.push_back(*std::move(task));
      }
      CreateInstalls(broker, meta, std::move(tasks), std::move(created), std::move(reply));
    });
    return;
  }
  pb::ListTasksRequest list;
  list.set_workspace_id(created.front().workspace_id());
  list.set_limit(1000);
  broker->ListTasks(meta, list, [tasks = std::move(tasks), created = std::move(created),
                                 reply = std::move(reply)](
                                    absl::StatusOr<pb::ListTasksResponse> listed) {
    std::set<std::string> ours;
    for (const pb::Task& t : created) ours.insert(t.id());
    std::string behind;
    if (listed.ok()) {
      for (const pb::Task& t : listed->tasks()) {
        if (ours.count(t.id()) == 0 && t.work_branch() == created.front().work_branch() &&
            Unfinished(t.state())) {
          behind = t.id();
        }
      }
    }
    google::protobuf::Value installs;
    for (size_t i = 0; i < created.size(); ++i) {
      const pb::Task& t = created[i];
      JsonOut one;
      one.Set("key", tasks[i].key)
          .Set("taskId", t.id())
          .Set("status", "pending")
          .Set("queued", !behind.empty());
      if (!behind.empty()) one.Set("queuedBehind", behind);
      *installs.mutable_list_value()->add_values()->mutable_struct_value() = one.data();
      behind = t.id();
    }
    JsonOut out;
    out.Set("workspaceId", created.front().workspace_id())
        .Set("branch", created.front().work_branch())
        .Set("installs", installs)
        .Set("streamUrl", absl::StrCat("/stream/", created.front().workspace_id(), "/",
                                       created.front().work_branch()));
    reply(JsonResponse(202, out.Json()));
  });
}

class BranchDialect final : public SseDialect {
 public:
  explicit BranchDialect(std::shared_ptr<BrokerClient> broker) : broker_(std::move(broker)) {}

  void Open(const HttpRequest& request,
            std::function<void(absl::StatusOr<Opening>)> done) override {
    absl::StatusOr<int64_t> after_id = LastEventIdFromHttp(request);
    if (!after_id.ok()) return done(after_id.status());
    const std::string workspace = request.Param("workspaceId");
    if (!CheckUuid(workspace, "workspaceId").ok()) {
      return done(absl::InvalidArgumentError(absl::StrCat(
          "invalid value ", JsonQuote(workspace), " for workspaceId in the path (expected a workspace id)")));
    }
    Opening opening;
    opening.subscribe.set_workspace_id(workspace);
    opening.subscribe.set_branch(request.Param("branch"));
    opening.subscribe.set_after_id(*after_id);
    // A workspace the caller cannot see is a 404, not an empty stream.
    pb::GetWorkspaceRequest get;
    get.set_id(workspace);
    broker_->GetWorkspace(MetaOf(request), get,
                          [opening = std::move(opening), done = std::move(done)](
                              absl::StatusOr<pb::Workspace> ws) mutable {
                            if (!ws.ok()) return done(ws.status());
                            done(std::move(opening));
                          });
  }

  void Translate(const pb::Event& e, SseMessages* out) override {
    JsonOut m;
    m.Set("workflowId", e.task_id()).Set("timestamp", e.created_at());
    std::string name;
    const std::string& type = e.type();
    auto status = [&](const char* s) {
      name = "status";
      m.Set("status", s);
    };
    if (type == "created") {
      status("pending");
    } else if (type == "requeued") {
      status("pending");
      m.Set("message", e.text());
    } else if (type == "started") {
      auto stage = e.data().fields().find("stage");
      if (absl::StartsWith(e.text(), "revert ")) {
        status("reverting");
      } else if (stage != e.data().fields().end() && stage->second.string_value() == "coding") {
        // A later attempt that codes on from the approved plan.
        status("coding");
      } else if (stage != e.data().fields().end() && stage->second.string_value() == "installing") {
        status("installing");
      } else {
        status("planning");
      }
    } else if (type == "plan") {
      name = "plan";
      m.Set("plan", e.text());
    } else if (type == "input") {
      // Approval (or an answer): the agent codes on.
      status("coding");
    } else if (type == "question") {
      name = "question";
      m.Set("question", e.text());
    } else if (type == "assistant_message") {
      name = "message";
      m.Set("role", "assistant").Set("text", e.text());
    } else if (type == "tool_use") {
      name = "tool";
      m.Set("text", e.text());
      if (e.data().fields_size() > 0) m.Set("data", e.data());
    } else if (type == "git") {
      name = "git";
      auto stage = e.data().fields().find("stage");
      m.Set("stage", stage == e.data().fields().end() ? "" : stage->second.string_value());
      m.Set("message", e.text());
    } else if (type == "status" && e.status() == "paused") {
      status("paused");
    } else if (type == "completed") {
      status("complete");
      if (e.data().fields_size() > 0) m.Set("data", e.data());
    } else if (type == "canceled") {
      status("canceled");
    } else if (type == "failed" || (type == "error" && e.status() == "error" &&
                                    !absl::StartsWith(e.text(), "runner lost"))) {
      status("failed");
      m.Set("error", e.text());
    } else {
      return;
    }
    out->push_back(std::make_shared<const std::string>(
        FormatSseMessage(absl::StrCat(e.id()), name, m.Json())));
  }

 private:
  std::shared_ptr<BrokerClient> broker_;
};

}  // namespace

void AddWorkflowRoutes(Router& router, std::shared_ptr<BrokerClient> broker, SseOptions sse) {
  router.Post("/trigger",
              RouteDoc("Start a plan-first workflow on a branch (seed 002)")
                  .Describe("States pending, planning, coding, complete; one active workflow per "
                            "branch: a trigger on a busy branch is queued behind it.")
                  .Body(JsonFields({
                      {"workspaceId", "uuid", "The workspace (or projectId).", true},
                      {"projectId", "uuid", "The workspace, as seed 002 names it."},
                      {"branch", "string", "The branch (or branchId).", true},
                      {"branchId", "string", "The branch, as seed 002 names it."},
                      {"message", "string", "What to do (or userRequest, prompt).", true},
                      {"userRequest", "string", "What to do."},
                      {"prompt", "string", "What to do."},
                      {"provider", "string", "claude (default) or codex."},
                      {"providerOptions", "object", "The provider's options."},
                      {"push", "boolean", "Push the branch when complete."},
                      {"title", "string", "The workflow's title."},
                  }))
                  .Returns(JsonFields({{"workflowId", "string"}, {"taskId", "string"},
                                       {"workspaceId", "string"}, {"branch", "string"},
                                       {"status", "string"}, {"queued", "boolean"},
                                       {"streamUrl", "string"}}),
                           202)
                  .Errors({403, 404, 409, 429}),
              [broker](const HttpRequest& request, Reply reply) {
    absl::StatusOr<pb::Task> task = TriggerTask(request.body);
    if (!task.ok()) return reply(ErrorResponse(task.status()));
    pb::CreateTaskRequest create;
    *create.mutable_task() = *std::move(task);
    const CallMeta meta = MetaOf(request);
    broker->CreateTask(meta, create, [broker, meta, reply = std::move(reply)](
                                         absl::StatusOr<pb::Task> created) {
      if (!created.ok()) return reply(ErrorResponse(created.status()));
      // Whether an earlier workflow of the branch is unfinished: this one
      // then waits for it.
      pb::ListTasksRequest list;
      list.set_workspace_id(created->workspace_id());
      list.set_limit(1000);
      broker->ListTasks(meta, list, [created = *created, reply = std::move(reply)](
                                        absl::StatusOr<pb::ListTasksResponse> tasks) {
        std::string behind;
        if (tasks.ok()) {
          for (const pb::Task& t : tasks->tasks()) {
            if (t.id() != created.id() && t.work_branch() == created.work_branch() &&
                Unfinished(t.state())) {
              behind = t.id();
            }
          }
        }
        JsonOut out;
        out.Set("workflowId", created.id())
            .Set("taskId", created.id())
            .Set("workspaceId", created.workspace_id())
            .Set("branch", created.work_branch())
            .Set("status", "pending")
            .Set("queued", !behind.empty())
            .Set("streamUrl", absl::StrCat("/stream/", created.workspace_id(), "/",
                                           created.work_branch()));
        if (!behind.empty()) {
          out.Set("queuedBehind", behind);
          out.Set("message", "another workflow of this branch is unfinished: this one starts "
                             "when it ends");
        }
        reply(JsonResponse(202, out.Json()));
      });
    });
  });
  router.Post("/integrations/install",
              RouteDoc("Install integrations on a branch (seed 002)")
                  .Describe("Each integration becomes an agent task of kind integration on the "
                            "branch, queued in the order given behind the branch's unfinished "
                            "work; a workflow triggered afterwards waits for them. Their progress "
                            "is on the branch's stream (status installing, then complete).")
                  .Body(JsonFields({
                      {"workspaceId", "uuid", "The workspace (or projectId).", true},
                      {"projectId", "uuid", "The workspace, as seed 002 names it."},
                      {"branch", "string", "The branch (or branchId).", true},
                      {"branchId", "string", "The branch, as seed 002 names it."},
                      {"integrations", "array",
                       "At most 20 of {key (required: letters, digits, @ / . _ -), category "
                       "(authentication, backend, database or frontend), name, options (object)}.",
                       true},
                      {"provider", "string", "claude (default) or codex."},
                      {"providerOptions", "object", "The provider's options."},
                      {"push", "boolean", "Push the branch after each install."},
                  }))
                  .Returns(JsonFields({{"workspaceId", "string"}, {"branch", "string"},
                                       {"installs", "array",
                                        "Per integration: key, taskId, status, queued, queuedBehind."},
                                       {"streamUrl", "string"}}),
                           202)
                  .Errors({403, 404, 429}),
              [broker](const HttpRequest& request, Reply reply) {
    absl::StatusOr<std::vector<Install>> installs = InstallTasks(request.body);
    if (!installs.ok()) return reply(ErrorResponse(installs.status()));
    CreateInstalls(broker, MetaOf(request), *std::move(installs), {}, std::move(reply));
  });
  // The branch may hold slashes ("feature/x"), one path segment each.
  for (const char* pattern : {"/stream/:workspaceId/:branch", "/stream/:workspaceId/:b1/:b2",
                              "/stream/:workspaceId/:b1/:b2/:b3"}) {
    StreamHandler handler = SseStreamHandler(
        broker, [broker] { return std::make_unique<BranchDialect>(broker); }, sse);
    router.GetStream(pattern,
                     RouteDoc("Follow a branch's workflow (Server-Sent Events), resumable")
                         .QueryParam({"lastEventId", "integer", "Resume after this event id."})
                         .Header({"Last-Event-ID", "integer", "Resume after this event id."})
                         .SaysOnSuccess("Workflow status (pending, planning, coding, complete) and "
                                        "its messages, each with its buildd event id.")
                         .Errors({403, 404}),
                     [handler](HttpRequest request, HttpStream stream,
                                        std::shared_ptr<ConnectionTracker::Token> token) {
      if (request.params.count("b1") > 0) {
        std::string branch = request.params["b1"];
        for (const char* part : {"b2", "b3"}) {
          auto it = request.params.find(part);
          if (it != request.params.end()) absl::StrAppend(&branch, "/", it->second);
        }
        request.params["branch"] = branch;
      }
      handler(std::move(request), std::move(stream), std::move(token));
    });
  }
}

}  // namespace buildd::gateway
