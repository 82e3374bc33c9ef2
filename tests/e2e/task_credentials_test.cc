// A task's own credentials (Task.credentials), attacked as a user with a key
// and read access to the machines would: read back over REST, gRPC and the
// event stream, looked for in every row of the database and every line of
// the services' logs, printed from the task's own environment; and a real
// push over HTTP with Basic authentication that only the task's GIT_TOKEN
// opens.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include <soci/soci.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "buildd/v1/broker.grpc.pb.h"
#include "common/db.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/files.h"
#include "tests/testing/git_http_server.h"

namespace buildd {
namespace {

namespace pb = ::buildd::v1;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kProviderSecret[] = "sk-ant-api03-task-own-5b7e1c";
constexpr char kGitSecret[] = "ghp_taskGitToken0e4a9d3c";


std::string AllData(const std::vector<SseItem>& events) {
  std::string out;
  for (const SseItem& item : events) absl::StrAppend(&out, item.event, " ", item.data, "\n");
  return out;
}

class TaskCredentialsTest : public MeshTest {
 protected:
  std::string CredentialsJson(const std::string& git_token = kGitSecret) {
    return absl::StrCat(R"(,"credentials":{"ANTHROPIC_API_KEY":")", kProviderSecret,
                        R"(","GIT_TOKEN":")", git_token, R"("})");
  }

  // Creates a task with `body` (JSON object members after workspaceId) and
  // returns its events once it ended.
  std::vector<SseItem> RunTask(const Setup& s, const std::string& body, std::string* id = nullptr) {
    auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                                  {{"Authorization", "Bearer " + mesh_.admin_key()}});
    EXPECT_TRUE(stream.ok());
    HttpResult r = Call("POST", "/api/tasks", s.api_key,
                        absl::StrCat(R"({"workspaceId":")", s.workspace_id, R"(",)", body, "}"));
    EXPECT_EQ(r.status, 201) << r.body;
    const std::string task_id = Str(Json(r.body), "id");
    if (id != nullptr) *id = task_id;
    EXPECT_THAT(r.body, Not(HasSubstr(kProviderSecret)));
    EXPECT_THAT(r.body, Not(HasSubstr(kGitSecret)));
    return ReadTaskEvents(**stream, task_id, {"completed", "error", "failed", "canceled"});
  }


  // Every row of every table of the database, as text.
  std::string DatabaseText() {
    auto pool = OpenPool(mesh_.database_url(), 1);
    EXPECT_TRUE(pool.ok()) << pool.status();
    if (!pool.ok()) return "";
    soci::session sql(**pool);
    std::vector<std::string> tables;
    soci::rowset<std::string> names = (sql.prepare << "SELECT table_name::text FROM"
                                                      " information_schema.tables WHERE"
                                                      " table_schema = 'public'");
    for (const std::string& name : names) tables.push_back(name);
    EXPECT_THAT(tables, ::testing::Contains("tasks"));
    std::string all;
    for (const std::string& table : tables) {
      std::string rows;
      soci::indicator ind;
      sql << absl::StrCat("SELECT string_agg(x::text, E'\\n') FROM \"", table, "\" x"),
          soci::into(rows, ind);
      if (ind == soci::i_ok) absl::StrAppend(&all, table, ":\n", rows, "\n");
    }
    return all;
  }

  std::unique_ptr<pb::BrokerService::Stub> Broker() {
    return pb::BrokerService::NewStub(
        grpc::CreateChannel(mesh_.broker_addr(), grpc::InsecureChannelCredentials()));
  }

  // A fake `claude` that shows the ANTHROPIC_API_KEY and GIT_TOKEN it got.
  std::string FakeClaude() {
    const std::string dir = mesh_.dir() + "/fake-cli";
    std::filesystem::create_directories(dir);
    const std::string path = dir + "/claude";
    testing::WriteFile(path, R"SH(#!/bin/sh
if [ "$1" = "--version" ]; then echo "2.0.0 (Claude Code)"; exit 0; fi
sid=5e55a1d0-0000-4000-8000-000000000002
echo "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"$sid\",\"model\":\"m\"}"
echo "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"key=[${ANTHROPIC_API_KEY:-none}] git=[${GIT_TOKEN:-none}]\",\"session_id\":\"$sid\",\"total_cost_usd\":0}"
)SH");
    chmod(path.c_str(), 0755);
    return path;
  }
};

TEST_F(TaskCredentialsTest, ABadCredentialIsRefusedNamingTheFieldAndNotEchoingIt) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  const auto create = [&](const std::string& credentials) {
    return Call("POST", "/api/tasks", s.api_key,
                absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                             R"(","provider":"command","command":"true","credentials":)",
                             credentials, "}"));
  };
  struct Case {
    std::string credentials, field;
  };
  const std::vector<Case> cases = {
      {R"({"AWS_SECRET_ACCESS_KEY":"wJalrXUtnFEMI-secret"})", "credentials"},
      {R"({"PATH":"/tmp/evil"})", "credentials"},
      {R"({"GIT_TOKEN":""})", "credentials.GIT_TOKEN"},
      {absl::StrCat(R"({"OPENAI_API_KEY":")", std::string(5000, 'k'), R"("})"),
       "credentials.OPENAI_API_KEY"},
      {R"({"GIT_TOKEN":"wJalrXUtnFEMI-secret\npassword=other"})", "credentials.GIT_TOKEN"},
      {R"({"ANTHROPIC_API_KEY":"wJalrXUtnFEMI secret"})", "credentials.ANTHROPIC_API_KEY"},
      {R"(["GIT_TOKEN"])", "credentials"},
  };
  for (const Case& c : cases) {
    HttpResult r = create(c.credentials);
    EXPECT_EQ(r.status, 400) << c.credentials << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr(c.field)) << c.credentials;
    EXPECT_THAT(r.body, Not(HasSubstr("wJalrXUtnFEMI"))) << c.credentials;
  }
  // Every name it may bring is taken.
  EXPECT_EQ(create(R"({"ANTHROPIC_API_KEY":"a","CLAUDE_CODE_OAUTH_TOKEN":"b",)"
                   R"("OPENAI_API_KEY":"c","GIT_TOKEN":"d"})")
                .status,
            201);
  EXPECT_THAT(AllLogs(), Not(HasSubstr("wJalrXUtnFEMI")));
}

TEST_F(TaskCredentialsTest, ATasksCredentialsAreNeverReadBackStoredPlainLoggedOrInItsEnvironment) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  // Pending first (no runner yet): what the database holds while it waits.
  HttpResult created = Call(
      "POST", "/api/tasks", s.api_key,
      absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                   R"(","provider":"command","command":"printenv; tr '\\0' '\\n' </proc/self/environ; echo done")",
                   CredentialsJson(), "}"));
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = Str(Json(created.body), "id");
  EXPECT_THAT(created.body, Not(HasSubstr(kProviderSecret)));
  EXPECT_THAT(created.body, Not(HasSubstr("GIT_TOKEN")));
  std::string pending_rows = DatabaseText();
  EXPECT_THAT(pending_rows, Not(HasSubstr(kProviderSecret)));
  EXPECT_THAT(pending_rows, Not(HasSubstr(kGitSecret)));
  {
    auto pool = OpenPool(mesh_.database_url(), 1);
    ASSERT_TRUE(pool.ok());
    soci::session sql(**pool);
    std::string sealed, spec;
    soci::indicator ind;
    sql << "SELECT credentials, spec::text FROM tasks WHERE id = :id::uuid", soci::use(id),
        soci::into(sealed, ind), soci::into(spec);
    ASSERT_EQ(ind, soci::i_ok) << "the sealed credentials are not stored";
    EXPECT_FALSE(sealed.empty());
    EXPECT_THAT(spec, Not(HasSubstr("credentials")));
    EXPECT_THAT(spec, Not(HasSubstr("GIT_TOKEN")));
  }

  auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                                {{"Authorization", "Bearer " + mesh_.admin_key()}});
  ASSERT_TRUE(stream.ok());
  mesh_.StartRunner(s.api_key, "holder");
  const std::vector<SseItem> events =
      ReadTaskEvents(**stream, id, {"completed", "error", "failed", "canceled"});
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "completed") << AllData(events);
  const std::string out = OutputOf(events);
  EXPECT_THAT(out, HasSubstr("done"));
  // A command gets neither: no provider key, and git's token is git's.
  EXPECT_THAT(out, Not(HasSubstr(kProviderSecret)));
  EXPECT_THAT(out, Not(HasSubstr(kGitSecret)));
  EXPECT_THAT(out, Not(HasSubstr("GIT_TOKEN")));
  EXPECT_THAT(AllData(events), Not(HasSubstr(kProviderSecret)));
  EXPECT_THAT(AllData(events), Not(HasSubstr(kGitSecret)));

  // Read back over REST, as its creator and as the admin.
  for (const std::string& key : {s.api_key, mesh_.admin_key()}) {
    for (const std::string& path :
         {"/api/tasks/" + id, std::string("/api/tasks"), "/api/tasks?workspaceId=" + s.workspace_id,
          "/api/workers?taskId=" + id}) {
      HttpResult r = Call("GET", path, key);
      EXPECT_EQ(r.status, 200) << path;
      EXPECT_THAT(r.body, Not(HasSubstr(kProviderSecret))) << path;
      EXPECT_THAT(r.body, Not(HasSubstr(kGitSecret))) << path;
      // At most the empty map the JSON mapping prints for every field.
      EXPECT_THAT(r.body, Not(HasSubstr("GIT_TOKEN"))) << path;
      EXPECT_THAT(r.body, Not(HasSubstr("ANTHROPIC_API_KEY"))) << path;
    }
  }
  // And over gRPC.
  auto broker = Broker();
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + s.api_key);
    pb::GetTaskRequest req;
    req.set_id(id);
    pb::GetTaskResponse resp;
    ASSERT_TRUE(broker->GetTask(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.task().credentials().empty());
    EXPECT_THAT(resp.DebugString(), Not(HasSubstr(kProviderSecret)));
    EXPECT_THAT(resp.SerializeAsString(), Not(HasSubstr(kGitSecret)));
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + mesh_.admin_key());
    pb::ListTasksResponse resp;
    ASSERT_TRUE(broker->ListTasks(&ctx, pb::ListTasksRequest(), &resp).ok());
    ASSERT_EQ(resp.tasks_size(), 1);
    EXPECT_TRUE(resp.tasks(0).credentials().empty());
    EXPECT_THAT(resp.SerializeAsString(), Not(HasSubstr(kProviderSecret)));
    EXPECT_THAT(resp.SerializeAsString(), Not(HasSubstr(kGitSecret)));
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + mesh_.admin_key());
    pb::SubscribeRequest req;
    req.set_task_id(id);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    auto reader = broker->Subscribe(&ctx, req);
    pb::Event e;
    std::string all;
    while (reader->Read(&e)) all += e.SerializeAsString();
    EXPECT_THAT(all, HasSubstr("completed"));
    EXPECT_THAT(all, Not(HasSubstr(kProviderSecret)));
    EXPECT_THAT(all, Not(HasSubstr(kGitSecret)));
  }

  // The rows: nothing in plain, and the sealed form gone once the task ended.
  const std::string rows = DatabaseText();
  EXPECT_THAT(rows, Not(HasSubstr(kProviderSecret)));
  EXPECT_THAT(rows, Not(HasSubstr(kGitSecret)));
  {
    auto pool = OpenPool(mesh_.database_url(), 1);
    ASSERT_TRUE(pool.ok());
    soci::session sql(**pool);
    int kept = -1;
    sql << "SELECT count(*) FROM tasks WHERE credentials IS NOT NULL", soci::into(kept);
    EXPECT_EQ(kept, 0);
  }
  const std::string logs = AllLogs();
  EXPECT_THAT(logs, HasSubstr(id.substr(0, 8)));
  EXPECT_THAT(logs, Not(HasSubstr(kProviderSecret)));
  EXPECT_THAT(logs, Not(HasSubstr(kGitSecret)));
}

TEST_F(TaskCredentialsTest, AnAgentGetsTheTasksOwnKeyOverTheAccountsButNeverTheGitToken) {
  Setup s = CreateAccountAndWorkspace("service", true, true,
                                      R"(,"anthropicApiKey":"sk-ant-api03-account-key")");
  mesh_.StartRunner(s.api_key, "agent",
                    {absl::StrCat("--claude=", FakeClaude()), "--codex=/nonexistent/codex"});
  const std::string own = OutputOf(
      RunTask(s, absl::StrCat(R"("provider":"claude","prompt":"who am I")", CredentialsJson())));
  EXPECT_THAT(own, HasSubstr(absl::StrCat("key=[", kProviderSecret, "]")));
  EXPECT_THAT(own, HasSubstr("git=[none]"));
  // A task without its own still gets the account's.
  const std::string account = OutputOf(RunTask(s, R"("provider":"claude","prompt":"and now")"));
  EXPECT_THAT(account, HasSubstr("key=[sk-ant-api03-account-key]"));
  EXPECT_THAT(AllLogs(), Not(HasSubstr(kProviderSecret)));
  EXPECT_THAT(AllLogs(), Not(HasSubstr(kGitSecret)));
}

TEST_F(TaskCredentialsTest, GitTokenOpensAnHttpRemoteForCloneAndPushAndNothingElse) {
  // A bare repository behind `git http-backend` and Basic authentication.
  const std::string root = mesh_.dir() + "/git-root";
  const std::string seed = mesh_.dir() + "/seed";
  std::filesystem::create_directories(root);
  testing::Sh(absl::StrCat("git init -q --bare -b main ", root, "/repo.git && git init -q -b main ",
                           seed, " && cd ", seed, " && echo x > README.md && git add README.md",
                           " && git -c user.name=S -c user.email=s@x commit -q -m first",
                           " && git push -q ", root, "/repo.git main"));
  testing::GitHttpServer host(root, kGitSecret);
  HttpResult ws = Call("POST", "/api/workspaces", mesh_.admin_key(),
                       absl::StrCat(R"({"name":"remote","repoUrl":")", host.base_url(),
                                    R"(/repo.git","defaultBranch":"main"})"));
  ASSERT_EQ(ws.status, 201) << ws.body;
  Setup s = CreateAccountAndWorkspace("service", true, true);
  s.workspace_id = Str(Json(ws.body), "id");
  ASSERT_EQ(Call("POST", absl::StrCat("/api/accounts/", s.account_id, "/workspaces"),
                 mesh_.admin_key(),
                 absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                              R"(","canClaim":true,"canCreate":true})"))
                .status,
            200);
  mesh_.StartRunner(s.api_key, "pusher");
  const std::string work =
      R"("provider":"command","command":"printenv; git config --list --show-origin; echo pushed > pushed.txt",)"
      R"("autoCommit":true,"push":true,"maxAttempts":1)";

  // Without a token, and with a wrong one, the host lets nothing through.
  std::string id;
  std::vector<SseItem> refused = RunTask(s, absl::StrCat(work, R"(,"workBranch":"no-token")"), &id);
  EXPECT_EQ(Str(Obj(WaitForTaskState(id, "failed"), "task"), "state"), "failed");
  refused = RunTask(s, absl::StrCat(work, R"(,"workBranch":"wrong-token")", CredentialsJson("ghp_wrong")),
                    &id);
  EXPECT_EQ(Str(Obj(WaitForTaskState(id, "failed"), "task"), "state"), "failed");
  EXPECT_THAT(AllData(refused), Not(HasSubstr("ghp_wrong")));

  // With it: cloned, committed, pushed.
  const std::vector<SseItem> events =
      RunTask(s, absl::StrCat(work, R"(,"workBranch":"with-token")", CredentialsJson()), &id);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "completed") << AllData(events);
  const Struct done = WaitForTaskState(id, "completed");
  EXPECT_TRUE(Obj(Obj(done, "task"), "artifacts").fields().at("pushed").bool_value());
  EXPECT_EQ(testing::Sh(absl::StrCat("git --git-dir=", root, "/repo.git show with-token:pushed.txt")),
            "pushed");
  const std::string out = OutputOf(events);
  EXPECT_THAT(out, Not(HasSubstr(kGitSecret)));
  EXPECT_THAT(out, Not(HasSubstr("BUILDD_GIT_TOKEN")));
  EXPECT_THAT(out, Not(HasSubstr("credential.helper")));
  EXPECT_THAT(AllData(events), Not(HasSubstr(kGitSecret)));

  // The token travelled in the Authorization header only, never in a URL.
  bool authorized = false;
  for (const auto& r : host.requests()) {
    EXPECT_THAT(r.target, Not(HasSubstr(kGitSecret)));
    if (r.status == 200 && absl::StrContains(r.target, "git-receive-pack")) authorized = true;
  }
  EXPECT_TRUE(authorized) << "no authorized push reached the host";
  // The runner's caches and worktrees keep no trace of it either.
  EXPECT_THAT(testing::Sh(absl::StrCat("grep -rl '", kGitSecret, "' ", mesh_.dir(),
                                       "/pusher || echo clean")),
              "clean");
  EXPECT_THAT(AllLogs(), Not(HasSubstr(kGitSecret)));
  EXPECT_THAT(DatabaseText(), Not(HasSubstr(kGitSecret)));
}

}  // namespace
}  // namespace buildd
