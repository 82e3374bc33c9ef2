// The runner as a pod or a CI job runs it: --once takes one task and exits,
// --idle_exit exits when it has had nothing to do for a while, SIGTERM lets
// the running task finish; none of them is offered work it will not take.
#include <signal.h>
#include <sys/wait.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/db.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/files.h"
#include "tests/testing/matchers.h"
#include "tests/testing/process.h"

namespace buildd {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::Process;
using ::testing::HasSubstr;
using ::testing::Not;

class RunnerModesTest : public MeshTest {
 protected:
  // The exit code once `runner` exited by itself within `timeout_ms`; -1
  // while it runs, -2 when killed by a signal.
  static int ExitCode(Process& runner, int timeout_ms) {
    const int status = runner.Wait(timeout_ms);
    if (status == -1) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
  }

  // How many attempts (workers) the broker made with the task.
  int Attempts(const std::string& task_id) {
    auto pool = OpenPool(mesh_.database_url(), 1);
    EXPECT_THAT(pool, IsOk());
    soci::session sql(**pool);
    int n = 0;
    sql << "SELECT count(*) FROM workers WHERE task_id = :t", soci::use(task_id), soci::into(n);
    return n;
  }

  std::string TaskState(const std::string& task_id) {
    return Str(Obj(Json(Call("GET", "/api/tasks/" + task_id, mesh_.admin_key()).body), "task"), "state");
  }
};

TEST_F(RunnerModesTest, OnceTakesOneTaskFinishesItAndExitsWithoutBeingOfferedAnother) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  // A task queued before the runner connects, and one more behind it.
  const std::string first = CreateTask(s.api_key, s.workspace_id, "sleep 0.3; echo one");
  const std::string second = CreateTask(s.api_key, s.workspace_id, "echo two");
  Process& once = mesh_.StartRunner(s.api_key, "once", {"--once", "--max_tasks=4"});
  WaitForTaskState(first, "completed");
  EXPECT_EQ(ExitCode(once, 15000), 0) << once.Log();
  EXPECT_THAT(once.Log(), HasSubstr("draining (its one task is done)"));
  EXPECT_THAT(mesh_.broker().Log(), HasSubstr("drains: it gets no new work"));
  // It said it takes one task at a time, and no second one was offered
  // (no attempt made, none spent).
  EXPECT_THAT(mesh_.broker().Log(), HasSubstr("name=once account=" + s.account_id + " connected max_tasks=1 "));
  EXPECT_EQ(TaskState(second), "pending");
  EXPECT_EQ(Attempts(second), 0);
  // The next runner takes it.
  mesh_.StartRunner(s.api_key, "next");
  WaitForTaskState(second, "completed");
}

TEST_F(RunnerModesTest, IdleExitWaitsOutARunningTaskThenExitsWhenIdle) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Process& runner = mesh_.StartRunner(s.api_key, "idler", {"--idle_exit=1s"});
  // Busy for twice the idle time: it must not leave.
  const std::string task = CreateTask(s.api_key, s.workspace_id, "sleep 2; echo done");
  WaitForTaskState(task, "completed", 20000);
  EXPECT_EQ(ExitCode(runner, 0), -1) << "exited while its task ran: " << runner.Log();
  EXPECT_EQ(ExitCode(runner, 15000), 0) << runner.Log();
  EXPECT_THAT(runner.Log(), HasSubstr("draining (idle for 1s)"));
}

TEST_F(RunnerModesTest, SigtermLetsTheRunningTaskFinishAndTakesNoNewWork) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Process& runner = mesh_.StartRunner(s.api_key, "drainer", {"--max_tasks=2"});
  const std::string running = CreateTask(s.api_key, s.workspace_id, "sleep 1.5; echo finished");
  WaitForTaskState(running, "running");
  ASSERT_EQ(kill(runner.pid(), SIGTERM), 0);
  ASSERT_TRUE(mesh_.broker().WaitForLog("drains: it gets no new work", 10000)) << runner.Log();
  // Created while it drains, with a slot free on it: not offered to it.
  const std::string later = CreateTask(s.api_key, s.workspace_id, "echo later");
  WaitForTaskState(running, "completed", 20000);
  EXPECT_EQ(ExitCode(runner, 15000), 0) << runner.Log();
  EXPECT_EQ(TaskState(later), "pending");
  EXPECT_EQ(Attempts(later), 0);
}

TEST_F(RunnerModesTest, ARunnerOfSeveralWorkspacesTakesTasksOfEachAndOfNoOther) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  // Two more workspaces the account may claim from and create in.
  std::vector<std::string> more;
  for (const char* name : {"second", "third"}) {
    HttpResult ws = Call("POST", "/api/workspaces", mesh_.admin_key(), absl::StrCat(R"({"name":")", name, R"("})"));
    ASSERT_EQ(ws.status, 201) << ws.body;
    more.push_back(Str(Json(ws.body), "id"));
    HttpResult grant = Call("POST", absl::StrCat("/api/accounts/", s.account_id, "/workspaces"),
                            mesh_.admin_key(),
                            absl::StrCat(R"({"workspaceId":")", more.back(), R"(","canClaim":true,"canCreate":true})"));
    ASSERT_EQ(grant.status, 200) << grant.body;
  }
  // The flag repeated, and a comma list, as the seeds' agents take it.
  mesh_.StartRunner(s.api_key, "several",
                    {"--workspace=" + s.workspace_id, absl::StrCat("--workspace=", more[0], ",", s.workspace_id)});
  const std::string first = CreateTask(s.api_key, s.workspace_id, "echo one");
  const std::string second = CreateTask(s.api_key, more[0], "echo two");
  const std::string third = CreateTask(s.api_key, more[1], "echo three");
  WaitForTaskState(first, "completed");
  WaitForTaskState(second, "completed");
  EXPECT_EQ(TaskState(third), "pending");
  EXPECT_EQ(Attempts(third), 0) << "not offered";
}

TEST_F(RunnerModesTest, AWorkspaceThatIsNotAnIdIsRefusedAtStart) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  auto runner = Process::Start(testing::BuiltBinary("services/runner/buildd-runner"),
                               {"--server=" + mesh_.broker_addr(), "--workspace=" + s.workspace_id + ",frontend",
                                "--listen="},
                               {{"BUILDD_API_KEY", s.api_key}}, mesh_.dir() + "/bad-workspace.log");
  EXPECT_EQ(ExitCode(*runner, 10000), 2) << runner->Log();
  EXPECT_THAT(runner->Log(), HasSubstr("--workspace: \"frontend\" is not a workspace id"));
}

TEST_F(RunnerModesTest, TheKeyCanComeFromAFile) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  const std::string key_file = mesh_.dir() + "/runner.key";
  testing::WriteFile(key_file, s.api_key + "\n");
  Process& runner = mesh_.StartRunner("", "from-file", {"--api_key_file=" + key_file});
  const std::string task = CreateTask(s.api_key, s.workspace_id, "echo keyed");
  WaitForTaskState(task, "completed");
  EXPECT_THAT(runner.Log(), Not(HasSubstr(s.api_key)));
}

}  // namespace
}  // namespace buildd
