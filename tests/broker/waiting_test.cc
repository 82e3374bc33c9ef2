#include "services/broker/waiting.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace buildd::broker {
namespace {

using ::testing::HasSubstr;

RunnerSlot Runner(const std::string& id, int max_tasks = 2) {
  RunnerSlot r;
  r.runner_id = id;
  r.name = id;
  r.account_id = "acc-" + id;
  r.account_type = "service";
  r.access.claim_workspaces = {"ws1"};
  r.providers = {"command", "claude"};
  r.max_tasks = max_tasks;
  return r;
}

TaskRecord Task(const std::string& provider = "claude") {
  pb::Task spec;
  spec.set_workspace_id("ws1");
  spec.set_provider(provider);
  spec.set_work_branch("feature/a");
  return TaskRecord::FromSpec("00000000-0000-4000-8000-000000000001", spec, "acc-r");
}

TEST(WaitingTest, ABusyKeyNamesTheTaskHoldingIt) {
  const RunnerSlot r = Runner("r");
  const Waiting w = WhyWaiting(Task(), "the-holder", {Candidate{&r, 0, 0, false}});
  EXPECT_EQ(w.reason, "branch_busy");
  EXPECT_THAT(w.detail, HasSubstr("the-holder"));
  EXPECT_THAT(w.detail, HasSubstr("feature/a"));
}

TEST(WaitingTest, NoRunnerWhenNoneMayEverTakeIt) {
  RunnerSlot other_ws = Runner("r");
  other_ws.access.claim_workspaces = {"ws2"};
  TaskRecord gpu = Task();
  gpu.required_labels = {"gpu"};
  const RunnerSlot r = Runner("plain");
  EXPECT_EQ(WhyWaiting(Task(), "", {}).reason, "no_runner");
  EXPECT_EQ(WhyWaiting(Task(), "", {Candidate{&other_ws, 0, 0, false}}).reason, "no_runner");
  const Waiting w = WhyWaiting(gpu, "", {Candidate{&r, 0, 0, false}});
  EXPECT_EQ(w.reason, "no_runner");
  EXPECT_THAT(w.detail, HasSubstr("claude with labels gpu"));
}

TEST(WaitingTest, BudgetWhenEveryAccountThatMayTakeItSpentItsOwn) {
  const RunnerSlot r = Runner("r");
  const Waiting w = WhyWaiting(Task(), "", {Candidate{&r, 0, 0, /*spent=*/true}});
  EXPECT_EQ(w.reason, "budget");
  EXPECT_THAT(w.detail, HasSubstr("acc-r"));
  // A command costs nothing: a spent budget does not hold it.
  EXPECT_EQ(WhyWaiting(Task("command"), "", {Candidate{&r, 0, 0, true}}).reason, "");
}

TEST(WaitingTest, OtherAccountsAreCountedNotNamedExceptToAnAdmin) {
  const RunnerSlot mine = Runner("mine"), theirs = Runner("theirs"), more = Runner("more");
  const std::vector<Candidate> spent = {Candidate{&mine, 0, 0, true}, Candidate{&theirs, 0, 0, true},
                                        Candidate{&more, 0, 0, true}};
  const Waiting own = WhyWaiting(Task(), "", spent, "acc-mine");
  EXPECT_THAT(own.detail, HasSubstr("acc-mine, 2 other accounts"));
  EXPECT_THAT(own.detail, ::testing::Not(HasSubstr("acc-theirs")));
  EXPECT_THAT(WhyWaiting(Task(), "", spent, "someone").detail, HasSubstr(": 3 accounts"));
  const Waiting admin = WhyWaiting(Task(), "", spent);
  EXPECT_THAT(admin.detail, HasSubstr("acc-mine, acc-more, acc-theirs"));
}

TEST(WaitingTest, RunnersBusyWhenNoneHasAFreeSlotOfItsOwn) {
  const RunnerSlot r = Runner("r", 1);
  RunnerSlot draining = Runner("d");
  draining.draining = true;
  const Waiting one = WhyWaiting(Task(), "", {Candidate{&r, 1, 1, false}});
  EXPECT_EQ(one.reason, "runners_busy");
  EXPECT_THAT(one.detail, HasSubstr("the one connected runner"));
  EXPECT_EQ(WhyWaiting(Task(), "", {Candidate{&r, 1, 1, false}, Candidate{&draining, 0, 0, false}})
                .reason,
            "runners_busy");
}

TEST(WaitingTest, AccountLimitWhenTheRunnersWithRoomBelongToAccountsAtTheirLimit) {
  RunnerSlot r = Runner("r", 4);
  r.access.account_max_workers = 2;
  const Waiting w = WhyWaiting(Task(), "", {Candidate{&r, 1, 2, false}});
  EXPECT_EQ(w.reason, "account_limit");
  EXPECT_THAT(w.detail, HasSubstr("acc-r"));
}

TEST(WaitingTest, NothingHoldsItWhenARunnerHasRoom) {
  const RunnerSlot busy = Runner("busy", 1), free = Runner("free", 1);
  const Waiting w =
      WhyWaiting(Task(), "", {Candidate{&busy, 1, 1, false}, Candidate{&free, 0, 0, false}});
  EXPECT_EQ(w.reason, "");
  EXPECT_EQ(w.detail, "");
}

}  // namespace
}  // namespace buildd::broker
