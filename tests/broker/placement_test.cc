#include "services/broker/placement.h"

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

TEST(PlacementTest, NeedsTheCanClaimGrantUnlessAdmin) {
  RunnerSlot r = Runner("r", "service");
  r.access.claim_workspaces = {"ws2"};
  EXPECT_FALSE(Eligible(r, false, Task()));
  r.access.claim_all = true;
  EXPECT_TRUE(Eligible(r, false, Task()));
}

TEST(PlacementTest, RunnerPreferenceMatchesTheAccountType) {
  EXPECT_TRUE(Eligible(Runner("r", "user"), false, Task("any")));
  EXPECT_TRUE(Eligible(Runner("r", "action"), false, Task("action")));
  EXPECT_FALSE(Eligible(Runner("r", "user"), false, Task("service")));
  EXPECT_FALSE(Eligible(Runner("r", "service"), false, Task("action")));
}

TEST(PlacementTest, SkipsRunnerWithoutRequiredLabel) {
  RunnerSlot r = Runner("r", "service");
  r.labels = {"linux", "gpu"};
  TaskRoute t = Task();
  t.required_labels = {"gpu"};
  EXPECT_TRUE(Eligible(r, false, t));
  t.required_labels = {"gpu", "arm64"};
  EXPECT_FALSE(Eligible(r, false, t));
}

TEST(PlacementTest, ARunnerForOneTaskTakesNoOther) {
  RunnerSlot r = Runner("r", "action");
  r.only_task = "t2";
  EXPECT_FALSE(Eligible(r, false, Task("action")));
  r.only_task = "t1";
  EXPECT_TRUE(Eligible(r, false, Task("action")));
  EXPECT_EQ(ClaimFilterFor(r, false).only_task, "t1");
}

TEST(PlacementTest, SkipsRunnerWithoutTheProvider) {
  TaskRoute t = Task();
  t.provider = "claude";
  EXPECT_FALSE(Eligible(Runner("r", "service"), false, t));
}

TEST(PlacementTest, ARunnerOffersTheProvidersAmongItsCapabilities) {
  EXPECT_EQ(ProvidersOf({"os", "git", "command", "claude", "docker"}),
            (std::set<std::string>{"command", "claude"}));
}

TEST(PlacementTest, ARunnerThatDeclaresNoCapabilitiesTakesNoTask) {
  RunnerSlot r = Runner("r", "service");
  r.providers = ProvidersOf({});
  EXPECT_TRUE(r.providers.empty());
  for (const char* provider : {"command", "claude", "codex"}) {
    TaskRoute t = Task();
    t.provider = provider;
    EXPECT_FALSE(Eligible(r, false, t)) << provider;
  }
  EXPECT_FALSE(PickRunner(Task(), {Candidate{&r}}).has_value());
}

TEST(PlacementTest, AnAccountThatSpentItsBudgetTodayTakesOnlyCommands) {
  RunnerSlot r = Runner("r", "service");
  r.providers = {"command", "claude"};
  TaskRoute agent = Task();
  agent.provider = "claude";
  EXPECT_FALSE(PickRunner(agent, {Candidate{&r, 0, 0, /*spent=*/true}}).has_value());
  EXPECT_TRUE(PickRunner(Task(), {Candidate{&r, 0, 0, /*spent=*/true}}).has_value())
      << "commands cost nothing";
  EXPECT_EQ(AvailableProviders(r, true), std::set<std::string>{"command"});
  EXPECT_EQ(ClaimFilterFor(r, true).providers, std::set<std::string>{"command"});
  EXPECT_TRUE(PickRunner(agent, {Candidate{&r, 0, 0, /*spent=*/false}}).has_value());
  EXPECT_EQ(ClaimFilterFor(r, false).providers, r.providers);
}

TEST(PlacementTest, WorkspaceFilterOfTheRunnerApplies) {
  RunnerSlot r = Runner("r", "service");
  r.access.claim_workspaces = {"ws1", "ws2"};
  r.only_workspaces = {"ws2"};
  EXPECT_FALSE(Eligible(r, false, Task()));
  EXPECT_EQ(ClaimFilterFor(r, false).only_workspaces, std::set<std::string>{"ws2"});
}

TEST(PlacementTest, NamingAWorkspaceDoesNotGrantIt) {
  RunnerSlot r = Runner("r", "service");
  r.access.claim_workspaces = {"ws2"};
  r.only_workspaces = {"ws1", "ws2"};  // Task() is of ws1
  EXPECT_FALSE(Eligible(r, false, Task()));
  r.access.claim_workspaces = {"ws1"};
  EXPECT_TRUE(Eligible(r, false, Task()));
}

TEST(PlacementTest, AFullRunnerIsNotChosen) {
  RunnerSlot a = Runner("a", "service", 2);
  EXPECT_TRUE(PickRunner(Task(), {Candidate{&a, 1}}).has_value());
  EXPECT_FALSE(PickRunner(Task(), {Candidate{&a, 2}}).has_value());
  EXPECT_EQ(FreeSlots(Candidate{&a, 1}), 1);
  EXPECT_EQ(FreeSlots(Candidate{&a, 3}), 0);
}

TEST(PlacementTest, ADrainingRunnerHasNoFreeSlotAndIsNotChosen) {
  RunnerSlot a = Runner("a", "service", 4);
  a.draining = true;
  EXPECT_EQ(FreeSlots(Candidate{&a, 0}), 0);
  EXPECT_FALSE(PickRunner(Task(), {Candidate{&a, 0}}).has_value());
  RunnerSlot b = Runner("b", "service", 4);
  EXPECT_EQ(PickRunner(Task(), {Candidate{&a, 0}, Candidate{&b, 3}}), 1u);
}

TEST(PlacementTest, PrefersTheLeastLoadedRunnerAndSpreadsTies) {
  RunnerSlot a = Runner("a", "service", 4), b = Runner("b", "service", 4);
  EXPECT_EQ(PickRunner(Task(), {Candidate{&a, 3}, Candidate{&b, 1}}), 1u);
  EXPECT_EQ(PickRunner(Task(), {Candidate{&a, 1}, Candidate{&b, 3}}), 0u);
  // Equal loads: the scan starts at `start`.
  EXPECT_EQ(PickRunner(Task(), {Candidate{&a, 1}, Candidate{&b, 1}}, 0), 0u);
  EXPECT_EQ(PickRunner(Task(), {Candidate{&a, 1}, Candidate{&b, 1}}, 1), 1u);
  // Load is relative to size.
  RunnerSlot big = Runner("big", "service", 10);
  EXPECT_EQ(PickRunner(Task(), {Candidate{&a, 1}, Candidate{&big, 2}}), 1u);
}

TEST(PlacementTest, AccountMaxConcurrentWorkersSpansItsRunners) {
  RunnerSlot a = Runner("a", "service", 5);
  a.access.account_max_workers = 3;
  EXPECT_EQ(FreeSlots(Candidate{&a, 0, 3}), 0) << "its account's other runners hold three";
  EXPECT_EQ(FreeSlots(Candidate{&a, 1, 2}), 1);
  EXPECT_FALSE(PickRunner(Task(), {Candidate{&a, 0, 3}}).has_value());
}

}  // namespace
}  // namespace buildd::broker
