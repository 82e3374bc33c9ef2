#include "gateway/workflow_api.h"

#include <google/protobuf/struct.pb.h>

#include <string>
#include <utility>

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

// POST /trigger's body as a plan-first task on the branch.
absl::StatusOr<pb::Task> TriggerTask(absl::string_view text) {
  BUILDD_ASSIGN_OR_RETURN(BodyFields body, BodyFields::Parse(text));
  pb::Task task;
  BUILDD_ASSIGN_OR_RETURN(std::string workspace, body.RequiredString({"workspaceId", "projectId"}));
  if (!CheckUuid(workspace, "workspaceId").ok()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid value ", JsonQuote(workspace),
                                                   " for field workspaceId (expected a workspace id)"));
  }
  task.set_workspace_id(workspace);
  BUILDD_ASSIGN_OR_RETURN(std::string branch, body.RequiredString({"branch", "branchId"}));
  task.set_work_branch(branch);
  BUILDD_ASSIGN_OR_RETURN(std::string message,
                          body.RequiredString({"message", "userRequest", "prompt"}, 100 * 1024,
                                              /*multiline=*/true));
  task.set_prompt(message);
  BUILDD_ASSIGN_OR_RETURN(std::string provider, body.String({"provider"}));
  task.set_provider(provider.empty() ? "claude" : provider);
  if (task.provider() != "claude" && task.provider() != "codex") {
    return absl::InvalidArgumentError(absl::StrCat("invalid value ", JsonQuote(provider),
                                                   " for field provider (expected claude or codex)"));
  }
  BUILDD_ASSIGN_OR_RETURN(*task.mutable_provider_options(), body.Object("providerOptions"));
  BUILDD_ASSIGN_OR_RETURN(bool push, body.Bool("push", false));
  task.set_push(push);
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
      if (absl::StartsWith(e.text(), "revert ")) {
        status("reverting");
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
