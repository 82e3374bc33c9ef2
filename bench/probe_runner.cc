#include "bench/probe_runner.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace buildd::bench {

void Arrivals::Add(const std::string& task_id) {
  const auto now = Clock::now();
  absl::MutexLock lock(&mu_);
  at_.emplace(task_id, now);
}

std::map<std::string, Clock::time_point> Arrivals::Take() {
  absl::MutexLock lock(&mu_);
  return std::exchange(at_, {});
}

ProbeRunner::ProbeRunner(const std::shared_ptr<grpc::Channel>& channel, const std::string& key,
                         Options options, Arrivals* arrivals)
    : options_(std::move(options)), arrivals_(arrivals) {
  stub_ = pb::RunnerService::NewStub(channel);
  Auth(ctx_, key);
  stream_ = stub_->Connect(&ctx_);
  pb::RunnerMessage hello;
  hello.mutable_hello()->set_name(options_.name);
  hello.mutable_hello()->set_max_tasks(options_.max_tasks);
  hello.mutable_hello()->set_workspace_id(options_.workspace_id);
  hello.mutable_hello()->add_capabilities()->set_name("command");
  Write(hello);
  reader_ = std::thread([this] { Read(); });
  heartbeat_ = std::thread([this] { Heartbeat(); });
}

ProbeRunner::~ProbeRunner() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  heartbeat_.join();
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    stream_->WritesDone();
  }
  // The broker finishes the stream on our half-close; a broker that does not
  // within 10 s is cut off.
  bool ended;
  {
    absl::MutexLock lock(&mu_);
    auto is_closed = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return closed_; };
    ended = mu_.AwaitWithTimeout(absl::Condition(&is_closed), absl::Seconds(10));
  }
  if (!ended) ctx_.TryCancel();
  reader_.join();
  stream_->Finish();
}

bool ProbeRunner::WaitWelcomed(std::chrono::milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return welcomed_ || closed_; };
  mu_.AwaitWithTimeout(absl::Condition(&done), absl::FromChrono(timeout));
  return welcomed_;
}

std::optional<pb::Assign> ProbeRunner::WaitAssign(std::chrono::milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !assigns_.empty() || closed_; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), absl::FromChrono(timeout));
  if (assigns_.empty()) return std::nullopt;
  pb::Assign a = std::move(assigns_.front());
  assigns_.pop_front();
  return a;
}

ProbeRunner::Streamed ProbeRunner::StreamEvents(const pb::Assign& assign, int count,
                                                std::chrono::milliseconds timeout) {
  const std::string& worker = assign.worker().id();
  Streamed out;
  pb::RunnerMessage accept;
  accept.mutable_accept()->set_worker_id(worker);
  accept.mutable_accept()->set_epoch(assign.epoch());
  Write(accept);
  pb::RunnerMessage m;
  auto* ev = m.mutable_event();
  ev->set_worker_id(worker);
  ev->set_epoch(assign.epoch());
  ev->set_seq(1);
  ev->mutable_event()->set_type("started");
  Write(m);
  ev->mutable_event()->set_type("output");
  ev->mutable_event()->set_stream("stdout");
  out.first_sent = Clock::now();
  for (int i = 1; i <= count; ++i) {
    ev->set_seq(i + 1);
    // A line the size of a compiler's or a test runner's.
    ev->mutable_event()->set_text(
        absl::StrCat("bench line ", i, ": src/module_", i % 97, ".cc:", i % 1000,
                     ": compiled in 12 ms"));
    Write(m);
  }
  const int64_t last_seq = count + 1;
  if (!WaitAck(worker, last_seq, timeout, &out.last_acked)) {
    absl::MutexLock lock(&mu_);
    out.acked = acked_.count(worker) ? acked_[worker].first : 0;
    out.error = absl::StrCat("the broker acked ", out.acked, " of ", last_seq, " events within ",
                             timeout.count(), " ms");
    return out;
  }
  out.acked = last_seq;
  pb::RunnerMessage done;
  auto* f = done.mutable_finished();
  f->set_worker_id(worker);
  f->set_epoch(assign.epoch());
  f->set_outcome(pb::Finished::completed);
  f->set_last_seq(last_seq);
  Write(done);
  // A Finished is acked as last_seq + 1.
  Clock::time_point ignored;
  if (!WaitAck(worker, last_seq + 1, timeout, &ignored)) {
    out.error = "the broker did not ack the Finished";
    return out;
  }
  out.ok = true;
  return out;
}

bool ProbeRunner::WaitAck(const std::string& worker_id, int64_t seq,
                          std::chrono::milliseconds timeout, Clock::time_point* at) {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = acked_.find(worker_id);
    return closed_ || (it != acked_.end() && it->second.first >= seq);
  };
  mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(timeout));
  auto it = acked_.find(worker_id);
  if (it == acked_.end() || it->second.first < seq) return false;
  *at = it->second.second;
  return true;
}

void ProbeRunner::Write(const pb::RunnerMessage& m) {
  std::lock_guard<std::mutex> lock(write_mu_);
  stream_->Write(m);
}

void ProbeRunner::Read() {
  pb::BrokerMessage in;
  while (stream_->Read(&in)) {
    if (in.has_assign()) {
      if (arrivals_ != nullptr) arrivals_->Add(in.assign().task().id());
      if (options_.finish_at_once) {
        FinishAtOnce(in.assign());
      } else {
        absl::MutexLock lock(&mu_);
        assigns_.push_back(in.assign());
      }
    } else if (in.has_ack()) {
      const auto now = Clock::now();
      absl::MutexLock lock(&mu_);
      auto& [seq, at] = acked_[in.ack().worker_id()];
      if (in.ack().up_to_seq() > seq) {
        seq = in.ack().up_to_seq();
        at = now;
      }
    } else if (in.has_welcome()) {
      absl::MutexLock lock(&mu_);
      welcomed_ = true;
      if (in.welcome().heartbeat_interval_ms() > 0) {
        heartbeat_ms_ = in.welcome().heartbeat_interval_ms();
      }
    }
  }
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

void ProbeRunner::Heartbeat() {
  absl::MutexLock lock(&mu_);
  auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || closed_; };
  while (!mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(heartbeat_ms_))) {
    mu_.Unlock();
    pb::RunnerMessage beat;
    beat.mutable_heartbeat()->set_load(0);
    Write(beat);
    mu_.Lock();
  }
}

void ProbeRunner::FinishAtOnce(const pb::Assign& a) {
  pb::RunnerMessage accept;
  accept.mutable_accept()->set_worker_id(a.worker().id());
  accept.mutable_accept()->set_epoch(a.epoch());
  Write(accept);
  pb::RunnerMessage started;
  auto* ev = started.mutable_event();
  ev->set_worker_id(a.worker().id());
  ev->set_epoch(a.epoch());
  ev->set_seq(1);
  ev->mutable_event()->set_type("started");
  Write(started);
  pb::RunnerMessage done;
  auto* f = done.mutable_finished();
  f->set_worker_id(a.worker().id());
  f->set_epoch(a.epoch());
  f->set_outcome(pb::Finished::completed);
  f->set_last_seq(1);
  Write(done);
}

}  // namespace buildd::bench
