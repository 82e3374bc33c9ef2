// What the dashboard reads besides tasks and events, through the real
// gateway against the real services: the runners (GET /api/runners), the
// queue of pending tasks (GET /api/queue), why a pending task waits and its
// place in the queue (on GET /api/tasks and /api/tasks/:id), retrying an
// ended task (POST /api/tasks/:id/retry), what accounts spent today (GET
// /api/usage) and the grants (GET /api/accounts/:id/grants,
// /api/workspaces/:id/grants); who may see which, and bad input.
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/db.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/matchers.h"

namespace buildd {
namespace {

using ::buildd::testing::IsOk;
using ::google::protobuf::Struct;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

Mesh::Options FastHeartbeats() {
  Mesh::Options options;
  options.broker_args = {"--heartbeat_interval_ms=200"};
  return options;
}

const google::protobuf::ListValue& List(const Struct& s, const std::string& key) {
  static const google::protobuf::ListValue empty;
  auto it = s.fields().find(key);
  return it == s.fields().end() ? empty : it->second.list_value();
}

std::vector<std::string> Strings(const google::protobuf::ListValue& list) {
  std::vector<std::string> out;
  for (const auto& v : list.values()) out.push_back(v.string_value());
  return out;
}

class DashboardApiTest : public MeshTest {
 protected:
  DashboardApiTest() : MeshTest(FastHeartbeats()) {}

  // GET `path` as `key`, expecting 200; its JSON.
  Struct Get(const std::string& path, const std::string& key) {
    HttpResult r = Call("GET", path, key);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return Json(r.body);
  }

  Struct Task(const std::string& id, const std::string& key) {
    return Obj(Get("/api/tasks/" + id, key), "task");
  }

  // A pending task that no runner may take: it needs label `label`.
  std::string Unplaceable(const std::string& key, const std::string& workspace_id,
                          const std::string& label, int priority = 0) {
    return CreateTask(key, workspace_id, "true",
                      absl::StrCat(R"(,"requiredLabels":[")", label, R"("],"priority":)", priority));
  }

  // The 400 answer of `path` names `field`.
  void ExpectBadRequest(const std::string& method, const std::string& path, const std::string& key,
                        const std::string& field) {
    HttpResult r = Call(method, path, key);
    EXPECT_EQ(r.status, 400) << method << " " << path << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr(field)) << method << " " << path;
  }
};

TEST_F(DashboardApiTest, RunnersListTheCallersOwnAndEveryOneForAnAdmin) {
  Setup a = CreateAccountAndWorkspace("service", true, true);
  Setup b = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(a.api_key, "runner-a", {"--labels=linux,gpu", "--max_tasks=2"});
  mesh_.StartRunner(b.api_key, "runner-b");

  Struct own = Get("/api/runners", a.api_key);
  ASSERT_EQ(List(own, "runners").values_size(), 1) << own.DebugString();
  const Struct& r = List(own, "runners").values(0).struct_value();
  EXPECT_EQ(Str(r, "name"), "runner-a");
  EXPECT_EQ(Str(r, "accountId"), a.account_id);
  EXPECT_THAT(Strings(List(r, "labels")), UnorderedElementsAre("linux", "gpu"));
  EXPECT_EQ(Num(r, "maxTasks"), 2);
  EXPECT_FALSE(Str(r, "connectedAt").empty());

  std::vector<std::string> names;
  const Struct all = Get("/api/runners", admin_key());
  for (const auto& v : List(all, "runners").values()) {
    names.push_back(Str(v.struct_value(), "name"));
  }
  EXPECT_THAT(names, UnorderedElementsAre("runner-a", "runner-b"));
  Struct only_b = Get("/api/runners?accountId=" + b.account_id, admin_key());
  ASSERT_EQ(List(only_b, "runners").values_size(), 1);
  EXPECT_EQ(Str(List(only_b, "runners").values(0).struct_value(), "name"), "runner-b");

  // Its load is what its last heartbeat said: the tasks it runs.
  const std::string task = CreateTask(a.api_key, a.workspace_id, "sleep 30");
  WaitForTaskState(task, "running");
  WaitForJson(
      "/api/runners?accountId=" + a.account_id,
      [](const Struct& got) {
        return List(got, "runners").values_size() == 1 &&
               Num(List(got, "runners").values(0).struct_value(), "load") == 1 &&
               Num(List(got, "runners").values(0).struct_value(), "activeWorkers") == 1;
      },
      "load 1");

  HttpResult foreign = Call("GET", "/api/runners?accountId=" + b.account_id, a.api_key);
  EXPECT_EQ(foreign.status, 403) << foreign.body;
  ExpectBadRequest("GET", "/api/runners?accountId=nope", a.api_key, "accountId must be a UUID");
  ExpectBadRequest("GET", "/api/runners?colour=red", a.api_key, "colour");
  EXPECT_EQ(Call("GET", "/api/runners", "").status, 401);
}

TEST_F(DashboardApiTest, TheQueueGroupsVisiblePendingTasksByProviderAndLabelSetWithTheOldest) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Setup other = CreateAccountAndWorkspace("service", true, true);
  const std::string gpu1 = Unplaceable(s.api_key, s.workspace_id, "gpu");
  const std::string gpu2 = Unplaceable(s.api_key, s.workspace_id, "gpu");
  const std::string both1 =
      CreateTask(s.api_key, s.workspace_id, "true", R"(,"requiredLabels":["linux","gpu"])");
  const std::string both2 =
      CreateTask(s.api_key, s.workspace_id, "true", R"(,"requiredLabels":["gpu","linux"])");
  const std::string plain = CreateTask(s.api_key, s.workspace_id, "true");
  const std::string elsewhere = Unplaceable(other.api_key, other.workspace_id, "gpu");

  Struct queue = Get("/api/queue", s.api_key);
  EXPECT_EQ(Num(queue, "depth"), 5) << queue.DebugString();
  std::map<std::string, Struct> groups;
  for (const auto& v : List(queue, "queues").values()) {
    const Struct& g = v.struct_value();
    EXPECT_EQ(Str(g, "provider"), "command");
    EXPECT_FALSE(Str(g, "oldestCreatedAt").empty());
    groups[absl::StrJoin(Strings(List(g, "labels")), ",")] = g;
  }
  ASSERT_EQ(groups.size(), 3u) << queue.DebugString();
  EXPECT_EQ(Num(groups["gpu"], "depth"), 2);
  EXPECT_EQ(Str(groups["gpu"], "oldestTaskId"), gpu1);
  EXPECT_EQ(Num(groups["gpu,linux"], "depth"), 2);
  EXPECT_EQ(Str(groups["gpu,linux"], "oldestTaskId"), both1);
  EXPECT_EQ(Num(groups[""], "depth"), 1);
  EXPECT_EQ(Str(groups[""], "oldestTaskId"), plain);
  // The oldest groups first.
  EXPECT_EQ(Str(List(queue, "queues").values(0).struct_value(), "oldestTaskId"), gpu1);

  // An admin sees every workspace's, or the one asked for.
  EXPECT_EQ(Num(Get("/api/queue", admin_key()), "depth"), 6);
  EXPECT_EQ(Num(Get("/api/queue?workspaceId=" + s.workspace_id, admin_key()), "depth"), 5);
  Struct theirs = Get("/api/queue", other.api_key);
  EXPECT_EQ(Num(theirs, "depth"), 1);
  ASSERT_EQ(List(theirs, "queues").values_size(), 1);
  EXPECT_EQ(Str(List(theirs, "queues").values(0).struct_value(), "oldestTaskId"), elsewhere);
  HttpResult hidden = Call("GET", "/api/queue?workspaceId=" + s.workspace_id, other.api_key);
  EXPECT_EQ(hidden.status, 404) << hidden.body;
  ExpectBadRequest("GET", "/api/queue?workspaceId=nope", s.api_key, "workspaceId must be a UUID");
  ExpectBadRequest("GET", "/api/queue?state=pending", s.api_key, "state");

  // A task that leaves the queue leaves its group.
  ASSERT_EQ(Call("POST", "/api/tasks/" + gpu1 + "/cancel", s.api_key).status, 200);
  Struct after = Get("/api/queue?workspaceId=" + s.workspace_id, s.api_key);
  EXPECT_EQ(Num(after, "depth"), 4);
  for (const auto& v : List(after, "queues").values()) {
    if (Strings(List(v.struct_value(), "labels")) == std::vector<std::string>{"gpu"}) {
      EXPECT_EQ(Str(v.struct_value(), "oldestTaskId"), gpu2);
      EXPECT_EQ(Num(v.struct_value(), "depth"), 1);
    }
  }
  (void)both2;
}

TEST_F(DashboardApiTest, PendingTasksSayWhyTheyWaitAndWhereTheyStandInTheQueue) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "runner-1");
  const std::string holder =
      CreateTask(s.api_key, s.workspace_id, "sleep 60", R"(,"workBranch":"feature/login")");
  WaitForTaskState(holder, "running");
  const std::string behind =
      CreateTask(s.api_key, s.workspace_id, "true", R"(,"workBranch":"feature/login")");
  const std::string gpu = Unplaceable(s.api_key, s.workspace_id, "gpu");
  const std::string low = Unplaceable(s.api_key, s.workspace_id, "gpu", -5);
  const std::string urgent = Unplaceable(s.api_key, s.workspace_id, "gpu", 5);

  Struct b = Task(behind, s.api_key);
  EXPECT_EQ(Str(b, "state"), "pending");
  EXPECT_EQ(Str(b, "waitingReason"), "branch_busy");
  EXPECT_THAT(Str(b, "waitingDetail"), HasSubstr(holder));
  Struct g = Task(gpu, s.api_key);
  EXPECT_EQ(Str(g, "waitingReason"), "no_runner");
  EXPECT_THAT(Str(g, "waitingDetail"), HasSubstr("gpu"));

  // Priority first, then age: urgent, behind, gpu, low.
  EXPECT_EQ(Num(Task(urgent, s.api_key), "queuePosition"), 1);
  EXPECT_EQ(Num(b, "queuePosition"), 2);
  EXPECT_EQ(Num(g, "queuePosition"), 3);
  EXPECT_EQ(Num(Task(low, s.api_key), "queuePosition"), 4);
  // The list says the same of its pending tasks, and nothing of others.
  std::map<std::string, Struct> listed;
  const Struct list = Get("/api/tasks?workspaceId=" + s.workspace_id, s.api_key);
  for (const auto& v : List(list, "tasks").values()) {
    listed[Str(v.struct_value(), "id")] = v.struct_value();
  }
  ASSERT_EQ(listed.size(), 5u);
  EXPECT_EQ(Num(listed[urgent], "queuePosition"), 1);
  EXPECT_EQ(Num(listed[low], "queuePosition"), 4);
  EXPECT_EQ(Str(listed[behind], "waitingReason"), "branch_busy");
  EXPECT_EQ(Str(listed[urgent], "waitingReason"), "no_runner");
  EXPECT_EQ(Num(listed[holder], "queuePosition"), 0) << listed[holder].DebugString();
  EXPECT_EQ(Str(listed[holder], "waitingReason"), "");
  EXPECT_EQ(Str(listed[holder], "waitingDetail"), "");

  // Once the holder ends, the task behind it runs.
  ASSERT_EQ(Call("POST", "/api/tasks/" + holder + "/cancel", s.api_key).status, 200);
  WaitForTaskState(behind, "completed");
  EXPECT_EQ(Num(Task(urgent, s.api_key), "queuePosition"), 1);
  EXPECT_EQ(Num(Task(gpu, s.api_key), "queuePosition"), 2);
}

TEST_F(DashboardApiTest, UsageShowsWhatAFinishedTaskChargedAndItsBudgetHoldsTheNextTask) {
  Setup s = CreateAccountAndWorkspace("user", true, true, R"(,"maxCostPerDay":0.05)");
  Setup other = CreateAccountAndWorkspace("user", true, true);
  const std::string first = CreateTask(s.api_key, s.workspace_id, "", R"(,"provider":"claude","prompt":"fix it")");
  HttpResult claim = Call("POST", "/api/workers/claim", s.api_key, R"({"runner":"laptop"})");
  ASSERT_EQ(claim.status, 200) << claim.body;
  const Struct claimed = Json(claim.body);
  const auto& workers = List(claimed, "workers");
  ASSERT_EQ(workers.values_size(), 1) << claim.body;
  const std::string worker = Str(workers.values(0).struct_value(), "id");
  HttpResult done = Call("PATCH", "/api/workers/" + worker, s.api_key,
                         R"({"status":"completed","cost":0.08,"runner":"laptop"})");
  ASSERT_EQ(done.status, 200) << done.body;
  WaitForTaskState(first, "completed");

  Struct own = Get("/api/usage", s.api_key);
  ASSERT_EQ(List(own, "accounts").values_size(), 1) << own.DebugString();
  const Struct& u = List(own, "accounts").values(0).struct_value();
  EXPECT_EQ(Str(u, "accountId"), s.account_id);
  EXPECT_DOUBLE_EQ(Num(u, "costToday"), 0.08);
  EXPECT_DOUBLE_EQ(Num(u, "maxCostPerDay"), 0.05);

  // Another account sees only its own (nothing spent), an admin everyone's.
  Struct theirs = Get("/api/usage", other.api_key);
  ASSERT_EQ(List(theirs, "accounts").values_size(), 1) << theirs.DebugString();
  EXPECT_EQ(Str(List(theirs, "accounts").values(0).struct_value(), "accountId"), other.account_id);
  EXPECT_EQ(Num(List(theirs, "accounts").values(0).struct_value(), "costToday"), 0);
  bool seen = false;
  const Struct everyone = Get("/api/usage", admin_key());
  for (const auto& v : List(everyone, "accounts").values()) {
    if (Str(v.struct_value(), "accountId") != s.account_id) continue;
    seen = true;
    EXPECT_DOUBLE_EQ(Num(v.struct_value(), "costToday"), 0.08);
    EXPECT_DOUBLE_EQ(Num(v.struct_value(), "maxCostPerDay"), 0.05);
  }
  EXPECT_TRUE(seen);
  ExpectBadRequest("GET", "/api/usage?accountId=" + s.account_id, other.api_key, "accountId");

  // The agent's account spent its budget: the next agent task waits for it.
  const std::string next = CreateTask(s.api_key, s.workspace_id, "", R"(,"provider":"claude","prompt":"again")");
  Struct waiting = Task(next, s.api_key);
  EXPECT_EQ(Str(waiting, "state"), "pending");
  EXPECT_EQ(Str(waiting, "waitingReason"), "budget") << waiting.DebugString();
  EXPECT_THAT(Str(waiting, "waitingDetail"), HasSubstr(s.account_id));
}

TEST_F(DashboardApiTest, RetryCopiesAnEndedTasksSpecAndRefusesOneThatHasNotEnded) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  Setup other = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "runner-1");
  const std::string failed = CreateTask(
      s.api_key, s.workspace_id, "exit 3",
      R"(,"priority":7,"maxAttempts":1,"timeoutSeconds":120,"concurrencyKey":"deploy","runnerPreference":"service","providerOptions":{"model":"m1"},"autoCommit":true)");
  WaitForTaskState(failed, "failed");

  HttpResult retry = Call("POST", "/api/tasks/" + failed + "/retry", s.api_key);
  ASSERT_EQ(retry.status, 201) << retry.body;
  Struct copy = Json(retry.body);
  const std::string id = Str(copy, "id");
  EXPECT_NE(id, failed);
  EXPECT_EQ(Str(copy, "retryOf"), failed);
  EXPECT_EQ(Str(copy, "title"), "t");
  EXPECT_EQ(Str(copy, "command"), "exit 3");
  EXPECT_EQ(Str(copy, "workspaceId"), s.workspace_id);
  EXPECT_EQ(Num(copy, "priority"), 7);
  EXPECT_EQ(Num(copy, "maxAttempts"), 1);
  EXPECT_EQ(Num(copy, "timeoutSeconds"), 120);
  EXPECT_EQ(Str(copy, "concurrencyKey"), "deploy");
  EXPECT_EQ(Str(copy, "runnerPreference"), "service");
  EXPECT_EQ(Str(Obj(copy, "providerOptions"), "model"), "m1");
  EXPECT_EQ(copy.fields().at("autoCommit").bool_value(), true);
  // A free runner took it in the transaction that stored it.
  EXPECT_THAT(Str(copy, "state"), ::testing::AnyOf("pending", "assigned"));
  // Its own work branch, not the failed one's.
  EXPECT_EQ(Str(copy, "workBranch"), "buildd/" + id.substr(0, 8));
  WaitForTaskState(id, "failed");
  EXPECT_EQ(EventTypes(id).front(), "created");
  EXPECT_THAT(EventTypes(failed), ::testing::Contains("retried"));

  const std::string running = CreateTask(s.api_key, s.workspace_id, "sleep 60");
  WaitForTaskState(running, "running");
  HttpResult busy = Call("POST", "/api/tasks/" + running + "/retry", s.api_key);
  EXPECT_EQ(busy.status, 409) << busy.body;
  EXPECT_THAT(busy.body, HasSubstr("FAILED_PRECONDITION"));

  // Not visible to another account; visible but not creatable: 403.
  EXPECT_EQ(Call("POST", "/api/tasks/" + failed + "/retry", other.api_key).status, 404);
  HttpResult grant = Call("POST", absl::StrCat("/api/accounts/", other.account_id, "/workspaces"),
                          admin_key(),
                          absl::StrCat(R"({"workspaceId":")", s.workspace_id, R"(","canClaim":true})"));
  ASSERT_EQ(grant.status, 200) << grant.body;
  HttpResult refused = Call("POST", "/api/tasks/" + failed + "/retry", other.api_key);
  EXPECT_EQ(refused.status, 403) << refused.body;
  ExpectBadRequest("POST", "/api/tasks/nope/retry", s.api_key, "id must be a UUID");
}

TEST_F(DashboardApiTest, GrantsListForAnAdminOrTheAccountItself) {
  Setup s = CreateAccountAndWorkspace("service", true, false);
  Setup other = CreateAccountAndWorkspace("service", true, true);
  HttpResult share = Call("POST", absl::StrCat("/api/accounts/", other.account_id, "/workspaces"),
                          admin_key(),
                          absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                       R"(","canCreate":true,"shareCredentials":true})"));
  ASSERT_EQ(share.status, 200) << share.body;

  for (const std::string& key : {admin_key(), s.api_key}) {
    Struct got = Get(absl::StrCat("/api/accounts/", s.account_id, "/grants"), key);
    ASSERT_EQ(List(got, "grants").values_size(), 1) << got.DebugString();
    const Struct& g = List(got, "grants").values(0).struct_value();
    EXPECT_EQ(Str(g, "accountId"), s.account_id);
    EXPECT_EQ(Str(g, "workspaceId"), s.workspace_id);
    EXPECT_TRUE(g.fields().at("canClaim").bool_value());
    EXPECT_FALSE(g.fields().at("canCreate").bool_value());
  }
  EXPECT_EQ(Call("GET", absl::StrCat("/api/accounts/", s.account_id, "/grants"), other.api_key).status,
            403);
  ExpectBadRequest("GET", "/api/accounts/nope/grants", admin_key(), "accountId must be a UUID");

  Struct on_ws = Get(absl::StrCat("/api/workspaces/", s.workspace_id, "/grants"), admin_key());
  std::vector<std::string> accounts;
  for (const auto& v : List(on_ws, "grants").values()) {
    accounts.push_back(Str(v.struct_value(), "accountId"));
    if (Str(v.struct_value(), "accountId") == other.account_id) {
      EXPECT_TRUE(v.struct_value().fields().at("shareCredentials").bool_value());
    }
  }
  EXPECT_THAT(accounts, UnorderedElementsAre(s.account_id, other.account_id));
  EXPECT_EQ(Call("GET", absl::StrCat("/api/workspaces/", s.workspace_id, "/grants"), s.api_key).status,
            403);
  ExpectBadRequest("GET", "/api/workspaces/nope/grants", admin_key(), "workspaceId must be a UUID");
}

}  // namespace
}  // namespace buildd
