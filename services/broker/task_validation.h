#ifndef BUILDD_SERVICES_BROKER_TASK_VALIDATION_H_
#define BUILDD_SERVICES_BROKER_TASK_VALIDATION_H_

#include <string>

#include <google/protobuf/message.h>

#include "absl/status/status.h"
#include "buildd/v1/broker.pb.h"
#include "services/broker/broker_store.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

// What a client may send to BrokerService, checked at the edge before any
// store or dispatcher call. Each check looks at the request alone (no
// database, no principal: permissions are the caller's), returns the first
// problem as InvalidArgument (ResourceExhausted for a request too large,
// Unimplemented for a filter not supported yet) with a message that names
// the field as clients spell it (protobuf's JSON names: workBranch,
// maxAttempts…), and is thread-safe.

// Bounds of a task's priority and attempts.
inline constexpr int kMinPriority = -100;
inline constexpr int kMaxPriority = 100;
inline constexpr int kMaxAttempts = 10;
inline constexpr int kDefaultMaxAttempts = 3;

// The server takes messages as large as a runner's Finished; a unary call
// gets no more than the other services allow.
absl::Status CheckRequestSize(const google::protobuf::Message& request);

// Checks a new task's fields and fills the defaults (provider, maxAttempts,
// title; for kind revert also autoCommit). Branches, labels and text must be
// safe as runners' paths and arguments.
absl::Status ValidateNewTask(pb::Task& task);

// Checks a CreateWorkspace request: name, repoUrl (no control characters,
// no embedded credentials), defaultBranch and network.
absl::Status ValidateNewWorkspace(const pb::CreateWorkspaceRequest& req);

// Checks a ControlWorker request: the worker id, the action and its text.
absl::Status ValidateControlWorker(const pb::ControlWorkerRequest& req);

// Checks a Subscribe request: the ids it filters by and where it resumes.
absl::Status ValidateSubscribe(const pb::SubscribeRequest& req);

// The record a validated task is stored as: a new id, its work branch
// (buildd/<id> unless named) and concurrency key (its work branch unless
// named), created by `account_id`; its spec is `task` without what the
// broker owns (id, state, attempts, artifacts, what it derives…) and with
// `retry_of` (the task it retries, or "").
// REQUIRES: ValidateNewTask(task) succeeded.
TaskRecord NewTaskRecord(pb::Task task, const std::string& account_id,
                         const std::string& retry_of = "");

// What a retry of `ended` describes: its spec, without the work branch it
// got by default (the retry gets its own, and so its own concurrency key
// unless the spec names one).
pb::Task RetrySpec(const TaskRecord& ended);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_TASK_VALIDATION_H_
