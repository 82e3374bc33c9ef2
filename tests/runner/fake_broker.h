#ifndef BUILDD_TESTS_RUNNER_FAKE_BROKER_H_
#define BUILDD_TESTS_RUNNER_FAKE_BROKER_H_

// A fake in-process RunnerService for the runner's tests: it records what
// the runner sends, answers Hello with a Welcome, acks events (unless told
// not to) and lets a test push messages, break the stream or refuse
// connections. The real broker is tested on its own.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "buildd/v1/runner.grpc.pb.h"
#include "common/grpc_server.h"

namespace buildd::runner::fakes {

namespace pb = ::buildd::v1;

// What the fake broker saw. Events are de-duplicated by (worker, seq), as
// the real broker does.
struct BrokerState {
  struct Session {
    std::string bearer;
    std::vector<pb::RunnerMessage> received;
    bool ended = false;
  };
  std::vector<Session> sessions;
  std::vector<pb::Hello> hellos;
  std::map<std::string, std::map<int64_t, pb::RunnerEvent>> events;
  std::map<std::string, pb::Finished> finished;
  std::vector<pb::Accept> accepts;
  std::vector<pb::Reject> rejects;
  int heartbeats = 0;
  // Welcomes queued on a stream: a message sent after this follows the Welcome.
  int welcomes = 0;
  int duplicate_events = 0;

  std::vector<std::string> Lines(const std::string& worker, const std::string& stream) const {
    std::vector<std::string> lines;
    auto it = events.find(worker);
    if (it == events.end()) return lines;
    for (const auto& [seq, event] : it->second) {
      if (event.event().type() == "output" && event.event().stream() == stream) {
        lines.push_back(event.event().text());
      }
    }
    return lines;
  }
  std::vector<std::string> Statuses(const std::string& worker) const {
    std::vector<std::string> statuses;
    auto it = events.find(worker);
    if (it == events.end()) return statuses;
    for (const auto& [seq, event] : it->second) {
      if (event.event().type() == "status") statuses.push_back(event.event().status());
    }
    return statuses;
  }
  size_t EventCount(const std::string& worker) const {
    auto it = events.find(worker);
    return it == events.end() ? 0 : it->second.size();
  }
};

class FakeBroker final : public pb::RunnerService::CallbackService {
 public:
  // One Connect call. Writes are queued; StartWrite and Finish are never
  // called with a lock held (gRPC may run reactions inline).
  class Session final : public grpc::ServerBidiReactor<pb::RunnerMessage, pb::BrokerMessage> {
   public:
    Session(FakeBroker* broker, int index) : broker_(broker), index_(index) { StartRead(&in_); }

    void Write(pb::BrokerMessage message) {
      {
        absl::MutexLock lock(&mu_);
        if (finish_called_ || finish_wanted_) return;
        queue_.push_back(std::move(message));
        if (writing_) return;
        writing_ = true;
        out_ = std::move(queue_.front());
        queue_.pop_front();
      }
      StartWrite(&out_);
    }

    // Finishes with `status` once queued writes are out.
    void FinishAfterWrites(grpc::Status status) {
      {
        absl::MutexLock lock(&mu_);
        if (finish_called_ || finish_wanted_) return;
        finish_wanted_ = true;
        finish_status_ = std::move(status);
        if (writing_) return;
        finish_called_ = true;
      }
      Finish(finish_status_);
    }

    void OnReadDone(bool ok) override {
      if (!ok) {  // the runner half-closed (or the call died)
        FinishAfterWrites(grpc::Status::OK);
        return;
      }
      broker_->OnMessage(this, in_);
      StartRead(&in_);
    }

    void OnWriteDone(bool ok) override {
      bool write = false, finish = false;
      {
        absl::MutexLock lock(&mu_);
        if (!ok) queue_.clear();
        if (!queue_.empty()) {
          out_ = std::move(queue_.front());
          queue_.pop_front();
          write = true;
        } else {
          writing_ = false;
          if (!ok && !finish_wanted_) {
            finish_wanted_ = true;
            finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
          }
          if (finish_wanted_ && !finish_called_) finish = finish_called_ = true;
        }
      }
      if (write) StartWrite(&out_);
      if (finish) Finish(finish_status_);
    }

    void OnCancel() override {
      FinishAfterWrites(grpc::Status(grpc::StatusCode::CANCELLED, "canceled"));
    }

    void OnDone() override { broker_->OnSessionDone(index_); }

    int index() const { return index_; }

   private:
    FakeBroker* const broker_;
    const int index_;
    pb::RunnerMessage in_;
    pb::BrokerMessage out_;
    absl::Mutex mu_;
    std::deque<pb::BrokerMessage> queue_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finish_wanted_ ABSL_GUARDED_BY(mu_) = false;
    bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
    grpc::Status finish_status_;
  };

  grpc::ServerBidiReactor<pb::RunnerMessage, pb::BrokerMessage>* Connect(
      grpc::CallbackServerContext* context) override {
    absl::MutexLock lock(&mu_);
    const int index = static_cast<int>(state_.sessions.size());
    state_.sessions.emplace_back().bearer = BearerToken(*context);
    auto session = std::make_unique<Session>(this, index);
    Session* raw = session.get();
    reactors_.push_back(std::move(session));
    if (refuse_) {
      // Answer no Hello; end the call right away.
      raw->FinishAfterWrites(grpc::Status(grpc::StatusCode::UNAVAILABLE, "refusing"));
    } else {
      current_ = raw;
    }
    return raw;
  }

  // --- the test's controls ---

  void set_auto_ack(bool on) {
    absl::MutexLock lock(&mu_);
    auto_ack_ = on;
  }
  void set_refuse(bool on) {
    absl::MutexLock lock(&mu_);
    refuse_ = on;
  }
  void set_stale_in_next_welcome(std::vector<std::string> workers) {
    absl::MutexLock lock(&mu_);
    stale_next_ = std::move(workers);
  }

  // Sends on the current stream (dropped when there is none).
  void Send(pb::BrokerMessage message) {
    Session* session;
    {
      absl::MutexLock lock(&mu_);
      session = current_;
    }
    if (session != nullptr) session->Write(std::move(message));
  }

  // Ends the current stream with UNAVAILABLE after what was sent so far.
  void BreakStream() {
    Session* session;
    {
      absl::MutexLock lock(&mu_);
      session = current_;
      current_ = nullptr;
    }
    if (session != nullptr) {
      session->FinishAfterWrites(grpc::Status(grpc::StatusCode::UNAVAILABLE, "broker restarting"));
    }
  }

  // Waits until `holds(state)`; false after `timeout`.
  bool WaitFor(std::function<bool(const BrokerState&)> holds,
               absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    const auto check = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return holds(state_); };
    return mu_.AwaitWithTimeout(absl::Condition(&check), timeout);
  }

  BrokerState state() {
    absl::MutexLock lock(&mu_);
    return state_;
  }

 private:
  void OnMessage(Session* session, const pb::RunnerMessage& message) {
    std::vector<pb::BrokerMessage> replies;
    {
      absl::MutexLock lock(&mu_);
      state_.sessions[session->index()].received.push_back(message);
      switch (message.msg_case()) {
        case pb::RunnerMessage::kHello: {
          state_.hellos.push_back(message.hello());
          pb::Welcome* welcome = replies.emplace_back().mutable_welcome();
          welcome->set_session_id("session-" + std::to_string(session->index()));
          welcome->set_runner_id("runner-1");
          welcome->set_heartbeat_interval_ms(100);
          for (const std::string& worker : stale_next_) welcome->add_stale_workers(worker);
          stale_next_.clear();
          break;
        }
        case pb::RunnerMessage::kAccept:
          state_.accepts.push_back(message.accept());
          break;
        case pb::RunnerMessage::kReject:
          state_.rejects.push_back(message.reject());
          break;
        case pb::RunnerMessage::kHeartbeat:
          ++state_.heartbeats;
          break;
        case pb::RunnerMessage::kEvent: {
          const pb::RunnerEvent& event = message.event();
          auto& by_seq = state_.events[event.worker_id()];
          if (!by_seq.emplace(event.seq(), event).second) ++state_.duplicate_events;
          if (auto_ack_) {
            pb::Ack* ack = replies.emplace_back().mutable_ack();
            ack->set_worker_id(event.worker_id());
            ack->set_up_to_seq(event.seq());
          }
          break;
        }
        case pb::RunnerMessage::kFinished:
          state_.finished[message.finished().worker_id()] = message.finished();
          if (auto_ack_) {
            pb::Ack* ack = replies.emplace_back().mutable_ack();
            ack->set_worker_id(message.finished().worker_id());
            ack->set_up_to_seq(message.finished().last_seq() + 1);
          }
          break;
        case pb::RunnerMessage::MSG_NOT_SET:
          break;
      }
    }
    const bool welcomed = !replies.empty() && replies.front().has_welcome();
    for (pb::BrokerMessage& reply : replies) session->Write(std::move(reply));
    if (welcomed) {
      absl::MutexLock lock(&mu_);
      ++state_.welcomes;
    }
  }

  void OnSessionDone(int index) {
    absl::MutexLock lock(&mu_);
    state_.sessions[index].ended = true;
    if (current_ != nullptr && current_->index() == index) current_ = nullptr;
  }

  absl::Mutex mu_;
  BrokerState state_ ABSL_GUARDED_BY(mu_);
  bool auto_ack_ ABSL_GUARDED_BY(mu_) = true;
  bool refuse_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> stale_next_ ABSL_GUARDED_BY(mu_);
  Session* current_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Reactors live as long as the fake, so a pointer taken under mu_ stays valid.
  std::vector<std::unique_ptr<Session>> reactors_ ABSL_GUARDED_BY(mu_);
};

inline pb::BrokerMessage Assign(const std::string& worker, int64_t epoch,
                                const std::string& command,
                                const std::string& provider = "command") {
  pb::BrokerMessage message;
  pb::Assign* assign = message.mutable_assign();
  assign->mutable_worker()->set_id(worker);
  assign->mutable_task()->set_id("task-" + worker);
  assign->mutable_task()->set_workspace_id("ws-1");
  assign->mutable_task()->set_provider(provider);
  assign->mutable_task()->set_command(command);
  assign->set_epoch(epoch);
  assign->mutable_workspace()->set_id("ws-1");
  return message;
}

inline pb::BrokerMessage Control(const std::string& worker, int64_t epoch,
                                 pb::Control::Action action) {
  pb::BrokerMessage message;
  message.mutable_control()->set_worker_id(worker);
  message.mutable_control()->set_epoch(epoch);
  message.mutable_control()->set_action(action);
  return message;
}

inline pb::BrokerMessage Ack(const std::string& worker, int64_t up_to_seq) {
  pb::BrokerMessage message;
  message.mutable_ack()->set_worker_id(worker);
  message.mutable_ack()->set_up_to_seq(up_to_seq);
  return message;
}

// Polls `done` every 10 ms for at most `timeout`.
inline bool Eventually(const std::function<bool()>& done,
                       absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

}  // namespace buildd::runner::fakes

#endif  // BUILDD_TESTS_RUNNER_FAKE_BROKER_H_
