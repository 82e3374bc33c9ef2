#ifndef BUILDD_GATEWAY_SSE_H_
#define BUILDD_GATEWAY_SSE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "buildd/v1/broker.pb.h"
#include "gateway/broker_client.h"
#include "gateway/http_message.h"
#include "gateway/router.h"

namespace buildd::gateway {

struct SseOptions {
  // A comment line goes out when nothing else did for this long, so that
  // proxies keep the connection and dead clients are noticed.
  absl::Duration heartbeat = absl::Seconds(15);
  // The response head waits for the broker to accept the subscription (so
  // that a refusal can still be a 401/403) at most this long.
  absl::Duration commit_delay = absl::Milliseconds(300);
  // The `retry:` the browser waits before reconnecting.
  int retry_ms = 3000;
};

// The Subscribe call for GET /api/events: filters from the query
// (workspaceId, taskId, workerId, branch) and the resume point (after_id)
// from the Last-Event-ID header, else from ?lastEventId=.
absl::StatusOr<pb::SubscribeRequest> SubscribeRequestFromHttp(const HttpRequest& request);

// One event in the text/event-stream format:
// "id: <id>\nevent: <type>\ndata: <event as one line of JSON>\n\n".
std::string FormatSseEvent(const pb::Event& event);

// Serves GET /api/events: relays BrokerService.Subscribe as Server-Sent
// Events. Starts with `retry:`, then one message per event and a
// `: heartbeat` comment when idle. Cancels the call when the client goes
// away. If the call fails before the response head went out, answers with
// the mapped HTTP error instead.
StreamHandler EventStreamHandler(std::shared_ptr<BrokerClient> broker, SseOptions options);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_SSE_H_
