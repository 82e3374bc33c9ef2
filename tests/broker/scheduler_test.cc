#include "services/broker/scheduler.h"

#include <gtest/gtest.h>

namespace buildd::broker {
namespace {

RunnerSlot Runner(const std::string& id, const std::string& type, int max_tasks = 2) {
  RunnerSlot r;
  r.runner_id = id;
  r.name = id;
  r.account_id = "acc-" + id;
  r.account_type = type;
  r.access.claim_workspaces = {"ws1"};
  r.providers = {"command"};
  r.max_tasks = max_tasks;
  return r;
}

TaskRoute Task(const std::string& pref = "any") {
  return TaskRoute{"t1", "ws1", pref, {}, "command"};
}

TEST(SchedulerTest, NeedsTheCanClaimGrantUnlessAdmin) {
  RunnerSlot r = Runner("r", "service");
  r.access.claim_workspaces = {"ws2"};
  EXPECT_FALSE(Eligible(r, Task()));
  r.access.claim_all = true;
  EXPECT_TRUE(Eligible(r, Task()));
}

TEST(SchedulerTest, RunnerPreferenceMatchesTheAccountType) {
  EXPECT_TRUE(Eligible(Runner("r", "user"), Task("any")));
  EXPECT_TRUE(Eligible(Runner("r", "action"), Task("action")));
  EXPECT_FALSE(Eligible(Runner("r", "user"), Task("service")));
  EXPECT_FALSE(Eligible(Runner("r", "service"), Task("action")));
}

TEST(SchedulerTest, SkipsRunnerWithoutRequiredLabel) {
  RunnerSlot r = Runner("r", "service");
  r.labels = {"linux", "gpu"};
  TaskRoute t = Task();
  t.required_labels = {"gpu"};
  EXPECT_TRUE(Eligible(r, t));
  t.required_labels = {"gpu", "arm64"};
  EXPECT_FALSE(Eligible(r, t));
}

TEST(SchedulerTest, SkipsRunnerWithoutTheProvider) {
  TaskRoute t = Task();
  t.provider = "claude";
  EXPECT_FALSE(Eligible(Runner("r", "service"), t));
}

TEST(SchedulerTest, ARunnerOffersTheProvidersAmongItsCapabilities) {
  EXPECT_EQ(ProvidersOf({"os", "git", "command", "claude", "docker"}),
            (std::set<std::string>{"command", "claude"}));
}

TEST(SchedulerTest, ARunnerThatDeclaresNoCapabilitiesTakesNoTask) {
  RunnerSlot r = Runner("r", "service");
  r.providers = ProvidersOf({});
  EXPECT_TRUE(r.providers.empty());
  for (const char* provider : {"command", "claude", "codex"}) {
    TaskRoute t = Task();
    t.provider = provider;
    EXPECT_FALSE(Eligible(r, t)) << provider;
  }
  Scheduler scheduler;
  scheduler.AddRunner(r);
  EXPECT_FALSE(scheduler.Reserve(Task()).has_value());
}

TEST(SchedulerTest, AnAccountThatSpentItsBudgetTodayTakesOnlyCommands) {
  Scheduler scheduler;
  RunnerSlot r = Runner("r", "service");
  r.providers = {"command", "claude"};
  scheduler.AddRunner(r);
  TaskRoute agent = Task();
  agent.provider = "claude";
  scheduler.SetSpent("acc-r", TodayUtc());
  EXPECT_FALSE(scheduler.Reserve(agent).has_value());
  EXPECT_TRUE(scheduler.Reserve(Task()).has_value()) << "commands cost nothing";
  EXPECT_EQ(scheduler.Get("r")->AvailableProviders(), std::set<std::string>{"command"});
  // A budget spent on an earlier day no longer counts.
  scheduler.SetSpent("acc-r", "2000-01-01");
  EXPECT_TRUE(scheduler.Reserve(agent).has_value());
  EXPECT_EQ(scheduler.Get("r")->AvailableProviders(), r.providers);
}

TEST(SchedulerTest, WorkspaceFilterOfTheRunnerApplies) {
  RunnerSlot r = Runner("r", "service");
  r.access.claim_workspaces = {"ws1", "ws2"};
  r.only_workspace = "ws2";
  EXPECT_FALSE(Eligible(r, Task()));
}

TEST(SchedulerTest, ReservesUpToCapacityThenNothing) {
  Scheduler s;
  s.AddRunner(Runner("a", "service", 2));
  EXPECT_TRUE(s.Reserve(Task()).has_value());
  EXPECT_TRUE(s.Reserve(Task()).has_value());
  EXPECT_FALSE(s.Reserve(Task()).has_value());
  s.Release("a");
  EXPECT_TRUE(s.Reserve(Task()).has_value());
}

TEST(SchedulerTest, PrefersTheLeastLoadedRunner) {
  Scheduler s;
  s.AddRunner(Runner("a", "service", 4));
  s.AddRunner(Runner("b", "service", 4));
  int a = 0, b = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = s.Reserve(Task());
    ASSERT_TRUE(r.has_value());
    (r->runner_id == "a" ? a : b)++;
  }
  EXPECT_EQ(a, 4);
  EXPECT_EQ(b, 4);
}

TEST(SchedulerTest, AccountMaxConcurrentWorkersSpansItsRunners) {
  Scheduler s;
  RunnerSlot a = Runner("a", "service", 5);
  RunnerSlot b = Runner("b", "service", 5);
  b.account_id = a.account_id;
  a.access.account_max_workers = b.access.account_max_workers = 3;
  s.AddRunner(a);
  s.AddRunner(b);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(s.Reserve(Task()).has_value());
  EXPECT_FALSE(s.Reserve(Task()).has_value());
  EXPECT_EQ(s.ReserveOn("a", 5), 0);
}

TEST(SchedulerTest, ExcludedRunnersAreNotChosen) {
  Scheduler s;
  s.AddRunner(Runner("a", "service"));
  EXPECT_FALSE(s.Reserve(Task(), {"a"}).has_value());
}

TEST(SchedulerTest, ReserveOnTakesOnlyFreeSlots) {
  Scheduler s;
  s.AddRunner(Runner("a", "service", 3));
  EXPECT_EQ(s.ReserveOn("a", 10), 3);
  EXPECT_EQ(s.ReserveOn("a", 1), 0);
  EXPECT_EQ(s.ReserveOn("missing", 1), 0);
}

}  // namespace
}  // namespace buildd::broker
