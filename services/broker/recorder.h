#ifndef BUILDD_SERVICES_BROKER_RECORDER_H_
#define BUILDD_SERVICES_BROKER_RECORDER_H_

// What runners report about the workers they hold, recorded through the
// journal: events (de-duplicated by seq, fenced by epoch, acked once
// durable), a worker's Finished (its session sealed and its artifacts
// converted off gRPC's and the journal's threads, its cost charged to the
// account's daily budget), and an error event and an ack in place of what
// could not be stored. Thread-safe.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <boost/asio/thread_pool.hpp>
#include <google/protobuf/struct.pb.h>

#include "buildd/v1/runner.pb.h"
#include "services/broker/broker_store.h"
#include "services/broker/budget.h"
#include "services/broker/journal.h"
#include "services/broker/runner_registry.h"
#include "services/broker/worker_table.h"

namespace buildd::broker {

class Recorder {
 public:
  // Runs after the end of `worker` (held by `runner_id`) was committed.
  using Ended = std::function<void(const std::string& runner_id, const LiveWorker& worker)>;

  // `pool` seals sessions and converts artifacts.
  Recorder(Journal& journal, BrokerStore& store, boost::asio::thread_pool& pool,
           RunnerRegistry& registry, WorkerTable& workers, Budget& budget, Ended ended);

  void OnEvent(const std::string& runner_id, pb::RunnerEvent event);
  void OnFinished(const std::string& runner_id, pb::Finished finished);

 private:
  // Stores a Finished whose session is sealed and artifacts converted (to
  // their column and to the event's data).
  void StoreFinished(const std::string& runner_id, pb::Finished finished,
                     std::optional<SealedSession> session, std::string artifacts_json,
                     google::protobuf::Struct artifacts_data);
  // A runner's event or Finished that could not be stored: the worker gets
  // an error event in its place, and the runner its ack, so that nothing
  // waits on it; a database that is away closes the stream instead (the
  // runner replays it on the next). `seq`: the last seq it covers;
  // `ack_up_to`: what acknowledges it.
  void OnNotStored(const std::string& runner_id, const std::string& worker_id, int64_t epoch,
                   int64_t seq, int64_t ack_up_to, bool finished, const absl::Status& status);
  // Inside a journal op: adds what a finished worker cost to its runner's
  // account; at maxCostPerDay the account's runners stop taking agent tasks
  // for the rest of the UTC day (a "budget" event says so).
  void ChargeInTx(JournalTx& tx, const std::string& runner_id, const LiveWorker& w, double cost_usd);
  void Send(const std::string& runner_id, pb::BrokerMessage message);

  Journal& journal_;
  BrokerStore& store_;
  boost::asio::thread_pool& pool_;
  RunnerRegistry& registry_;
  WorkerTable& workers_;
  Budget& budget_;
  const Ended ended_;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_RECORDER_H_
