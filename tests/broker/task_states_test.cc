#include "services/broker/task_states.h"

#include <gtest/gtest.h>

namespace buildd::broker {
namespace {

TEST(TaskStatesTest, ATaskFollowsItsWorker) {
  EXPECT_EQ(TaskStateFor("idle"), "assigned");
  EXPECT_EQ(TaskStateFor("starting"), "running");
  EXPECT_EQ(TaskStateFor("running"), "running");
  EXPECT_EQ(TaskStateFor("waiting_input"), "waiting_input");
  EXPECT_EQ(TaskStateFor("paused"), "") << "a paused worker leaves its task running";
  EXPECT_EQ(TaskStateFor("completed"), "completed");
  EXPECT_EQ(TaskStateFor("error"), "failed");
  EXPECT_EQ(TaskStateFor("canceled"), "canceled");
  for (std::string_view s : LiveWorkerStates()) EXPECT_FALSE(IsTerminalWorkerState(s)) << s;
  for (std::string_view s : UnfinishedTaskStates()) EXPECT_FALSE(IsTerminalTaskState(s)) << s;
  EXPECT_EQ(SqlList(UnfinishedTaskStates()), "('pending', 'assigned', 'running', 'waiting_input')");
}

TEST(TaskStatesTest, AnAttemptThatEndsWithoutAFinishedRequeuesUntilTheAttemptsAreSpent) {
  TaskRecord task;
  task.max_attempts = 2;
  task.attempts = 1;
  task.worker_id = "w1";
  WorkerRecord worker;
  EXPECT_FALSE(EndAttempt(task, worker, "runner lost", /*refused=*/false));
  EXPECT_EQ(task.state, "pending");
  EXPECT_TRUE(task.worker_id.empty());
  EXPECT_EQ(worker.state, "error");
  EXPECT_EQ(worker.error, "runner lost");

  task.attempts = 2;
  task.worker_id = "w2";
  EXPECT_TRUE(EndAttempt(task, worker, "runner lost", false));
  EXPECT_EQ(task.state, "failed");
  EXPECT_EQ(task.error, "runner lost");
  EXPECT_EQ(task.worker_id, "w2") << "a failed task keeps its last worker";

  // A refusal does not count: the task goes back even on its last attempt.
  task.attempts = 2;
  task.state = "assigned";
  EXPECT_FALSE(EndAttempt(task, worker, "rejected", /*refused=*/true));
  EXPECT_EQ(task.state, "pending");
  EXPECT_EQ(task.attempts, 1);
}

TEST(TaskStatesTest, AFinishedSaysHowTheAttemptEnded) {
  EXPECT_EQ(OutcomeOf(pb::Finished::completed).task_state, "completed");
  EXPECT_EQ(OutcomeOf(pb::Finished::canceled).worker_state, "canceled");
  const Outcome error = OutcomeOf(pb::Finished::error);
  EXPECT_EQ(error.worker_state, "error");
  EXPECT_EQ(error.task_state, "failed");
  EXPECT_EQ(error.event_type, "error");
  EXPECT_EQ(OutcomeOf(pb::Finished::outcome_unspecified).task_state, "failed");
}

}  // namespace
}  // namespace buildd::broker
