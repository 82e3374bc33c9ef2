#ifndef BUILDD_SERVICES_BROKER_CONVERSIONS_H_
#define BUILDD_SERVICES_BROKER_CONVERSIONS_H_

// Records to their protos, for the gRPC adapters and the runner protocol.

#include <map>
#include <string>

#include <vector>

#include "buildd/v1/broker.pb.h"
#include "buildd/v1/common.pb.h"
#include "buildd/v1/runner.pb.h"
#include "services/broker/records.h"

namespace buildd::broker {

// The task as the client described it with the broker's state on top.
pb::Task TaskToProto(const TaskRecord& t);
// Sets the broker-owned fields (id, state, attempts, worker…) of `out`.
void ApplyTaskState(const TaskRecord& t, pb::Task* out);
pb::Worker WorkerToProto(const WorkerRecord& w);
pb::Workspace WorkspaceToProto(const WorkspaceRecord& w);

// The Assign of `task` to `worker` at the worker's epoch, with `credentials`
// (the runner's account's, when they may go with the task) and the
// workspace (when known).
pb::BrokerMessage AssignOf(const TaskRecord& task, const WorkerRecord& worker,
                           const std::map<std::string, std::string>& credentials,
                           const WorkspaceRecord* workspace);
// A new event of the broker's, stamped now.
pb::Event EventOf(const std::string& type, const std::string& task_id,
                  const std::string& worker_id, const std::string& workspace_id);
pb::BrokerMessage AckOf(const std::string& worker_id, int64_t up_to_seq);
// A replica's runners as BeatBroker keeps them (a ListRunnersResponse as
// JSON), and back: appended to `out`; text that does not parse adds none.
std::string RunnersJson(const pb::ListRunnersResponse& runners);
void AppendRunners(const std::string& json, std::vector<pb::RunnerInfo>* out);
pb::BrokerMessage CancelOf(const std::string& worker_id, int64_t epoch);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_CONVERSIONS_H_
