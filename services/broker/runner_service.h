#ifndef BUILDD_SERVICES_BROKER_RUNNER_SERVICE_H_
#define BUILDD_SERVICES_BROKER_RUNNER_SERVICE_H_

#include <map>
#include <string>

#include <boost/asio/thread_pool.hpp>

#include "absl/synchronization/mutex.h"
#include "buildd/v1/runner.grpc.pb.h"
#include "services/broker/accounts_client.h"
#include "services/broker/dispatcher.h"

namespace buildd::broker {

// RunnerService.Connect: one bidi stream per runner. The first message must
// be Hello; the key in the call's metadata decides the account. Messages are
// handed to the dispatcher, which never blocks; authentication runs on the
// pool.
class RunnerServiceImpl final : public pb::RunnerService::CallbackService {
 public:
  RunnerServiceImpl(Authenticator& auth, Dispatcher& dispatcher, boost::asio::thread_pool& pool);

  grpc::ServerBidiReactor<pb::RunnerMessage, pb::BrokerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;

  // Re-reads the grants of runners of `account_id` ("" for all); closes the
  // streams whose key stopped working.
  void RefreshAccount(const std::string& account_id);

  // The routing view of a runner from its principal and Hello.
  static RunnerSlot SlotFor(const std::string& runner_id, const Principal& p,
                            const pb::Hello& hello);

 private:
  friend class RunnerStream;
  Authenticator& auth_;
  Dispatcher& dispatcher_;
  boost::asio::thread_pool& pool_;
  absl::Mutex mu_;
  std::map<std::string, std::string> keys_ ABSL_GUARDED_BY(mu_);  // runner id → key
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_RUNNER_SERVICE_H_
