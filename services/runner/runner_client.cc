#include "services/runner/runner_client.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "buildd/v1/runner.grpc.pb.h"
#include "common/backoff.h"
#include "common/grpc_server.h"
#include "common/logging.h"

namespace buildd::runner {

using Stream = grpc::ClientReaderWriter<pb::RunnerMessage, pb::BrokerMessage>;

// One Connect call: its context and stream, the queue of messages to write
// and the writer thread that drains it and sends heartbeats. Send() may be
// called from any thread; messages go out in the order they were queued.
class StreamSession final : public MessageSink {
 public:
  StreamSession(const ClientOptions& options, RunnerAgent* agent)
      : options_(options), agent_(agent), started_(absl::Now()) {}

  ~StreamSession() override { JoinWriter(); }

  grpc::ClientContext& context() { return context_; }
  void set_stream(std::unique_ptr<Stream> stream) { stream_ = std::move(stream); }
  Stream& stream() { return *stream_; }

  void Send(pb::RunnerMessage message) override {
    absl::MutexLock lock(&mu_);
    if (ended_ || writes_done_ || broken_) return;  // the outbox keeps it for a replay
    queue_.push_back(std::move(message));
  }

  void StartWriter() {
    writer_ = std::thread([this] { WriterLoop(); });
  }

  void OnWelcome(int heartbeat_interval_ms) {
    absl::MutexLock lock(&mu_);
    welcomed_ = true;
    heartbeat_ = heartbeat_interval_ms > 0 ? absl::Milliseconds(heartbeat_interval_ms)
                                           : absl::FromChrono(options_.default_heartbeat);
    last_heartbeat_ = absl::Now();
    timers_changed_ = true;  // the writer waits with the Welcome deadline
  }

  // Write what is queued, then WritesDone.
  void RequestClose() {
    absl::MutexLock lock(&mu_);
    close_requested_ = true;
  }

  // The call is over (Read returned false): the writer stops.
  void End() {
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
    }
    JoinWriter();
  }

  void Cancel() { context_.TryCancel(); }

 private:
  enum class Step { kWrite, kHeartbeat, kWritesDone, kWelcomeTimeout, kExit };

  void JoinWriter() {
    if (writer_.joinable()) writer_.join();
  }

  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ended_ || timers_changed_) return true;
    if (broken_ || writes_done_) return false;
    return !queue_.empty() || close_requested_;
  }

  Step NextStep(pb::RunnerMessage* message) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    while (true) {
      const bool timers = !broken_ && !writes_done_ && !welcome_timed_out_;
      const absl::Time deadline = !timers ? absl::InfiniteFuture()
                                  : welcomed_
                                      ? last_heartbeat_ + heartbeat_
                                      : started_ + absl::FromChrono(options_.welcome_timeout);
      mu_.AwaitWithDeadline(absl::Condition(this, &StreamSession::HasWork), deadline);
      if (ended_) return Step::kExit;
      if (timers_changed_) {
        timers_changed_ = false;
        continue;
      }
      if (!broken_ && !writes_done_) {
        if (!queue_.empty()) {
          *message = std::move(queue_.front());
          queue_.pop_front();
          return Step::kWrite;
        }
        if (close_requested_) {
          writes_done_ = true;
          return Step::kWritesDone;
        }
      }
      if (!timers || absl::Now() < deadline) continue;
      if (welcomed_) {
        last_heartbeat_ = absl::Now();
        return Step::kHeartbeat;
      }
      welcome_timed_out_ = true;
      return Step::kWelcomeTimeout;
    }
  }

  void WriterLoop() {
    pb::RunnerMessage message;
    while (true) {
      switch (NextStep(&message)) {
        case Step::kExit:
          return;
        case Step::kHeartbeat:
          message.Clear();
          message.mutable_heartbeat()->set_load(agent_->running_tasks());
          message.mutable_heartbeat()->set_draining(agent_->draining());
          [[fallthrough]];
        case Step::kWrite:
          if (!stream_->Write(message)) {
            // The call is over; the reader sees it and ends the session.
            absl::MutexLock lock(&mu_);
            broken_ = true;
          }
          break;
        case Step::kWritesDone:
          stream_->WritesDone();
          break;
        case Step::kWelcomeTimeout:
          Log()->warn("no Welcome within {} ms: abandoning the stream",
                      options_.welcome_timeout.count());
          context_.TryCancel();
          break;
      }
    }
  }

  const ClientOptions& options_;
  RunnerAgent* const agent_;
  const absl::Time started_;
  grpc::ClientContext context_;
  std::unique_ptr<Stream> stream_;
  std::thread writer_;

  mutable absl::Mutex mu_;
  std::deque<pb::RunnerMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool welcome_timed_out_ ABSL_GUARDED_BY(mu_) = false;
  bool timers_changed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration heartbeat_ ABSL_GUARDED_BY(mu_);
  absl::Time last_heartbeat_ ABSL_GUARDED_BY(mu_);
};

RunnerClient::RunnerClient(ClientOptions options, RunnerAgent* agent)
    : options_(std::move(options)), agent_(agent) {}

RunnerClient::~RunnerClient() { Stop(); }

void RunnerClient::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void RunnerClient::DisableReconnect() {
  absl::MutexLock lock(&mu_);
  reconnect_ = false;
}

bool RunnerClient::reconnecting() const {
  absl::MutexLock lock(&mu_);
  return !stopping_ && !loop_done_ && (reconnect_ || current_ != nullptr);
}

void RunnerClient::Stop() {
  std::shared_ptr<StreamSession> session;
  {
    absl::MutexLock lock(&mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    session = current_;
  }
  if (session != nullptr) session->RequestClose();
  bool done;
  {
    absl::MutexLock lock(&mu_);
    done = mu_.AwaitWithTimeout(absl::Condition(&loop_done_),
                                absl::FromChrono(options_.close_timeout));
    session = current_;
  }
  if (!done && session != nullptr) {
    Log()->warn("the broker did not close the stream in {} ms: canceling it",
                options_.close_timeout.count());
    session->Cancel();
  }
  thread_.join();
}

void RunnerClient::Loop() {
  Backoff backoff(options_.backoff_base, options_.backoff_cap);
  while (true) {
    if (RunSession()) backoff.Reset();
    const std::chrono::milliseconds delay = backoff.Next();
    absl::MutexLock lock(&mu_);
    if (stopping_ || !reconnect_) break;
    Log()->info("reconnecting to {} in {} ms (attempt {})", options_.server, delay.count(),
                backoff.attempt());
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::FromChrono(delay))) break;
  }
  absl::MutexLock lock(&mu_);
  loop_done_ = true;
}

bool RunnerClient::RunSession() {
  auto session = std::make_shared<StreamSession>(options_, agent_);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    current_ = session;
  }
  session->context().AddMetadata("authorization", absl::StrCat("Bearer ", options_.api_key));

  // A fresh channel per stream with its own subchannel: our backoff, not a
  // shared subchannel's, decides when to dial again.
  grpc::ChannelArguments args = StreamChannelArguments();
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.backoff_base.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(options_.backoff_base.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options_.backoff_cap.count()));
  auto channel = grpc::CreateCustomChannel(
      options_.server,
      options_.credentials != nullptr ? options_.credentials : grpc::InsecureChannelCredentials(),
      args);
  auto stub = pb::RunnerService::NewStub(channel);
  session->set_stream(stub->Connect(&session->context()));

  bool welcomed = false;
  pb::RunnerMessage hello;
  *hello.mutable_hello() = agent_->MakeHello();
  if (session->stream().Write(hello)) {
    Log()->debug("hello sent to {} (resume {} workers)", options_.server,
                 hello.hello().resume_size());
    session->StartWriter();
    pb::BrokerMessage message;
    while (session->stream().Read(&message)) {
      if (message.has_welcome()) {
        if (!welcomed) {
          welcomed = true;
          const pb::Welcome& welcome = message.welcome();
          session->OnWelcome(welcome.heartbeat_interval_ms());
          Log()->info("connected to {}: session={} runner={} heartbeat={} ms stale={}",
                      options_.server, welcome.session_id(), welcome.runner_id(),
                      welcome.heartbeat_interval_ms(), welcome.stale_workers_size());
          agent_->OnWelcome(welcome, session);
          connected_.store(true);
          sessions_.fetch_add(1);
          continue;
        }
      } else if (!welcomed) {
        Log()->warn("ignoring a broker message before Welcome");
        continue;
      }
      agent_->Handle(message);
    }
  }
  connected_.store(false);
  if (welcomed) agent_->OnDisconnected();
  session->End();
  const grpc::Status status = session->stream().Finish();
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
    current_.reset();
  }
  if (stopping && (status.ok() || status.error_code() == grpc::StatusCode::CANCELLED)) {
    Log()->info("stream to {} closed", options_.server);
  } else if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
             status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    Log()->error("the broker at {} refused the API key: {}", options_.server,
                 status.error_message());
  } else {
    Log()->warn("stream to {} ended: code={} {}", options_.server,
                static_cast<int>(status.error_code()), status.error_message());
  }
  return welcomed;
}

}  // namespace buildd::runner
