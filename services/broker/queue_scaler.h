#ifndef BUILDD_SERVICES_BROKER_QUEUE_SCALER_H_
#define BUILDD_SERVICES_BROKER_QUEUE_SCALER_H_

// KEDA's external scaler (externalscaler.ExternalScaler) over the task
// queue: a runner Deployment's ScaledObject names what its pods are in the
// trigger's metadata, and gets as its metric the unfinished tasks such pods
// could take (waiting, or running on one), so it scales with the queue and
// to zero. StreamIsActive pushes: the answer at once, then each change, as
// the journal commits tasks that are created, placed or end.
//
// The trigger's metadata (other keys, KEDA's own, are ignored):
//   providers       the pods' providers, comma-separated (default: all:
//                   command,claude,codex)
//   labels          the pods' --labels, comma-separated (default: none)
//   workspace       their --workspace, comma-separated (default: every
//                   workspace)
//   accountType     their account's type: service (default), user, action
//   tasksPerRunner  their --max_tasks: the metric's target per replica
//                   (default 1)
// The queue is the database's, the same from every broker replica.

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/thread_pool.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"
#include "externalscaler/externalscaler.grpc.pb.h"
#include "services/broker/broker_store.h"
#include "services/broker/placement.h"

namespace buildd::broker {

// What a ScaledObject says of its runners.
struct ScaledRunners {
  RunnerSlot pods;
  int64_t tasks_per_runner = 1;
};

// InvalidArgument naming the metadata key when a value is not understood.
absl::StatusOr<ScaledRunners> ScaledRunnersOf(
    const google::protobuf::Map<std::string, std::string>& metadata);

// The unfinished tasks in `queue` that such pods could take.
int64_t Demand(const std::vector<QueueGroup>& queue, const RunnerSlot& pods);

// The pending tasks by provider and required labels, as the series of the
// buildd_broker_pending_tasks gauge (none when the store cannot be read).
Metrics::Series PendingSeries(BrokerStore& store);

class QueueScaler final : public ::externalscaler::ExternalScaler::CallbackService {
 public:
  // Store reads run on `pool`, never on gRPC's threads.
  QueueScaler(BrokerStore& store, boost::asio::thread_pool& pool);
  // REQUIRES: the server serving it was shut down (no stream is open).
  ~QueueScaler() override;

  // The journal's committed events (its publish thread: returns at once).
  void OnEvents(const std::vector<::buildd::v1::Event>& events);

  grpc::ServerUnaryReactor* IsActive(grpc::CallbackServerContext* ctx,
                                     const ::externalscaler::ScaledObjectRef* ref,
                                     ::externalscaler::IsActiveResponse* resp) override;
  grpc::ServerWriteReactor<::externalscaler::IsActiveResponse>* StreamIsActive(
      grpc::CallbackServerContext* ctx, const ::externalscaler::ScaledObjectRef* ref) override;
  grpc::ServerUnaryReactor* GetMetricSpec(grpc::CallbackServerContext* ctx,
                                          const ::externalscaler::ScaledObjectRef* ref,
                                          ::externalscaler::GetMetricSpecResponse* resp) override;
  grpc::ServerUnaryReactor* GetMetrics(grpc::CallbackServerContext* ctx,
                                       const ::externalscaler::GetMetricsRequest* req,
                                       ::externalscaler::GetMetricsResponse* resp) override;

 private:
  class ActiveStream;

  // A unary call answered on the pool with the demand of `metadata`'s
  // runners (which lives as long as the call).
  grpc::ServerUnaryReactor* AnswerWithDemand(grpc::CallbackServerContext* ctx,
                                             const google::protobuf::Map<std::string, std::string>& metadata,
                                             std::function<void(int64_t)> answer);
  // Reads the queue on the pool and pushes to the streams whose answer
  // changed; one read at a time, another after it when asked meanwhile.
  void RecountSoon();
  void Recount();

  BrokerStore& store_;
  boost::asio::thread_pool& pool_;
  absl::Mutex mu_;
  std::set<ActiveStream*> streams_ ABSL_GUARDED_BY(mu_);
  bool counting_ ABSL_GUARDED_BY(mu_) = false;
  bool count_again_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_QUEUE_SCALER_H_
