#ifndef BUILDD_SERVICES_BROKER_RUNNER_SERVICE_H_
#define BUILDD_SERVICES_BROKER_RUNNER_SERVICE_H_

#include <map>
#include <string>

#include <boost/asio/io_context.hpp>
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
  struct Options {
    // A stream that sends no Hello within this time is closed.
    int hello_timeout_ms = 10000;
  };
  RunnerServiceImpl(Authenticator& auth, Dispatcher& dispatcher, boost::asio::thread_pool& pool,
                    boost::asio::io_context& timers, Options options);

  grpc::ServerBidiReactor<pb::RunnerMessage, pb::BrokerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;

  // Re-reads the grants of runners of `account_id` ("" for all); closes the
  // streams whose key stopped working.
  void RefreshAccount(const std::string& account_id);

  // What the account of `p` may claim and share.
  static RunnerAccess AccessOf(const Principal& p);
  // The routing view of a runner from its principal and Hello.
  static RunnerSlot SlotFor(const std::string& runner_id, const Principal& p,
                            const pb::Hello& hello);

 private:
  friend class RunnerStream;
  Authenticator& auth_;
  Dispatcher& dispatcher_;
  boost::asio::thread_pool& pool_;
  boost::asio::io_context& timers_;
  const Options options_;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_RUNNER_SERVICE_H_
