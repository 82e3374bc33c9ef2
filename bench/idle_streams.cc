#include "bench/idle_streams.h"

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "buildd/v1/runner.grpc.pb.h"

namespace buildd::bench {

namespace pb = ::buildd::v1;

// One idle runner stream. Writes go one at a time: a heartbeat due while
// another write is in flight is skipped, as a runner's next one follows
// soon.
class IdleStream final : public grpc::ClientBidiReactor<pb::RunnerMessage, pb::BrokerMessage> {
 public:
  IdleStream(IdleStreams* owner, pb::RunnerService::Stub* stub, const std::string& key,
             pb::RunnerMessage hello)
      : owner_(owner), hello_(std::move(hello)) {
    Auth(ctx_, key);
    beat_.mutable_heartbeat()->set_load(0);
    stub->async()->Connect(&ctx_, this);
    absl::MutexLock lock(&mu_);
    writing_ = true;
    StartWrite(&hello_);
    StartRead(&in_);
    StartCall();
  }

  // Writes a heartbeat unless a write is in flight or the stream is closing.
  void Beat() {
    absl::MutexLock lock(&mu_);
    if (writing_ || closing_ || !welcomed_) return;
    writing_ = true;
    beat_in_flight_ = true;
    StartWrite(&beat_);
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    if (!writing_) StartWritesDone();
  }

  void Cancel() { ctx_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    if (in_.has_welcome()) {
      {
        absl::MutexLock lock(&mu_);
        welcomed_ = true;
      }
      owner_->OnWelcomed(in_.welcome().heartbeat_interval_ms());
      Beat();
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    int beats = 0;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok && beat_in_flight_) beats = ++beats_;
      beat_in_flight_ = false;
      if (closing_ && ok) StartWritesDone();
    }
    if (beats > 0) owner_->OnHeartbeatWritten(beats);
  }

  // The last reaction: the owner may delete the stream once it counted it.
  void OnDone(const grpc::Status& status) override { owner_->OnEnded(status); }

 private:
  IdleStreams* const owner_;
  grpc::ClientContext ctx_;
  const pb::RunnerMessage hello_;
  pb::RunnerMessage beat_;
  pb::BrokerMessage in_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool beat_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  int beats_ ABSL_GUARDED_BY(mu_) = 0;
};

IdleStreams::IdleStreams(const std::string& address, const std::string& key,
                         const std::string& workspace_id, int count, int per_channel) {
  std::vector<std::unique_ptr<pb::RunnerService::Stub>> stubs;
  for (int i = 0; i < count; ++i) {
    if (i % per_channel == 0) {
      grpc::ChannelArguments args;
      // Distinct arguments: gRPC shares no subchannel between channels.
      args.SetInt("buildd.bench.channel", static_cast<int>(channels_.size()));
      channels_.push_back(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
      stubs.push_back(pb::RunnerService::NewStub(channels_.back()));
    }
    pb::RunnerMessage hello;
    hello.mutable_hello()->set_name(absl::StrCat("idle-", i));
    hello.mutable_hello()->set_max_tasks(1);
    hello.mutable_hello()->set_workspace_id(workspace_id);
    hello.mutable_hello()->add_capabilities()->set_name("command");
    streams_.push_back(std::make_unique<IdleStream>(this, stubs.back().get(), key, hello));
  }
  // The stubs only start calls; the channels stay open in channels_.
  heartbeats_ = std::thread([this] { HeartbeatLoop(); });
}

IdleStreams::~IdleStreams() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  heartbeats_.join();
  for (auto& s : streams_) s->Close();
  absl::MutexLock lock(&mu_);
  const int n = count();
  auto all_ended = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return ended_ == n; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&all_ended), absl::Seconds(10))) {
    for (auto& s : streams_) s->Cancel();
    mu_.Await(absl::Condition(&all_ended));
  }
}

bool IdleStreams::WaitWelcomed(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const int n = count();
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return welcomed_ == n || ended_ > 0; };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return welcomed_ == n && ended_ == 0;
}

bool IdleStreams::WaitHeartbeats(int rounds, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const int n = count();
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return beats_reached_[rounds] == n || ended_ > 0;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return beats_reached_[rounds] == n && ended_ == 0;
}

int IdleStreams::ended() const {
  absl::MutexLock lock(&mu_);
  return ended_;
}

std::string IdleStreams::first_error() const {
  absl::MutexLock lock(&mu_);
  return first_error_;
}

void IdleStreams::OnWelcomed(int heartbeat_ms) {
  absl::MutexLock lock(&mu_);
  ++welcomed_;
  if (heartbeat_ms > 0) heartbeat_ms_ = heartbeat_ms;
}

void IdleStreams::OnHeartbeatWritten(int beats) {
  absl::MutexLock lock(&mu_);
  ++beats_reached_[beats];
}

void IdleStreams::OnEnded(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (++ended_ == 1 && !stopping_) {
    first_error_ = absl::StrCat("code ", status.error_code(), ": ", status.error_message());
  }
}

void IdleStreams::HeartbeatLoop() {
  absl::MutexLock lock(&mu_);
  auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
  while (!mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(heartbeat_ms_))) {
    mu_.Unlock();
    for (auto& s : streams_) s->Beat();
    mu_.Lock();
  }
}

}  // namespace buildd::bench
