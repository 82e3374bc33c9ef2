#ifndef BUILDD_SERVICES_BROKER_LEASES_H_
#define BUILDD_SERVICES_BROKER_LEASES_H_

// The clocks of the runner protocol: how long a lost runner's workers are
// kept for it, how long a runner has to accept what it was given, and how
// often silent runners are looked for. Owns only its timers; what happens
// when one fires is its owner's (callbacks, run on the timers' thread).
// Thread-safe.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace buildd::broker {

class Leases {
 public:
  struct Durations {
    int grace_ms = 30000;
    int accept_ms = 30000;
    int heartbeat_ms = 10000;
  };
  struct Callbacks {
    // The grace of these workers is over.
    std::function<void(const std::vector<std::string>& worker_ids)> grace_over;
    // The runner had its time to accept the worker at that epoch.
    std::function<void(const std::string& runner_id, const std::string& worker_id, int64_t epoch)>
        accept_due;
    // A heartbeat interval passed.
    std::function<void()> heartbeat;
  };

  Leases(boost::asio::io_context& timers, Durations durations, Callbacks callbacks);

  void Grace(std::vector<std::string> worker_ids);
  void AcceptBy(const std::string& runner_id, const std::string& worker_id, int64_t epoch);
  // Starts the heartbeat clock. REQUIRES: called once.
  void StartHeartbeats();
  void Stop();

  const Durations& durations() const { return durations_; }

 private:
  void ArmHeartbeat();

  boost::asio::io_context& timers_;
  const Durations durations_;
  const Callbacks callbacks_;
  boost::asio::steady_timer heartbeat_;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_LEASES_H_
