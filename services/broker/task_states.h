#ifndef BUILDD_SERVICES_BROKER_TASK_STATES_H_
#define BUILDD_SERVICES_BROKER_TASK_STATES_H_

// The life of a worker and of its task, in one place. A worker goes
// idle → starting → running ⇄ waiting_input, running ⇄ paused, and ends
// completed, error or canceled. Its task is pending until assigned, then
// follows its current worker: assigned, running, waiting_input, and ends
// completed, failed or canceled (or goes back to pending for another
// attempt). Pure functions.

#include <string>
#include <string_view>
#include <vector>

#include "buildd/v1/runner.pb.h"
#include "services/broker/records.h"

namespace buildd::broker {

// Worker states that hold a lease (not done).
const std::vector<std::string_view>& LiveWorkerStates();
// Task states of a task that is not done (its concurrency key is busy).
const std::vector<std::string_view>& UnfinishedTaskStates();
// "('a', 'b', …)": a list of states for SQL.
std::string SqlList(const std::vector<std::string_view>& states);

bool IsTerminalWorkerState(std::string_view worker_state);
bool IsTerminalTaskState(std::string_view task_state);

// The task state that goes with its worker's new state; "" when the task
// keeps its own (a paused worker leaves its task running).
std::string TaskStateFor(std::string_view worker_state);

// Whether an event of `type` says a task became pending (created, given
// back) or ended, so that another may now run.
bool QueuesOrEndsATask(std::string_view type);

// How an attempt ended, from the runner's Finished.
struct Outcome {
  std::string worker_state;
  std::string task_state;
  std::string event_type;
};
Outcome OutcomeOf(::buildd::v1::Finished::Outcome outcome);

// An attempt that ended without a Finished (its runner was lost, refused
// it or never accepted it): the worker ends in error with `error`; the task
// goes back to pending for another attempt, or fails once its attempts are
// spent (a refused attempt does not count). True when the task failed.
bool EndAttempt(TaskRecord& task, WorkerRecord& worker, const std::string& error, bool refused);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_TASK_STATES_H_
