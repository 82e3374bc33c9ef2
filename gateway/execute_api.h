#ifndef BUILDD_GATEWAY_EXECUTE_API_H_
#define BUILDD_GATEWAY_EXECUTE_API_H_

// One-shot execution as the seeds' coding workers serve it (003, 004):
//
//   POST /execute              a task from the seeds' body, answered with an
//                              SSE stream in their event names (connected,
//                              session_name, message, github_pull_progress,
//                              branch_created, commit_progress,
//                              assistant_message, completed, error) derived
//                              from the task's events; it ends after
//                              completed or error.
//   GET  /sessions             the caller's sessions
//   GET  /sessions/:id         one session and its tasks
//   GET  /sessions/:id/stream  its stored history in the same names,
//                              resumable with Last-Event-ID
//   GET  /status               {"status":"idle"|"busy"} of the caller's
//                              account's runners on this broker replica;
//                              429 when every slot is taken
//
// A session is the chain of tasks /execute made: the first gets a new uuid
// (Task.session_id, the session's id), and each /execute that continues it
// (websiteSessionId / resumeSessionId) creates a task with the same
// session_id that resumes the latest one (resumeFrom). Everything else of
// a session (name, branch, state, history) is read from its tasks and
// their events.

#include <memory>

#include "gateway/accounts_client.h"
#include "gateway/broker_client.h"
#include "gateway/router.h"
#include "gateway/sse.h"

namespace buildd::gateway {

void AddExecuteRoutes(Router& router, std::shared_ptr<AccountsClient> accounts,
                      std::shared_ptr<BrokerClient> broker, SseOptions sse);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_EXECUTE_API_H_
