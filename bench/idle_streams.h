#ifndef BUILDD_BENCH_IDLE_STREAMS_H_
#define BUILDD_BENCH_IDLE_STREAMS_H_

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace buildd::bench {

class IdleStream;

// `count` runner streams to the broker at `address` that send a Hello and
// then only heartbeats (at the Welcome's interval), as a fleet of idle
// runners does. They use the callback API, so no thread is held per stream.
// `per_channel` streams share a channel; each channel has a distinct channel
// argument, so gRPC gives it its own subchannel and TCP connection.
//
// Thread-safe. The destructor half-closes every stream and waits until each
// has ended (or cancels those the broker does not finish within 10 s).
class IdleStreams {
 public:
  IdleStreams(const std::string& address, const std::string& key,
              const std::string& workspace_id, int count, int per_channel);
  ~IdleStreams();

  int count() const { return static_cast<int>(streams_.size()); }
  int channels() const { return static_cast<int>(channels_.size()); }

  // Waits until every stream was welcomed or one ended; true when all were
  // welcomed.
  bool WaitWelcomed(absl::Duration timeout);
  // Waits until every stream wrote `rounds` heartbeats, or one ended.
  bool WaitHeartbeats(int rounds, absl::Duration timeout);
  // Streams that ended so far, and the first one's status.
  int ended() const;
  std::string first_error() const;

 private:
  friend class IdleStream;
  void OnWelcomed(int heartbeat_ms);
  void OnHeartbeatWritten(int beats);
  void OnEnded(const grpc::Status& status);
  void HeartbeatLoop();

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<IdleStream>> streams_;

  mutable absl::Mutex mu_;
  int welcomed_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int heartbeat_ms_ ABSL_GUARDED_BY(mu_) = 10000;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
  // How many streams wrote at least n heartbeats, by n.
  std::map<int, int> beats_reached_ ABSL_GUARDED_BY(mu_);
  std::thread heartbeats_;
};

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_IDLE_STREAMS_H_
