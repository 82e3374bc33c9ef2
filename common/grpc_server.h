#ifndef BUILDD_COMMON_GRPC_SERVER_H_
#define BUILDD_COMMON_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"

namespace buildd {

// Builds and starts a gRPC server on `address` with the given services, our
// health service and server reflection, and keepalive tuned for long-lived
// runner streams. Sets `*port` to the bound port (useful with port 0).
// `credentials` null: plaintext (see ServerCredentials in tls.h).
absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(
    const std::string& address, const std::vector<grpc::Service*>& services, int* port,
    std::shared_ptr<grpc::ServerCredentials> credentials = nullptr,
    int max_receive_bytes = 0);

// The largest message a stream client accepts: an Assign can carry an
// agent's session snapshot.
inline constexpr int kMaxMessageBytes = 64 << 20;
// The largest request a server takes by default: unary calls.
inline constexpr int kMaxRequestBytes = 4 << 20;
// On a runner stream: a Finished (it carries the session transcript), and
// every other message (an event, a Hello…).
inline constexpr int kMaxFinishedBytes = 40 << 20;
inline constexpr int kMaxRunnerMessageBytes = 1 << 20;

// Channel arguments for clients of long-lived streams (keepalive pings).
grpc::ChannelArguments StreamChannelArguments();

// The bearer token of a call's `authorization` metadata, or "".
std::string BearerToken(const grpc::ServerContextBase& context);

// Deadline helper for outbound calls.
void SetDeadlineMs(grpc::ClientContext& context, int ms);

}  // namespace buildd

#endif  // BUILDD_COMMON_GRPC_SERVER_H_
