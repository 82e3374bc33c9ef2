#ifndef BUILDD_SERVICES_BROKER_POLLING_AGENTS_H_
#define BUILDD_SERVICES_BROKER_POLLING_AGENTS_H_

// Agents that poll instead of holding a stream (the seeds' buildd-agent:
// POST /api/workers/claim, then PATCH /api/workers/:id). Each agent (an
// account and a name) is a runner of the dispatcher whose link is kept
// here: nothing is pushed to it (its slot has no room of its own), it
// claims with ClaimNow, and its reports become the runner messages a
// stream would have sent, answered once durable. Controls for its workers
// wait here for its next report. Its lease is the registry's silence
// limit: every call renews it; once it lapses the agent is disconnected
// and its workers get the lease grace of any runner's. Thread-safe.

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/thread_pool.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "buildd/v1/broker.pb.h"
#include "services/broker/accounts_client.h"
#include "services/broker/broker_store.h"
#include "services/broker/dispatcher.h"

namespace buildd::broker {

class PollingAgents {
 public:
  using Reply = std::function<void(absl::Status)>;

  // `lease`: how long an agent may stay silent and keep its claims (the
  // lease grace comes on top, as for a runner).
  // `pool` answers reports once they are durable (it reads the store).
  PollingAgents(Dispatcher& dispatcher, BrokerStore& store, boost::asio::thread_pool& pool,
                std::chrono::milliseconds lease);
  ~PollingAgents();

  // Claims for the agent of `principal` (authenticated with `key`) and
  // fills `response`; `done` runs once, on some thread.
  void Claim(const Principal& principal, const std::string& key,
             const pb::ClaimWorkersRequest& request, pb::ClaimWorkersResponse* response,
             Reply done);
  // Records the report (events, then the end when the status is final),
  // and fills `response` once it is durable.
  void Update(const Principal& principal, const std::string& key,
              const pb::UpdateWorkerRequest& request, pb::UpdateWorkerResponse* response,
              Reply done);

 private:
  class Link;

  // The agent's runner, connected when it is not (its lease lapsed, or
  // this replica never saw it). Blocks: call it from a pool thread.
  absl::StatusOr<std::shared_ptr<Link>> Agent(const Principal& principal, const std::string& key,
                                              const std::string& name,
                                              const std::vector<std::string>& labels,
                                              const std::vector<std::string>& providers);
  // The link's runner was cut off (its lease lapsed, its key was revoked).
  void Forget(const std::string& runner_id);
  // Hands the report to the dispatcher as runner messages, in order, and
  // returns the seq whose ack says they are durable.
  int64_t Report(Link& link, const LiveWorker& worker, const pb::UpdateWorkerRequest& request);

  Dispatcher& dispatcher_;
  BrokerStore& store_;
  boost::asio::thread_pool& pool_;
  const std::chrono::milliseconds lease_;
  // Held while an agent is connected, so that it is connected once.
  absl::Mutex setup_mu_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Link>> links_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_POLLING_AGENTS_H_
