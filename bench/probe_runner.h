#ifndef BUILDD_BENCH_PROBE_RUNNER_H_
#define BUILDD_BENCH_PROBE_RUNNER_H_

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "bench/bench_util.h"
#include "buildd/v1/runner.grpc.pb.h"

namespace buildd::bench {

namespace pb = ::buildd::v1;

// When each task's Assign reached a probe runner (this process's clock).
// Thread-safe.
class Arrivals {
 public:
  void Add(const std::string& task_id);
  std::map<std::string, Clock::time_point> Take();

 private:
  absl::Mutex mu_;
  std::map<std::string, Clock::time_point> at_ ABSL_GUARDED_BY(mu_);
};

// A runner that speaks RunnerService on a real stream from this process, so
// that the broker is measured without a process per task. It heartbeats at
// the interval the Welcome names, like buildd-runner.
//
// With `finish_at_once`, it accepts each Assign and at once sends `started`
// and a completed Finished (the dispatch and lifecycle phases). Otherwise
// it keeps each Assign for WaitAssign and StreamEvents (event ingest).
//
// Thread-safe. The destructor half-closes the stream and waits for the
// broker to finish it.
class ProbeRunner {
 public:
  struct Options {
    std::string name;
    int max_tasks = 8;
    // Take only this workspace's tasks (Hello.workspace_id).
    std::string workspace_id;
    bool finish_at_once = true;
  };
  ProbeRunner(const std::shared_ptr<grpc::Channel>& channel, const std::string& key,
              Options options, Arrivals* arrivals);
  ~ProbeRunner();

  bool WaitWelcomed(std::chrono::milliseconds timeout);
  // The next Assign not yet taken. REQUIRES: !finish_at_once.
  std::optional<pb::Assign> WaitAssign(std::chrono::milliseconds timeout);

  struct Streamed {
    bool ok = false;
    std::string error;
    int64_t acked = 0;              // the highest seq the broker acked
    Clock::time_point first_sent;   // before the first output event went out
    Clock::time_point last_acked;   // when the ack covering every event arrived
  };
  // Accepts the assigned worker, sends `started` (seq 1) and `count` output
  // lines (seq 2…count+1), waits until the broker acks them all (it acks once
  // they are durable), then finishes the worker and waits for that ack too.
  Streamed StreamEvents(const pb::Assign& assign, int count, std::chrono::milliseconds timeout);

 private:
  void Write(const pb::RunnerMessage& m);
  void Read();
  void Heartbeat();
  void FinishAtOnce(const pb::Assign& a);
  // Waits until the worker's acks reach `seq`; false on timeout or a
  // closed stream. Sets *at to when that ack arrived.
  bool WaitAck(const std::string& worker_id, int64_t seq, std::chrono::milliseconds timeout,
               Clock::time_point* at);

  const Options options_;
  Arrivals* const arrivals_;
  std::unique_ptr<pb::RunnerService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::RunnerMessage, pb::BrokerMessage>> stream_;
  std::mutex write_mu_;

  absl::Mutex mu_;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  // The stream ended.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // The destructor runs.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int heartbeat_ms_ ABSL_GUARDED_BY(mu_) = 10000;
  std::deque<pb::Assign> assigns_ ABSL_GUARDED_BY(mu_);
  // Per worker: the highest acked seq and when that ack arrived.
  std::map<std::string, std::pair<int64_t, Clock::time_point>> acked_ ABSL_GUARDED_BY(mu_);

  std::thread reader_;
  std::thread heartbeat_;
};

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_PROBE_RUNNER_H_
