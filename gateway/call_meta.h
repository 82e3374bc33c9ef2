#ifndef BUILDD_GATEWAY_CALL_META_H_
#define BUILDD_GATEWAY_CALL_META_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace buildd::gateway {

// Who an outbound call acts for, sent as gRPC metadata:
// `authorization: Bearer <api_key>` (when set) and `x-request-id`.
struct CallMeta {
  std::string api_key;
  std::string request_id;
};

// Completion of an outbound call; runs once, on a gRPC thread. Must not block.
template <typename T>
using Callback = std::function<void(absl::StatusOr<T>)>;

struct ClientOptions {
  // Deadline of every unary call.
  absl::Duration unary_deadline = absl::Seconds(10);
  // Deadline of a health check.
  absl::Duration health_deadline = absl::Seconds(3);
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_CALL_META_H_
