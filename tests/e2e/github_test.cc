// GitHub at buildd's edge, end to end: action accounts with a githubId and a
// GitHub token, the repository_dispatch the broker sends for a task that
// prefers action runners (with retries), the workflow's `--once --task`
// runner taking exactly that task, and the pull request a task opens after
// its push. GitHub itself is a fake on loopback (tests/testing/fake_github.h)
// that checks what GitHub checks; everything else is the real binaries.
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/fake_github.h"
#include "tests/testing/fake_model_server.h"
#include "tests/testing/files.h"
#include "tests/testing/git_http_server.h"
#include "tests/testing/process.h"

namespace buildd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRepo[] = "acme/widgets";
constexpr char kToken[] = "ghs_actionAccountToken7f3c";

constexpr char kWebhookSecret[] = "whsec-3b1e0c9a";

// Made before the mesh, whose broker is told where they are.
struct WithFakeGitHub {
  WithFakeGitHub() : dir(testing::MakeTempDir("github")) {
    testing::WriteFile(dir + "/webhook-secret", std::string(kWebhookSecret) + "\n");
  }
  ~WithFakeGitHub() { testing::RemoveUnlessFailed(dir); }
  testing::FakeGitHub github;
  std::string dir;
};

Mesh::Options MeshFor(const WithFakeGitHub& with) {
  Mesh::Options options;
  // A runner that vanished loses its task soon (it is requeued).
  options.lease_grace_ms = 1500;
  options.broker_args = {absl::StrCat("--github_api_url=", with.github.api_url()),
                         "--github_dispatch_backoff_ms=50", "--github_dispatch_attempts=4",
                         absl::StrCat("--github_webhook_secret_file=", with.dir, "/webhook-secret")};
  return options;
}

// GitHub's X-Hub-Signature-256 of `body` under `secret`.
std::string Signature(const std::string& body, const std::string& secret = kWebhookSecret) {
  return testing::GitHubSignature(body, secret);
}

class GitHubTest : public WithFakeGitHub, public MeshTest {
 protected:
  GitHubTest() : MeshTest(MeshFor(*this)) { github.AddRepo(kRepo, kToken); }

  // A delivery as GitHub makes it; `signature` "" sends none.
  HttpResult Deliver(const std::string& event, const std::string& body,
                     const std::string& signature, const std::string& delivery = "") {
    testing::Headers headers = {{"Content-Type", "application/json"},
                                {"User-Agent", "GitHub-Hookshot/5e1f0a3"},
                                {"X-GitHub-Event", event},
                                {"X-GitHub-Delivery", delivery.empty() ? NewDelivery() : delivery},
                                {"X-GitHub-Hook-ID", "123456"}};
    if (!signature.empty()) headers.push_back({"X-Hub-Signature-256", signature});
    return testing::Request("POST", mesh_.gateway_url(), "/webhooks/github", headers, body);
  }
  std::string NewDelivery() { return absl::StrCat("72d3162e-cc78-11e3-81ab-4c9367dc", ++deliveries_, "0000"); }
  int deliveries_ = 1000;

  // A workspace of kRepo on github.com, and its action account.
  Setup RepoWorkspace(const std::string& repo_url = absl::StrCat("https://github.com/", kRepo, ".git")) {
    Setup action = ActionAccount();
    HttpResult ws = Call("POST", "/api/workspaces", mesh_.admin_key(),
                         absl::StrCat(R"({"name":"widgets","repoUrl":")", repo_url,
                                      R"(","defaultBranch":"main"})"));
    EXPECT_EQ(ws.status, 201) << ws.body;
    action.workspace_id = Str(Json(ws.body), "id");
    EXPECT_EQ(Call("POST", absl::StrCat("/api/accounts/", action.account_id, "/workspaces"),
                   mesh_.admin_key(),
                   absl::StrCat(R"({"workspaceId":")", action.workspace_id, R"(","canClaim":true})"))
                  .status,
              200);
    return action;
  }

  // An action account for kRepo with canClaim on a new workspace.
  Setup ActionAccount(const std::string& token = kToken) {
    return CreateAccountAndWorkspace(
        "action", /*claim=*/true, /*create=*/false,
        absl::StrCat(R"(,"githubId":")", kRepo, R"(","githubToken":")", token, R"(")"));
  }

  // The events of a task so far (type list), read back from the start.
  std::vector<std::string> EventTypes(const std::string& task_id, std::vector<Struct>* data = nullptr) {
    auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?taskId=" + task_id,
                                  {{"Authorization", "Bearer " + mesh_.admin_key()}});
    EXPECT_TRUE(stream.ok());
    std::vector<std::string> types;
    for (;;) {
      auto item = (*stream)->NextEvent(absl::Milliseconds(700));
      if (!item.ok()) break;
      types.push_back(item->event);
      if (data != nullptr) data->push_back(Json(item->data));
    }
    return types;
  }

  // Waits until the task's events hold `type`.
  bool WaitForEvent(const std::string& task_id, const std::string& type, int timeout_ms = 15000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      for (const std::string& t : EventTypes(task_id)) {
        if (t == type) return true;
      }
    }
    return false;
  }
};

TEST_F(GitHubTest, AnActionAccountsGitHubTokenIsCheckedStoredAndNeverReturned) {
  const auto create = [&](const std::string& body) {
    return Call("POST", "/api/accounts", mesh_.admin_key(), body);
  };
  HttpResult bad_id = create(R"({"type":"action","name":"ci","githubId":"not a repo"})");
  EXPECT_EQ(bad_id.status, 400);
  EXPECT_THAT(bad_id.body, HasSubstr("githubId"));
  HttpResult no_id = create(R"({"type":"action","name":"ci","githubToken":"ghs_x"})");
  EXPECT_EQ(no_id.status, 400);
  EXPECT_THAT(no_id.body, HasSubstr("githubId"));
  HttpResult not_action =
      create(R"({"type":"service","name":"svc","githubId":"a/b","githubToken":"ghs_secretvalue"})");
  EXPECT_EQ(not_action.status, 400);
  EXPECT_THAT(not_action.body, HasSubstr("githubToken"));
  EXPECT_THAT(not_action.body, Not(HasSubstr("ghs_secretvalue")));
  HttpResult spaced =
      create(R"({"type":"action","name":"ci","githubId":"a/b","githubToken":"ghs_secret value"})");
  EXPECT_EQ(spaced.status, 400);
  EXPECT_THAT(spaced.body, HasSubstr("githubToken"));
  EXPECT_THAT(spaced.body, Not(HasSubstr("ghs_secret")));

  HttpResult made = create(absl::StrCat(R"({"type":"action","name":"GitHub CI Bot","githubId":")",
                                        kRepo, R"(","githubToken":")", kToken, R"("})"));
  ASSERT_EQ(made.status, 201) << made.body;
  EXPECT_THAT(made.body, Not(HasSubstr(kToken)));
  const Struct account = Obj(Json(made.body), "account");
  EXPECT_EQ(Str(account, "githubId"), kRepo);
  EXPECT_TRUE(account.fields().at("hasGithubToken").bool_value());
  const std::string id = Str(Json(made.body), "id");
  for (const std::string& path : {std::string("/api/accounts"), "/api/accounts/" + id}) {
    HttpResult read = Call("GET", path, mesh_.admin_key());
    EXPECT_EQ(read.status, 200) << path;
    EXPECT_THAT(read.body, Not(HasSubstr(kToken))) << path;
  }
  // Replaced and removed by an update.
  HttpResult update = Call("PATCH", "/api/accounts/" + id, mesh_.admin_key(),
                           R"({"githubToken":"ghs_replacedToken"})");
  EXPECT_EQ(update.status, 200) << update.body;
  EXPECT_THAT(update.body, Not(HasSubstr("ghs_replacedToken")));
  HttpResult removed = Call("PATCH", "/api/accounts/" + id, mesh_.admin_key(), R"({"githubToken":""})");
  EXPECT_EQ(removed.status, 200) << removed.body;
  EXPECT_THAT(removed.body, Not(HasSubstr(R"("hasGithubToken":true)")));
  for (testing::Process* p : {&mesh_.accounts(), &mesh_.broker(), &mesh_.gateway()}) {
    EXPECT_THAT(p->Log(), Not(HasSubstr(kToken)));
    EXPECT_THAT(p->Log(), Not(HasSubstr("ghs_replacedToken")));
  }
}

TEST_F(GitHubTest, AnActionTaskIsDispatchedAndTheWorkflowsRunnerTakesExactlyThatTask) {
  Setup action = ActionAccount();
  const std::string first = CreateTask(mesh_.admin_key(), action.workspace_id, "echo first",
                                       R"(,"runnerPreference":"action")");
  const std::string second = CreateTask(mesh_.admin_key(), action.workspace_id, "echo second",
                                        R"(,"runnerPreference":"action")");
  // A task any runner may take is not GitHub's business.
  CreateTask(mesh_.admin_key(), action.workspace_id, "echo any");
  ASSERT_TRUE(github.WaitForCalls("/dispatches", 2, absl::Seconds(15)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto calls = github.CallsTo("/dispatches");
  ASSERT_EQ(calls.size(), 2u);
  std::set<std::string> dispatched;
  for (const auto& call : calls) {
    EXPECT_EQ(call.method, "POST");
    EXPECT_EQ(call.path, absl::StrCat("/repos/", kRepo, "/dispatches"));
    EXPECT_EQ(call.headers.at("authorization"), absl::StrCat("Bearer ", kToken));
    EXPECT_EQ(call.headers.at("accept"), "application/vnd.github+json");
    EXPECT_EQ(call.headers.at("x-github-api-version"), "2022-11-28");
    EXPECT_THAT(call.headers.at("user-agent"), HasSubstr("buildd"));
    EXPECT_EQ(call.status, 204);
    EXPECT_EQ(Str(call.json, "event_type"), "buildd-task");
    dispatched.insert(Str(Obj(call.json, "client_payload"), "task_id"));
  }
  EXPECT_EQ(dispatched, (std::set<std::string>{first, second}));
  EXPECT_TRUE(WaitForEvent(second, "dispatched"));

  // The workflow of the second task's dispatch: it takes that one, not the
  // older first one, and exits.
  testing::Process& run = mesh_.StartRunner(
      action.api_key, "gh-run-2",
      {"--once", absl::StrCat("--task=", second), absl::StrCat("--api-key=", action.api_key)});
  WaitForTaskState(second, "completed");
  EXPECT_EQ(Str(Obj(WaitForTaskState(first, "pending"), "task"), "state"), "pending");
  EXPECT_GE(run.Wait(20000), 0) << "the --once runner did not exit";
  // Its own run takes the first.
  mesh_.StartRunner(action.api_key, "gh-run-1",
                    {"--once", absl::StrCat("--task=", first)}, {{"BUILDD_TASK_ID", first}});
  WaitForTaskState(first, "completed");
  EXPECT_THAT(mesh_.broker().Log(), Not(HasSubstr(kToken)));
}

TEST_F(GitHubTest, AnActionTaskRequeuedAfterItsRunnerVanishedIsDispatchedAgain) {
  Setup action = ActionAccount();
  const std::string id = CreateTask(mesh_.admin_key(), action.workspace_id, "sleep 60",
                                    R"(,"runnerPreference":"action","maxAttempts":2)");
  ASSERT_TRUE(github.WaitForCalls("/dispatches", 1, absl::Seconds(15)));
  testing::Process& run =
      mesh_.StartRunner(action.api_key, "gh-run", {"--once", absl::StrCat("--task=", id)});
  WaitForTaskState(id, "running");
  EXPECT_EQ(github.CallsTo("/dispatches").size(), 1u) << "a running task was dispatched again";
  // The CI machine is gone: its lease runs out and the task waits again.
  run.Stop(SIGKILL, 5000);
  ASSERT_TRUE(github.WaitForCalls("/dispatches", 2, absl::Seconds(20)));
  const auto calls = github.CallsTo("/dispatches");
  EXPECT_EQ(Str(Obj(calls[1].json, "client_payload"), "task_id"), id);
  EXPECT_EQ(Str(Obj(WaitForTaskState(id, "pending"), "task"), "state"), "pending");
}

TEST_F(GitHubTest, ADispatchThatGitHubFailsWith502IsRetriedEachAttemptAnEvent) {
  Setup action = ActionAccount();
  github.FailNext("/dispatches", 502, 2);
  const std::string id = CreateTask(mesh_.admin_key(), action.workspace_id, "echo retried",
                                    R"(,"runnerPreference":"action")");
  ASSERT_TRUE(github.WaitForCalls("/dispatches", 3, absl::Seconds(15)));
  ASSERT_TRUE(WaitForEvent(id, "dispatched"));
  const auto calls = github.CallsTo("/dispatches");
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].status, 502);
  EXPECT_EQ(calls[1].status, 502);
  EXPECT_EQ(calls[2].status, 204);
  std::vector<Struct> data;
  std::vector<std::string> types = EventTypes(id, &data);
  std::vector<std::string> dispatch;
  for (size_t i = 0; i < types.size(); ++i) {
    if (absl::StartsWith(types[i], "dispatch")) {
      dispatch.push_back(types[i]);
      EXPECT_EQ(Str(Obj(data[i], "data"), "repo"), kRepo);
    }
  }
  EXPECT_THAT(dispatch, ::testing::ElementsAre("dispatch_retrying", "dispatch_retrying", "dispatched"));
}

TEST_F(GitHubTest, ADispatchWithATokenGitHubRefusesFailsAtOnceAndSaysSo) {
  Setup action = ActionAccount("ghs_revokedToken");
  const std::string id = CreateTask(mesh_.admin_key(), action.workspace_id, "echo refused",
                                    R"(,"runnerPreference":"action")");
  ASSERT_TRUE(github.WaitForCalls("/dispatches", 1, absl::Seconds(15)));
  ASSERT_TRUE(WaitForEvent(id, "dispatch_failed"));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(github.CallsTo("/dispatches").size(), 1u);
  EXPECT_EQ(github.CallsTo("/dispatches")[0].status, 401);
  // The task still waits for a runner.
  EXPECT_EQ(Str(Obj(WaitForTaskState(id, "pending"), "task"), "state"), "pending");
  EXPECT_THAT(mesh_.broker().Log(), Not(HasSubstr("ghs_revokedToken")));
}


// GitHub's documented payloads, cut to the fields buildd reads (and a few
// it does not).
std::string IssueLabeled(const std::string& label = "buildd") {
  return absl::StrCat(R"({"action":"labeled","issue":{"number":42,"title":"Add error handling to the API",)"
                      R"("body":"The /api/tasks handler\r\nswallows errors.","html_url":"https://github.com/)",
                      kRepo, R"(/issues/42","user":{"login":"octocat"},"labels":[{"name":")", label,
                      R"("}]},"label":{"name":")", label, R"("},"repository":{"id":1296269,"full_name":")",
                      kRepo, R"(","html_url":"https://github.com/)", kRepo,
                      R"("},"sender":{"login":"octocat","type":"User"}})");
}

std::string IssueComment(const std::string& body, const std::string& association) {
  return absl::StrCat(R"({"action":"created","issue":{"number":7,"title":"Flaky test",)"
                      R"("html_url":"https://github.com/)", kRepo, R"(/issues/7"},)"
                      R"("comment":{"id":1,"body":)", testing::JsonQuote(body),
                      R"(,"author_association":")", association, R"(","html_url":"https://github.com/)",
                      kRepo, R"(/issues/7#issuecomment-1","user":{"login":"someone"}},)"
                      R"("repository":{"full_name":")", kRepo, R"("},"sender":{"login":"someone"}})");
}

TEST_F(GitHubTest, AWebhookDeliveryIsTakenOnlyWithItsOwnValidSignature) {
  Setup action = RepoWorkspace();
  const std::string body = IssueLabeled();
  // No signature, a malformed one, another secret's, and the signature of
  // another delivery replayed with this body.
  const std::string other = IssueLabeled("bug");
  for (const std::string& signature :
       {std::string(), std::string("sha256=xyz"), std::string("sha1=") + std::string(40, 'a'),
        Signature(body, "not-the-secret"), Signature(other)}) {
    HttpResult r = Deliver("issues", body, signature);
    EXPECT_EQ(r.status, 401) << signature << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr("X-Hub-Signature-256"));
  }
  // The body changed by one byte after signing.
  std::string tampered = body;
  tampered.replace(tampered.find("swallows"), 8, "SWALLOWS");
  EXPECT_EQ(Deliver("issues", tampered, Signature(body)).status, 401);
  HttpResult none = Call("GET", "/api/tasks", mesh_.admin_key());
  EXPECT_THAT(none.body, Not(HasSubstr(action.workspace_id))) << "a refused delivery made a task";

  HttpResult taken = Deliver("issues", body, Signature(body));
  ASSERT_EQ(taken.status, 200) << taken.body;
  EXPECT_EQ(Str(Json(taken.body), "outcome"), "created");
  const std::string id = Str(Json(taken.body), "taskId");
  ASSERT_FALSE(id.empty());
  const Struct task = Obj(Json(Call("GET", "/api/tasks/" + id, mesh_.admin_key()).body), "task");
  EXPECT_EQ(Str(task, "workspaceId"), action.workspace_id);
  EXPECT_EQ(Str(task, "createdBy"), action.account_id);
  EXPECT_THAT(Str(task, "title"), HasSubstr("#42 Add error handling to the API"));
  EXPECT_THAT(Str(task, "prompt"), HasSubstr("swallows errors"));
  EXPECT_THAT(Str(task, "prompt"), HasSubstr("/issues/42"));
  // Labels other than buildd, and pings, ask for nothing.
  HttpResult bug = Deliver("issues", other, Signature(other));
  EXPECT_EQ(bug.status, 200);
  EXPECT_TRUE(Str(Json(bug.body), "taskId").empty());
  const std::string ping = R"({"zen":"Keep it logically awesome.","hook_id":123456,"repository":{"full_name":"acme/widgets"}})";
  HttpResult pong = Deliver("ping", ping, Signature(ping));
  EXPECT_EQ(pong.status, 200) << pong.body;
  EXPECT_EQ(Str(Json(pong.body), "outcome"), "pong");
  // Not JSON, even signed, is a bad request.
  EXPECT_EQ(Deliver("issues", "not json", Signature("not json")).status, 400);
}

TEST_F(GitHubTest, ASlashBuilddCommentByAMemberBecomesATaskAndAStrangersDoesNot) {
  Setup action = RepoWorkspace();
  const std::string asked = IssueComment("/buildd fix the flaky test in scheduler_test", "MEMBER");
  const std::string delivery = NewDelivery();
  HttpResult taken = Deliver("issue_comment", asked, Signature(asked), delivery);
  ASSERT_EQ(taken.status, 200) << taken.body;
  const std::string id = Str(Json(taken.body), "taskId");
  ASSERT_FALSE(id.empty()) << taken.body;
  const Struct task = Obj(Json(Call("GET", "/api/tasks/" + id, mesh_.admin_key()).body), "task");
  EXPECT_THAT(Str(task, "prompt"), HasSubstr("fix the flaky test in scheduler_test"));
  EXPECT_THAT(Str(task, "prompt"), Not(HasSubstr("/buildd")));
  EXPECT_EQ(Str(task, "workspaceId"), action.workspace_id);
  // The same delivery again (GitHub redelivers) makes no second task.
  HttpResult again = Deliver("issue_comment", asked, Signature(asked), delivery);
  EXPECT_EQ(again.status, 200);
  EXPECT_TRUE(Str(Json(again.body), "taskId").empty()) << again.body;
  for (const std::string& body : {IssueComment("/buildd rm -rf everything", "NONE"),
                                  IssueComment("/buildd please", "FIRST_TIME_CONTRIBUTOR"),
                                  IssueComment("looks good to me", "OWNER")}) {
    HttpResult r = Deliver("issue_comment", body, Signature(body));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(Str(Json(r.body), "taskId").empty()) << body;
  }
  HttpResult list = Call("GET", "/api/tasks?workspaceId=" + action.workspace_id, mesh_.admin_key());
  EXPECT_EQ(Json(list.body).fields().at("tasks").list_value().values_size(), 1) << list.body;
}

TEST_F(GitHubTest, PullRequestNeedsPushAndChecksItsFields) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  HttpResult r = Call("POST", "/api/tasks", s.api_key,
                      absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                   R"(","command":"true","pullRequest":{"title":"x"}})"));
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("pullRequest"));
  r = Call("POST", "/api/tasks", s.api_key,
           absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                        R"(","command":"true","push":true,"pullRequest":{"base":"a b"}})"));
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("pullRequest.base"));
  r = Call("POST", "/api/tasks", s.api_key,
           absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                        R"(","command":"true","push":true,"pullRequest":{"title":")",
                        std::string(300, 't'), R"("}})"));
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("pullRequest.title"));
}

TEST_F(GitHubTest, APushedTaskOpensItsPullRequestAndAReviewCommentResumesIt) {
  // The repository on a git host that wants a token, at a path GitHub's
  // would have: <host>/acme/widgets.git.
  const std::string root = dir + "/git-root";
  const std::string seed = dir + "/seed";
  std::filesystem::create_directories(root + "/acme");
  testing::Sh(absl::StrCat("git init -q --bare -b main ", root, "/acme/widgets.git && git init -q -b main ",
                           seed, " && cd ", seed, " && echo x > README.md && git add README.md",
                           " && git -c user.name=S -c user.email=s@x commit -q -m first",
                           " && git push -q ", root, "/acme/widgets.git main"));
  const std::string push_token = "ghp_pushOnlyToken91";
  testing::GitHttpServer host(root, push_token);
  Setup action = RepoWorkspace(absl::StrCat(host.base_url(), "/acme/widgets.git"));
  // A service account's runner does the work; the task is the admin's.
  Setup worker = CreateAccountAndWorkspace("service", true, false);
  ASSERT_EQ(Call("POST", absl::StrCat("/api/accounts/", worker.account_id, "/workspaces"),
                 mesh_.admin_key(),
                 absl::StrCat(R"({"workspaceId":")", action.workspace_id, R"(","canClaim":true})"))
                .status,
            200);
  const std::string cli_dir = dir + "/fake-cli";
  std::filesystem::create_directories(cli_dir);
  testing::WriteFile(cli_dir + "/claude", R"SH(#!/bin/sh
if [ "$1" = "--version" ]; then echo "2.0.0 (Claude Code)"; exit 0; fi
sid=5e55a1d0-0000-4000-8000-0000000000aa
project=$(pwd | sed 's/[^A-Za-z0-9]/-/g')
mkdir -p "$CLAUDE_CONFIG_DIR/projects/$project"
echo '{"type":"user","message":{"role":"user","content":"hello"}}' >> "$CLAUDE_CONFIG_DIR/projects/$project/$sid.jsonl"
echo "turn" >> agent.txt
echo "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"$sid\",\"model\":\"m\"}"
echo "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"done\",\"session_id\":\"$sid\",\"total_cost_usd\":0}"
)SH");
  chmod((cli_dir + "/claude").c_str(), 0755);
  mesh_.StartRunner(worker.api_key, "agents",
                    {absl::StrCat("--claude=", cli_dir, "/claude"), "--codex=/nonexistent/codex"});

  HttpResult created = Call(
      "POST", "/api/tasks", mesh_.admin_key(),
      absl::StrCat(R"({"workspaceId":")", action.workspace_id,
                   R"(","title":"Handle errors","provider":"claude","prompt":"handle errors",)"
                   R"("autoCommit":true,"push":true,"workBranch":"buildd/errors",)"
                   R"("credentials":{"GIT_TOKEN":")", push_token, R"("},)"
                   R"("pullRequest":{"title":"Handle API errors","body":"Made by buildd.","draft":true}})"));
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = Str(Json(created.body), "id");
  WaitForTaskState(id, "completed", 60000);
  ASSERT_TRUE(github.WaitForCalls("/pulls", 1, absl::Seconds(20)));
  const auto pulls = github.CallsTo("/pulls");
  ASSERT_EQ(pulls.size(), 1u);
  const auto& call = pulls[0];
  EXPECT_EQ(call.path, absl::StrCat("/repos/", kRepo, "/pulls"));
  EXPECT_EQ(call.headers.at("authorization"), absl::StrCat("Bearer ", kToken));
  EXPECT_EQ(call.headers.at("accept"), "application/vnd.github+json");
  EXPECT_EQ(call.headers.at("x-github-api-version"), "2022-11-28");
  EXPECT_EQ(call.status, 201);
  EXPECT_EQ(Str(call.json, "title"), "Handle API errors");
  EXPECT_EQ(Str(call.json, "head"), "buildd/errors");
  EXPECT_EQ(Str(call.json, "base"), "main");
  EXPECT_EQ(Str(call.json, "body"), "Made by buildd.");
  EXPECT_TRUE(call.json.fields().at("draft").bool_value());
  const std::string pr_url = absl::StrCat("https://github.com/", kRepo, "/pull/1");
  const Struct done = WaitForJson(
      "/api/tasks/" + id,
      [&](const Struct& got) { return Str(Obj(Obj(got, "task"), "artifacts"), "prUrl") == pr_url; },
      "prUrl");
  EXPECT_TRUE(Obj(Obj(done, "task"), "artifacts").fields().at("pushed").bool_value());
  EXPECT_TRUE(WaitForEvent(id, "pull_request"));
  // The branch is on the host, pushed with the task's own token.
  EXPECT_EQ(testing::Sh(absl::StrCat("git --git-dir=", root, "/acme/widgets.git show buildd/errors:agent.txt")),
            "turn");

  // A reviewer's comment on that pull request continues the task.
  const std::string review = absl::StrCat(
      R"({"action":"created","comment":{"id":9,"body":"Please also log the error.","path":"api.cc",)"
      R"("line":12,"author_association":"COLLABORATOR","user":{"login":"reviewer"}},)"
      R"("pull_request":{"number":1,"html_url":")", pr_url,
      R"(","head":{"ref":"buildd/errors"},"base":{"ref":"main"}},"repository":{"full_name":")", kRepo,
      R"("},"sender":{"login":"reviewer"}})");
  HttpResult followed = Deliver("pull_request_review_comment", review, Signature(review));
  ASSERT_EQ(followed.status, 200) << followed.body;
  const std::string follow_up = Str(Json(followed.body), "taskId");
  ASSERT_FALSE(follow_up.empty()) << followed.body;
  const Struct next = Obj(Json(Call("GET", "/api/tasks/" + follow_up, mesh_.admin_key()).body), "task");
  EXPECT_EQ(Str(next, "resumeFrom"), id);
  EXPECT_EQ(Str(next, "workBranch"), "buildd/errors");
  EXPECT_THAT(Str(next, "prompt"), HasSubstr("Please also log the error."));
  EXPECT_THAT(Str(next, "prompt"), HasSubstr("api.cc:12"));
  // A comment on a pull request no task opened asks for nothing.
  std::string foreign = review;
  foreign.replace(foreign.find("/pull/1"), 7, "/pull/77");
  HttpResult none = Deliver("pull_request_review_comment", foreign, Signature(foreign));
  EXPECT_EQ(none.status, 200);
  EXPECT_TRUE(Str(Json(none.body), "taskId").empty()) << none.body;
  EXPECT_THAT(mesh_.broker().Log(), Not(HasSubstr(kToken)));
  EXPECT_THAT(mesh_.broker().Log(), Not(HasSubstr(push_token)));
}

}  // namespace
}  // namespace buildd
