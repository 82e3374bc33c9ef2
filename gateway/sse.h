#ifndef BUILDD_GATEWAY_SSE_H_
#define BUILDD_GATEWAY_SSE_H_

#include <memory>
#include <functional>
#include <string>
#include <vector>

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

// The event id a client resumes after: the Last-Event-ID header (what a
// reconnecting EventSource sends), else ?lastEventId=; 0 when neither.
// INVALID_ARGUMENT naming the source when it is not an event id.
absl::StatusOr<int64_t> LastEventIdFromHttp(const HttpRequest& request);

// One event in the text/event-stream format:
// "id: <id>\nevent: <type>\ndata: <event as one line of JSON>\n\n".
std::string FormatSseEvent(const pb::Event& event);

// One message in the text/event-stream format: "id:" only when `id` is not
// empty, `event` without line breaks, `json` on one line.
std::string FormatSseMessage(const std::string& id, const std::string& event,
                             const std::string& json);

// The formatted messages of a stream, shared (one event's text may go to
// many clients).
using SseMessages = std::vector<std::shared_ptr<const std::string>>;

// What one kind of SSE endpoint makes of the broker's events: the Subscribe
// call a request stands for, the messages one event becomes, and when the
// stream is complete. One object per stream, called on the stream's strand
// one call at a time (Open first); it must not block.
class SseDialect {
 public:
  virtual ~SseDialect() = default;

  struct Opening {
    pb::SubscribeRequest subscribe;
    // Sent right after the response head, before any event.
    SseMessages prelude;
  };
  // Works out the call (it may call the services first: POST /execute
  // creates its task here) and completes `done` once, from any thread; an
  // error is answered as an ordinary HTTP error.
  virtual void Open(const HttpRequest& request,
                    std::function<void(absl::StatusOr<Opening>)> done) = 0;
  // Appends the messages `event` stands for (none: the client never sees
  // it). Called for every event in id order.
  virtual void Translate(const pb::Event& event, SseMessages* out) = 0;
  // Whether the stream is complete after `event` (its messages went out):
  // the call is then cancelled and the response ends.
  virtual bool Ends(const pb::Event& event) { return false; }
};

// A new dialect for each stream.
using SseDialectFactory = std::function<std::unique_ptr<SseDialect>()>;

// Serves one SSE endpoint: relays BrokerService.Subscribe as Server-Sent
// Events in the dialect `make` gives. Starts with `retry:` and the
// dialect's prelude, then its messages for each event and a `: heartbeat`
// comment when idle, until the dialect says it is complete or the client
// goes away (which cancels the call). If opening or the call fails before
// the response head went out, answers with the mapped HTTP error instead.
StreamHandler SseStreamHandler(std::shared_ptr<BrokerClient> broker, SseDialectFactory make,
                               SseOptions options);

// Serves GET /api/events: every event as it is (FormatSseEvent), filtered
// as SubscribeRequestFromHttp says; never complete by itself.
StreamHandler EventStreamHandler(std::shared_ptr<BrokerClient> broker, SseOptions options);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_SSE_H_
