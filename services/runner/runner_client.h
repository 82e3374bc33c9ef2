#ifndef BUILDD_SERVICES_RUNNER_RUNNER_CLIENT_H_
#define BUILDD_SERVICES_RUNNER_RUNNER_CLIENT_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/security/credentials.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "services/runner/runner_agent.h"

namespace buildd::runner {

struct ClientOptions {
  // "host:port" of the broker's RunnerService.
  std::string server;
  // How the broker is dialed (null: plaintext). A TLS runner never falls
  // back to plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Sent as `authorization: Bearer <api_key>`; never logged.
  std::string api_key;
  std::chrono::milliseconds backoff_base{200};
  std::chrono::milliseconds backoff_cap{30000};
  // A stream that brings no Welcome in this long is abandoned and redialed.
  std::chrono::milliseconds welcome_timeout{30000};
  // Heartbeat period when the Welcome names none.
  std::chrono::milliseconds default_heartbeat{10000};
  // How long Stop() waits for the broker to end the stream after WritesDone.
  std::chrono::milliseconds close_timeout{5000};
};

class StreamSession;

// Keeps one RunnerService.Connect stream to the broker open for `agent`:
// dials, sends Hello, hands the broker's messages to the agent, writes the
// agent's messages in order from a writer thread, sends heartbeats, and on
// a broken stream redials with exponential backoff and full jitter (reset
// by each Welcome). Uses gRPC's synchronous stream API: one reader (the
// connection thread) and one writer (the session's writer thread).
// Thread-safe.
class RunnerClient {
 public:
  RunnerClient(ClientOptions options, RunnerAgent* agent);
  // Stop()s.
  ~RunnerClient();

  RunnerClient(const RunnerClient&) = delete;
  RunnerClient& operator=(const RunnerClient&) = delete;

  // Starts the connection thread. REQUIRES: called once.
  void Start();

  // After the current stream ends, do not dial again.
  void DisableReconnect();

  // Stops dialing and closes the current stream: queued messages are
  // written, then WritesDone; the call is canceled if the broker has not
  // ended it within close_timeout. Joins the connection thread. Idempotent.
  void Stop();

  // True between a Welcome and the end of that stream.
  bool connected() const { return connected_.load(); }
  // True while a stream is up or will be dialed again.
  bool reconnecting() const;
  // Streams that received a Welcome so far.
  int sessions() const { return sessions_.load(); }

 private:
  void Loop();
  // One stream from dial to end; returns true when it got a Welcome.
  bool RunSession();

  const ClientOptions options_;
  RunnerAgent* const agent_;
  std::thread thread_;
  std::atomic<bool> connected_{false};
  std::atomic<int> sessions_{0};

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool reconnect_ ABSL_GUARDED_BY(mu_) = true;
  bool loop_done_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<StreamSession> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_RUNNER_CLIENT_H_
