#ifndef BUILDD_COMMON_HEALTH_SERVICE_H_
#define BUILDD_COMMON_HEALTH_SERVICE_H_

#include <functional>
#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace buildd {

// grpc.health.v1.Health compiled from grpc-proto, so that server reflection
// can describe it (gRPC's built-in health service has no descriptor).
// Reports NOT_SERVING while the probe fails (database unreachable) or the
// service drains. Thread-safe.
class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  using Probe = std::function<bool()>;

  // `probe` runs on each Check of the overall service ("" or a listed name).
  HealthService(std::set<std::string> services, Probe probe);

  // Marks every service NOT_SERVING from now on.
  void Drain();

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  std::set<std::string> services_;
  Probe probe_;
  absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace buildd

#endif  // BUILDD_COMMON_HEALTH_SERVICE_H_
