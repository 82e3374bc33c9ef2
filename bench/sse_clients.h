#ifndef BUILDD_BENCH_SSE_CLIENTS_H_
#define BUILDD_BENCH_SSE_CLIENTS_H_

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"

namespace buildd::bench {

// `count` clients following one task through the gateway's SSE route
// (GET /api/events?taskId=…, as a dashboard's EventSource does), each on its
// own HTTP/1.1 connection, all read by one poll() thread. Each counts the
// `output` events it received.
//
// Thread-safe. The destructor closes the connections.
class SseClients {
 public:
  SseClients(int gateway_port, const std::string& key, const std::string& task_id, int count);
  ~SseClients();

  // Waits until every client got a 200 response head; false on timeout or
  // when a client failed (see error()).
  bool WaitStreaming(absl::Duration timeout);
  // Waits until the clients together received `per_client` output events
  // each; false on timeout or a failure.
  bool WaitOutputs(int64_t per_client, absl::Duration timeout);

  int64_t total_outputs() const;
  // The fewest output events one client received.
  int64_t min_outputs() const;
  // When the latest output event arrived, over all clients.
  Clock::time_point last_output() const;
  std::string error() const;

 private:
  struct Client {
    int fd = -1;
    bool head_done = false;
    std::string buffer;  // bytes not yet parsed
    int64_t outputs = 0;
  };
  void Loop();
  // Parses what arrived; returns how many output events it held.
  int64_t Parse(Client& c);
  void Fail(const std::string& why);

  std::vector<Client> clients_;  // touched by the poll thread only, after the constructor
  int wake_[2] = {-1, -1};       // a pipe that ends the poll loop

  mutable absl::Mutex mu_;
  int streaming_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t min_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point last_ ABSL_GUARDED_BY(mu_);
  std::string error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_SSE_CLIENTS_H_
