#ifndef BUILDD_SERVICES_BROKER_CONVERSIONS_H_
#define BUILDD_SERVICES_BROKER_CONVERSIONS_H_

// Records to their protos, for the gRPC adapters and the runner protocol.

#include "buildd/v1/common.pb.h"
#include "services/broker/records.h"

namespace buildd::broker {

// The task as the client described it with the broker's state on top.
pb::Task TaskToProto(const TaskRecord& t);
// Sets the broker-owned fields (id, state, attempts, worker…) of `out`.
void ApplyTaskState(const TaskRecord& t, pb::Task* out);
pb::Worker WorkerToProto(const WorkerRecord& w);
pb::Workspace WorkspaceToProto(const WorkspaceRecord& w);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_CONVERSIONS_H_
