#include "services/broker/runner_service.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "absl/strings/str_cat.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/text.h"
#include "common/write_queue.h"
#include "services/broker/stream_setup.h"

namespace buildd::broker {

using StreamBase = QueuedWrites<grpc::ServerBidiReactor<pb::RunnerMessage, pb::BrokerMessage>,
                                pb::BrokerMessage>;

// The link the dispatcher holds; valid after the reactor is gone (it then
// drops what it is given).
class StreamLink final : public RunnerLink {
 public:
  explicit StreamLink(StreamBase* reactor) : reactor_(reactor) {}
  // Nothing goes before the Welcome: what comes earlier (an Assign of a task
  // created while the runner's Hello was being stored) waits for it.
  void Send(pb::BrokerMessage message) override {
    absl::MutexLock lock(&mu_);
    if (reactor_ == nullptr) return;
    if (!welcomed_) {
      if (!message.has_welcome()) {
        held_.push_back(std::move(message));
        return;
      }
      welcomed_ = true;
      reactor_->Send(std::move(message));
      for (pb::BrokerMessage& held : held_) reactor_->Send(std::move(held));
      held_.clear();
      return;
    }
    reactor_->Send(std::move(message));
  }
  void Close(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (reactor_ != nullptr) reactor_->FinishOnce(ToGrpcStatus(status));
  }
  void Detach() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
  }
  // Set when the stream's first message arrived.
  std::atomic<bool> hello_seen{false};

 private:
  absl::Mutex mu_;
  StreamBase* reactor_ ABSL_GUARDED_BY(mu_);
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<pb::BrokerMessage> held_ ABSL_GUARDED_BY(mu_);
};

namespace {

// Whether a runner's message may be taken: not too large, and its
// sequence numbers and epochs in range.
absl::Status CheckRunnerMessage(const pb::RunnerMessage& m) {
  // Sequence numbers and epochs also travel to JavaScript clients.
  constexpr int64_t kMaxCounter = (int64_t{1} << 53) - 1;
  const size_t bytes = m.ByteSizeLong();
  // A Finished, and an event with a checkpoint, carry a session transcript.
  const bool transcript = m.has_finished() || (m.has_event() && m.event().has_checkpoint());
  const size_t limit = transcript ? kMaxFinishedBytes : kMaxRunnerMessageBytes;
  if (bytes > limit) {
    const auto* kind = m.GetDescriptor()->FindFieldByNumber(m.msg_case());
    return absl::ResourceExhaustedError(
        absl::StrCat("a runner message (", kind != nullptr ? kind->name() : "unknown", ") of ",
                     bytes, " bytes is larger than the ", limit, " allowed"));
  }
  auto in_range = [&](const char* field, int64_t value, int64_t low) {
    if (value >= low && value <= kMaxCounter) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", value, " is outside ", low, "…", kMaxCounter));
  };
  if (m.has_event()) {
    BUILDD_RETURN_IF_ERROR(in_range("event.seq", m.event().seq(), 1));
    return in_range("event.epoch", m.event().epoch(), 1);
  }
  if (m.has_finished()) {
    BUILDD_RETURN_IF_ERROR(in_range("finished.lastSeq", m.finished().last_seq(), 0));
    return in_range("finished.epoch", m.finished().epoch(), 1);
  }
  if (m.has_accept()) return in_range("accept.epoch", m.accept().epoch(), 1);
  if (m.has_reject()) return in_range("reject.epoch", m.reject().epoch(), 1);
  return absl::OkStatus();
}

}  // namespace

class RunnerStream final : public StreamBase {
 public:
  RunnerStream(RunnerServiceImpl* service, std::string key)
      : service_(service),
        key_(std::move(key)),
        runner_id_(NewUuid()),
        link_(std::make_shared<StreamLink>(this)) {
    // A stream that says nothing is closed; the timer holds the link, not us.
    auto timer = std::make_shared<boost::asio::steady_timer>(
        service_->timers_, std::chrono::milliseconds(service_->options_.hello_timeout_ms));
    timer->async_wait([timer, link = link_](boost::system::error_code ec) {
      if (!ec && !link->hello_seen) {
        link->Close(absl::DeadlineExceededError("no Hello within the time allowed"));
      }
    });
    StartRead(&in_);
  }

 protected:
  void OnReadDone(bool ok) override {
    if (!ok) {
      // Half-close (or a broken stream): finish our side too.
      FinishOnce(grpc::Status::OK);
      return;
    }
    if (absl::Status st = CheckRunnerMessage(in_); !st.ok()) {
      Log()->warn("runner={} name={}: {}; closing its stream", runner_id_, name_, st.message());
      FinishOnce(ToGrpcStatus(st));
      return;
    }
    // PostgreSQL keeps no NUL in text: a line with one is stored with U+FFFD.
    ReplaceNul(&in_);
    if (!registered_) {
      link_->hello_seen = true;
      if (!in_.has_hello()) {
        FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "the first message on the stream must be Hello"));
        return;
      }
      // Authenticate off the reaction thread; the next read starts after.
      // A cancel meanwhile is deferred until Register ends the set-up, and
      // the hold keeps us alive until Register is done with us.
      setup_.Begin();
      AddHold();
      boost::asio::post(service_->pool_, [this, hello = in_.hello()] {
        Register(hello);
        RemoveHold();
      });
      return;
    }
    static auto& received = Metrics::Global().Counter(
        "buildd_broker_runner_messages_total", "Messages received on runner streams.");
    ++received;
    service_->dispatcher_.OnMessage(runner_id_, std::move(in_));
    in_.Clear();
    // Backpressure: the next message is read once the journal has room.
    AddHold();
    if (service_->dispatcher_.HasRoom([this] {
          StartRead(&in_);
          RemoveHold();
        })) {
      RemoveHold();
      StartRead(&in_);
    }
  }

  void OnCancel() override {
    if (setup_.Cancel()) FinishOnce(grpc::Status::CANCELLED);
  }

  void OnClosed() override {
    link_->Detach();
    if (registered_) {
      service_->dispatcher_.Disconnect(runner_id_);
      Log()->info("runner={} name={} disconnected", runner_id_, name_);
    }
  }

 private:
  void Register(const pb::Hello& hello) {
    absl::StatusOr<Principal> p = service_->auth_.Authenticate(key_);
    if (p.ok() && !p->session_id.empty()) {
      p = absl::PermissionDeniedError("a dashboard session cannot connect a runner: use an API key");
    }
    std::map<std::string, std::string> credentials;
    if (p.ok()) {
      absl::StatusOr<std::map<std::string, std::string>> fetched =
          service_->auth_.RunnerCredentials(key_);
      if (fetched.ok()) {
        credentials = *std::move(fetched);
      } else {
        // The runner still runs commands, and agents with its own login.
        Log()->warn("runner={} account={}: its provider credentials are unavailable: {}",
                    runner_id_, p->account_id, fetched.status().message());
      }
    }
    if (p.ok()) {
      ConnectedRunner runner;
      runner.slot = RunnerServiceImpl::SlotFor(runner_id_, *p, hello);
      runner.details.capabilities.assign(hello.capabilities().begin(), hello.capabilities().end());
      runner.details.version = hello.version();
      runner.details.connected_at = NowRfc3339();
      runner.link = link_;
      runner.key = key_;
      runner.credentials = std::move(credentials);
      name_ = runner.slot.name;
      const std::string account_id = runner.slot.account_id;
      const int max_tasks = runner.slot.max_tasks;
      // Before Connect: a stream closed from here on disconnects the runner.
      registered_ = true;
      if (absl::Status st = service_->dispatcher_.Connect(std::move(runner), hello); !st.ok()) {
        registered_ = false;
        p = st;
      } else {
        Log()->info("runner={} name={} account={} connected max_tasks={} resume={}", runner_id_,
                    name_, account_id, max_tasks, hello.resume_size());
      }
    }
    // Leave set-up last: from here on a cancel may finish and free us.
    if (setup_.End()) {
      FinishOnce(grpc::Status::CANCELLED);
    } else if (!p.ok()) {
      FinishOnce(ToGrpcStatus(p.status()));
    } else {
      StartRead(&in_);
    }
  }

  RunnerServiceImpl* service_;
  const std::string key_;
  const std::string runner_id_;
  std::shared_ptr<StreamLink> link_;
  pb::RunnerMessage in_;
  std::string name_;
  std::atomic<bool> registered_{false};
  StreamSetup setup_;
};

RunnerServiceImpl::RunnerServiceImpl(Authenticator& auth, Dispatcher& dispatcher,
                                     boost::asio::thread_pool& pool,
                                     boost::asio::io_context& timers, Options options)
    : auth_(auth), dispatcher_(dispatcher), pool_(pool), timers_(timers), options_(options) {}

RunnerAccess RunnerServiceImpl::AccessOf(const Principal& p) {
  RunnerAccess access;
  access.claim_all = p.is_admin || p.claim_all;
  access.claim_workspaces = p.can_claim;
  access.share_workspaces = p.share_credentials;
  access.account_max_workers = p.is_admin ? 0 : p.max_concurrent_workers;
  access.account_max_cost_per_day = p.max_cost_per_day;
  return access;
}

grpc::ServerBidiReactor<pb::RunnerMessage, pb::BrokerMessage>* RunnerServiceImpl::Connect(
    grpc::CallbackServerContext* ctx) {
  static auto& streams = Metrics::Global().Counter(
      "buildd_broker_runner_streams_total", "RunnerService.Connect streams opened.");
  ++streams;
  return new RunnerStream(this, BearerToken(*ctx));
}

RunnerSlot RunnerServiceImpl::SlotFor(const std::string& runner_id, const Principal& p,
                                      const pb::Hello& hello) {
  RunnerSlot slot;
  slot.runner_id = runner_id;
  slot.name = hello.name().empty() ? "runner" : hello.name();
  slot.account_id = p.account_id;
  slot.account_type = p.type;
  slot.access = AccessOf(p);
  if (!hello.workspace_id().empty()) slot.only_workspaces.insert(hello.workspace_id());
  slot.only_workspaces.insert(hello.workspace_ids().begin(), hello.workspace_ids().end());
  slot.only_task = hello.task_id();
  slot.labels.insert(hello.labels().begin(), hello.labels().end());
  std::vector<std::string> capabilities;
  for (const pb::Capability& c : hello.capabilities()) capabilities.push_back(c.name());
  slot.providers = ProvidersOf(capabilities);
  slot.max_tasks = std::clamp(hello.max_tasks(), 1, 1000);
  return slot;
}

void RunnerServiceImpl::RefreshAccount(const std::string& account_id) {
  dispatcher_.RefreshAccount(account_id, [this](const std::string& key) -> absl::StatusOr<RunnerAccess> {
    absl::StatusOr<Principal> p = auth_.Authenticate(key);
    if (!p.ok()) return p.status();
    return AccessOf(*p);
  });
}

}  // namespace buildd::broker
