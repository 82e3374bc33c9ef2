#include "common/health_service.h"

namespace buildd {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

HealthService::HealthService(std::set<std::string> services, Probe probe)
    : services_(std::move(services)), probe_(std::move(probe)) {
  services_.insert("");
}

void HealthService::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const HealthCheckRequest* request,
                                               HealthCheckResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (services_.count(request->service()) == 0) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    return reactor;
  }
  bool draining;
  {
    absl::MutexLock lock(&mu_);
    draining = draining_;
  }
  const bool serving = !draining && (!probe_ || probe_());
  response->set_status(serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request) {
  // Kubernetes probes use Check; Watch answers once with the current status.
  class OneShot : public grpc::ServerWriteReactor<HealthCheckResponse> {
   public:
    OneShot(HealthCheckResponse::ServingStatus status) {
      response_.set_status(status);
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnDone() override { delete this; }

   private:
    HealthCheckResponse response_;
  };
  bool draining;
  {
    absl::MutexLock lock(&mu_);
    draining = draining_;
  }
  const bool serving = !draining && (!probe_ || probe_());
  return new OneShot(serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING);
}

}  // namespace buildd
