#ifndef BUILDD_GATEWAY_WORKFLOW_API_H_
#define BUILDD_GATEWAY_WORKFLOW_API_H_

// Branch workflows as the seeds' agent serves them (002):
//
//   POST /trigger                       a message on a workspace's branch
//                                       starts a plan-first task there
//                                       (pending → planning → coding →
//                                       complete); a second one on a busy
//                                       branch waits its turn (the task's
//                                       default concurrency key is its work
//                                       branch), and the answer says so
//   GET  /stream/:workspaceId/:branch   SSE of the branch's workflows,
//                                       resumable by Last-Event-ID and
//                                       ?lastEventId=
//
// The body takes 002's spellings (projectId, branchId) as well as buildd's
// (workspaceId, branch). A workflow is its task: its id is the task's.

#include <memory>

#include "gateway/broker_client.h"
#include "gateway/router.h"
#include "gateway/sse.h"

namespace buildd::gateway {

void AddWorkflowRoutes(Router& router, std::shared_ptr<BrokerClient> broker, SseOptions sse);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_WORKFLOW_API_H_
