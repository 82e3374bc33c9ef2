#ifndef BUILDD_GATEWAY_GRPC_CALL_H_
#define BUILDD_GATEWAY_GRPC_CALL_H_

// Helpers shared by the gRPC implementations of the *_client interfaces.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "gateway/call_meta.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace buildd::gateway::internal {

inline void ApplyMeta(const CallMeta& meta, absl::Duration deadline, grpc::ClientContext* context) {
  if (!meta.api_key.empty()) context->AddMetadata("authorization", "Bearer " + meta.api_key);
  if (!meta.request_id.empty()) context->AddMetadata("x-request-id", meta.request_id);
  if (deadline != absl::InfiniteDuration()) {
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(deadline));
  }
}

// Starts one unary call through the callback API. `start` is
// `(ClientContext*, const Request*, Response*, std::function<void(grpc::Status)>)`,
// e.g. a lambda around `stub->async()->Method(...)`.
template <typename Response, typename Request, typename Start>
void CallUnary(const CallMeta& meta, absl::Duration deadline, const Request& request,
               Callback<Response> done, Start start) {
  struct Call {
    grpc::ClientContext context;
    Request request;
    Response response;
  };
  auto call = std::make_shared<Call>();
  call->request = request;
  ApplyMeta(meta, deadline, &call->context);
  start(&call->context, &call->request, &call->response,
        [call, done = std::move(done)](grpc::Status status) {
          if (!status.ok()) {
            done(FromGrpcStatus(status));
          } else {
            done(std::move(call->response));
          }
        });
}

// grpc.health.v1 Check of the whole server (service ""). Yields the serving
// status name ("SERVING", "NOT_SERVING", ...) or the failed call's status.
inline void CheckHealth(grpc::health::v1::Health::Stub* stub, absl::Duration deadline,
                        Callback<std::string> done) {
  using grpc::health::v1::HealthCheckRequest;
  using grpc::health::v1::HealthCheckResponse;
  CallUnary<HealthCheckResponse>(
      CallMeta{}, deadline, HealthCheckRequest(),
      [done = std::move(done)](absl::StatusOr<HealthCheckResponse> response) {
        if (!response.ok()) return done(response.status());
        done(HealthCheckResponse::ServingStatus_Name(response->status()));
      },
      [stub](auto* context, auto* request, auto* response, auto callback) {
        stub->async()->Check(context, request, response, std::move(callback));
      });
}

// The gRPC side of a client interface `Interface` (which declares
// CheckHealth) over `Service`'s stub: the stubs, the options and the health
// check. Subclasses forward methods with BUILDD_FORWARD_UNARY.
template <typename Interface, typename Service>
class GrpcClient : public Interface {
 public:
  GrpcClient(const std::shared_ptr<grpc::Channel>& channel, ClientOptions options)
      : stub_(Service::NewStub(channel)),
        health_(grpc::health::v1::Health::NewStub(channel)),
        options_(options) {}

  void CheckHealth(Callback<std::string> done) override {
    internal::CheckHealth(health_.get(), options_.health_deadline, std::move(done));
  }

 protected:
  std::unique_ptr<typename Service::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  ClientOptions options_;
};

}  // namespace buildd::gateway::internal

// Inside a client class with `stub_` and `options_`: overrides `Method` to
// forward it through the stub's callback API with the unary deadline.
#define BUILDD_FORWARD_UNARY(Method, Request, Response)                                         \
  void Method(const CallMeta& meta, const Request& request, Callback<Response> done) override { \
    internal::CallUnary<Response>(meta, options_.unary_deadline, request, std::move(done),      \
                                  [this](auto* context, auto* req, auto* resp, auto callback) { \
                                    stub_->async()->Method(context, req, resp,                  \
                                                           std::move(callback));                \
                                  });                                                           \
  }

#endif  // BUILDD_GATEWAY_GRPC_CALL_H_
