#ifndef BUILDD_SERVICES_BROKER_SUBSCRIPTION_H_
#define BUILDD_SERVICES_BROKER_SUBSCRIPTION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/thread_pool.hpp>
#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "buildd/v1/broker.pb.h"
#include "services/broker/accounts_client.h"
#include "services/broker/broker_store.h"
#include "services/broker/event_hub.h"

namespace buildd::broker {

// The Subscribe streams of one broker, and the registry of those open.
//
// A stream authenticates and checks its request on `pool`, registers (at
// most `max_per_key` open streams per key), then reads what the client
// missed from the hub's ring or, when older, from the database in bounded
// ranges of ids (one range per turn on `stream_pool`, so that one long
// backfill does not hold up the others), then follows the hub.
//
// Thread-safe. Each stream's state outlives its reactor (pool work and the
// hub's wake-ups hold the state, not the reactor). REQUIRES: this object, the
// store, the hub and both pools outlive every stream opened here.
class Subscriptions {
 public:
  Subscriptions(Authenticator& auth, BrokerStore& store, EventHub& hub,
                boost::asio::thread_pool& pool, boost::asio::thread_pool& stream_pool,
                int max_per_key);

  // A new stream for `req`, under the credential `key`, writing `Message`s
  // (pb::Event, or pb::EventBatch: several events a message); it ends itself
  // with the error of a refused key or request.
  template <typename Message>
  grpc::ServerWriteReactor<Message>* Open(std::string key, const pb::SubscribeRequest& req);

  // Checks the open streams of `account_id` ("" for all) against their keys
  // and grants now, on `pool`: a stream whose key (or session) stopped
  // working, or that lost a workspace grant, ends; others follow the grants
  // as they are. An unreachable accounts service leaves the streams alone.
  void Refresh(const std::string& account_id);

 private:
  struct Watched;
  // Registers an open stream, unless its key holds too many; its id.
  absl::StatusOr<int64_t> Watch(std::shared_ptr<Watched> watched);
  void Forget(int64_t id);

  Authenticator& auth_;
  BrokerStore& store_;
  EventHub& hub_;
  boost::asio::thread_pool& pool_;
  boost::asio::thread_pool& stream_pool_;
  const int max_per_key_;

  absl::Mutex mu_;
  std::map<int64_t, std::shared_ptr<Watched>> watched_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_SUBSCRIPTION_H_
