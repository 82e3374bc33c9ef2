#ifndef BUILDD_SERVICES_BROKER_RUNNER_REGISTRY_H_
#define BUILDD_SERVICES_BROKER_RUNNER_REGISTRY_H_

// The runners with a stream to this replica: one entry per stream, holding
// everything the broker knows of it (routing view, link, key, provider
// credentials, last message). Thread-safe.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "buildd/v1/runner.pb.h"
#include "services/broker/placement.h"

namespace buildd::broker {

// The broker's side of one runner stream. Implementations must not block.
// Thread-safe.
class RunnerLink {
 public:
  virtual ~RunnerLink() = default;
  virtual void Send(::buildd::v1::BrokerMessage message) = 0;
  // Ends the stream with `status` (after what is queued).
  virtual void Close(const absl::Status& status) = 0;
};

// What a runner said of itself, for those who list runners (routing reads
// none of it).
struct RunnerDetails {
  std::vector<::buildd::v1::Capability> capabilities;
  std::string version;
  std::string connected_at;  // RFC 3339
  // What its last Heartbeat said (the tasks it runs); 0 before one.
  int load = 0;
};

struct ConnectedRunner {
  RunnerSlot slot;
  RunnerDetails details;
  std::shared_ptr<RunnerLink> link;
  // The API key its stream presented (to authenticate it again).
  std::string key;
  // Its account's provider credentials, for the tasks it takes.
  std::map<std::string, std::string> credentials;
  std::chrono::steady_clock::time_point last_seen;
  // Silent this long, it is cut off (0: the broker's heartbeat rule). A
  // polling agent, which sends no heartbeats, has its lease here.
  std::chrono::milliseconds silence_limit{0};
};

class RunnerRegistry {
 public:
  // Adds `runner`, unless its key already holds `max_per_key` streams
  // (ResourceExhausted then).
  absl::Status Add(ConnectedRunner runner, int max_per_key);
  void Remove(const std::string& runner_id);

  std::optional<RunnerSlot> Slot(const std::string& runner_id) const;
  std::vector<RunnerSlot> Slots() const;
  // Every runner with what it said of itself.
  std::vector<std::pair<RunnerSlot, RunnerDetails>> List() const;
  // The runner `choose` picks among all (by index), without copying them.
  std::optional<RunnerSlot> Choose(
      const std::function<std::optional<size_t>(const std::vector<const RunnerSlot*>&)>& choose) const;
  std::shared_ptr<RunnerLink> Link(const std::string& runner_id) const;
  std::string Key(const std::string& runner_id) const;
  std::map<std::string, std::string> Credentials(const std::string& runner_id) const;
  // Notes a message from the runner.
  void Touch(const std::string& runner_id);
  // Notes the load its Heartbeat reported.
  void SetLoad(const std::string& runner_id, int load);
  // From now on it takes no new work (Heartbeat.draining); false when it
  // was draining already (or is gone).
  bool SetDraining(const std::string& runner_id);
  // The links of runners silent for longer than their silence limit
  // (`limit` when they have none of their own).
  std::vector<std::shared_ptr<RunnerLink>> Silent(std::chrono::steady_clock::time_point now,
                                                  std::chrono::milliseconds limit) const;
  // Replaces the access of every runner of `account_id`.
  void SetAccess(const std::string& account_id, const RunnerAccess& access);

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, ConnectedRunner> runners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_RUNNER_REGISTRY_H_
