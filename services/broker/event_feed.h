#ifndef BUILDD_SERVICES_BROKER_EVENT_FEED_H_
#define BUILDD_SERVICES_BROKER_EVENT_FEED_H_

// Puts the events of every broker replica on one database into this
// replica's hub, in id order without gaps: its own journal's batches as
// they commit, and what other replicas commit as their notices arrive (read
// from the store). Subscribe streams here then see every replica's events
// within milliseconds, and the dispatcher hears of tasks that became
// pending or ended elsewhere. Other replicas' controls for workers are
// handed on too. Thread-safe.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "buildd/v1/runner.pb.h"
#include "services/broker/broker_store.h"
#include "services/broker/event_hub.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

class EventFeed {
 public:
  // Events read from the store (committed by another replica, or by this
  // one before its journal handed them over).
  using Elsewhere = std::function<void(const std::vector<pb::Event>&)>;
  // A control another replica sent (pb::Control).
  using ControlFn = std::function<void(const pb::Control&)>;

  EventFeed(BrokerStore& store, EventHub& hub, std::string replica_id);
  ~EventFeed();

  // Listens (reconnecting when the connection drops, then reading what was
  // committed meanwhile) until Stop.
  void Start(Elsewhere elsewhere, ControlFn control);
  void Stop();

  // This replica's journal committed `events` (consecutive ids). On the
  // journal's thread, so it never reads the store: when another replica
  // committed in between, the listener reads both, on their notices.
  void Committed(const std::vector<pb::Event>& events);

 private:
  void Listen();
  // Publishes what is committed after the hub's last id up to `up_to`,
  // reading it from the store; appends it to `read`.
  void CatchUpLocked(int64_t up_to, std::vector<pb::Event>* read) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  BrokerStore& store_;
  EventHub& hub_;
  const std::string replica_id_;
  Elsewhere elsewhere_;
  ControlFn control_;
  absl::Mutex mu_;  // one publisher at a time
  std::atomic<bool> stopping_{false};
  absl::Mutex listener_mu_;
  ReplicaListener* listener_ ABSL_GUARDED_BY(listener_mu_) = nullptr;
  std::thread thread_;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_EVENT_FEED_H_
