#ifndef BUILDD_SERVICES_BROKER_RUNNER_REPORTS_H_
#define BUILDD_SERVICES_BROKER_RUNNER_REPORTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "buildd/v1/common.pb.h"
#include "buildd/v1/runner.pb.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

// What the broker makes of a runner's reports before the journal stores
// them. Functions of their arguments only (no SQL, no locks): thread-safe.

// Whether a runner may report `e`: the event types of a task's run, never
// the broker's own (created, assigned, completed, budget…), and a status only
// of the states a runner moves a worker to.
bool RunnerMaySend(const pb::Event& e);

// The event of `report` as the broker records it for the worker's task
// `task_id` of `workspace_id`: the broker owns the ids (the event id is drawn
// at commit), the time and the runner's name.
pb::Event RecordedEvent(const pb::RunnerEvent& report, const std::string& task_id,
                        const std::string& workspace_id);

// The state of a worker in `state` once `e` is recorded: "started" and a
// status of running, paused or waiting_input move it; nothing else does.
std::string WorkerStateAfter(const std::string& state, const pb::Event& e);

// The up_to_seq that acknowledges `finished`, which counts as the message
// after its last event (saturating at the largest seq).
int64_t FinishedAckSeq(const pb::Finished& finished);

// `events` as the JSON array (protobuf's JSON mapping) the journal writes
// them from.
std::string EventsJson(const std::vector<pb::Event>& events);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_RUNNER_REPORTS_H_
