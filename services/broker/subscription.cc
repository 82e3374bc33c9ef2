#include "services/broker/subscription.h"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <functional>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/write_queue.h"
#include "services/broker/stream_setup.h"
#include "services/broker/task_validation.h"

namespace buildd::broker {
namespace {

// What following the events needs of a stream, whichever message it writes.
class EventSink {
 public:
  virtual ~EventSink() = default;
  // Queues `events` (those the filter let through, in order).
  virtual void Deliver(std::vector<pb::Event> events) = 0;
  // Whether enough waits for the client to read.
  virtual bool Full() = 0;
  virtual void End(const grpc::Status& status) = 0;
  virtual void SendHeaders() = 0;
};

// One stream (see Subscriptions): backfills from the hub's ring or the
// database (filtered in the query), then follows the hub. The state outlives
// the reactor: pool work and the hub's wake-ups hold it, not the reactor.
struct StreamState {
  StreamState(BrokerStore& store, EventHub& hub, boost::asio::thread_pool& pool)
      : store(store), hub(hub), pool(pool) {}
  BrokerStore& store;
  EventHub& hub;
  boost::asio::thread_pool& pool;
  // Runs once the stream is done (the registry forgets it).
  std::function<void()> on_closed;
  absl::Mutex mu;
  // Used under mu (lock order: mu, then setup's own), so that the set-up's
  // end and a cancel, an End() or a wake-up happen one after the other.
  StreamSetup setup;
  EventSink* sink ABSL_GUARDED_BY(mu) = nullptr;
  int64_t cursor ABSL_GUARDED_BY(mu) = 0;
  bool pumping ABSL_GUARDED_BY(mu) = false;
  bool again ABSL_GUARDED_BY(mu) = false;
  EventFilter filter ABSL_GUARDED_BY(mu);
  int hub_token ABSL_GUARDED_BY(mu) = -1;
  // With a branch filter: whether each task seen is on the branch (a
  // task's work branch never changes). Only Pump touches it, and one Pump
  // runs at a time.
  std::map<std::string, bool> on_branch;
};

// Ids one database read of a backfill spans, and events it returns.
constexpr int64_t kScanIds = 5000;
constexpr int kScanEvents = 500;
// What one EventBatch holds at most (a larger event goes alone).
constexpr size_t kBatchBytes = 512 << 10;

void Schedule(const std::shared_ptr<StreamState>& s);

// Drops the events of tasks not on `branch` (and those of no task); false
// when a task cannot be read.
bool KeepOnBranch(StreamState& s, const std::string& branch, std::vector<pb::Event>* events) {
  // Bounded: what is forgotten is read again.
  if (s.on_branch.size() > 10000) s.on_branch.clear();
  std::vector<pb::Event> kept;
  for (pb::Event& e : *events) {
    if (e.task_id().empty()) continue;
    auto it = s.on_branch.find(e.task_id());
    if (it == s.on_branch.end()) {
      absl::StatusOr<TaskRecord> task = s.store.GetTask(e.task_id());
      if (!task.ok() && task.status().code() != absl::StatusCode::kNotFound) return false;
      const bool on = task.ok() && task->spec != nullptr && task->spec->work_branch() == branch;
      it = s.on_branch.emplace(e.task_id(), on).first;
    }
    if (it->second) kept.push_back(std::move(e));
  }
  *events = std::move(kept);
  return true;
}

// Sends what is after the cursor until caught up or the queue is full.
void Pump(const std::shared_ptr<StreamState>& s) {
  while (true) {
    int64_t cursor;
    EventFilter filter;
    {
      absl::MutexLock lock(&s->mu);
      if (s->sink == nullptr) return;
      cursor = s->cursor;
      filter = s->filter;
      s->again = false;
    }
    std::vector<pb::Event> events;
    const int64_t last = s->hub.last_id();
    int64_t scanned_to = cursor;  // the last id looked at
    bool from_db = false;
    if (cursor < last &&
        !s->hub.ReadAfter(cursor, filter, kScanEvents, kScanIds, &events, &scanned_to)) {
      const int64_t up_to = std::min(last, cursor + kScanIds);
      auto from_store = s->store.ReadEvents(cursor, filter, kScanEvents, up_to);
      if (!from_store.ok()) {
        absl::MutexLock lock(&s->mu);
        if (s->sink) s->sink->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot read events"));
        return;
      }
      events = std::move(*from_store);
      scanned_to = events.size() == static_cast<size_t>(kScanEvents) ? events.back().id() : up_to;
      from_db = true;
    }
    if (!filter.branch.empty() && !KeepOnBranch(*s, filter.branch, &events)) {
      absl::MutexLock lock(&s->mu);
      if (s->sink) s->sink->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot read tasks"));
      return;
    }
    absl::MutexLock lock(&s->mu);
    if (s->sink == nullptr) return;
    // Read under the filter of then; the grants may have narrowed since.
    std::vector<pb::Event> matched;
    for (pb::Event& e : events) {
      if (s->filter.Matches(e)) matched.push_back(std::move(e));
    }
    s->cursor = std::max(s->cursor, scanned_to);
    if (!matched.empty()) s->sink->Deliver(std::move(matched));
    if (s->sink->Full() || (scanned_to <= cursor && !s->again)) {
      // Caught up, or waiting for the client to read: a wake-up resumes.
      s->pumping = false;
      return;
    }
    if (from_db) {
      // One range per turn: other streams' work goes in between.
      boost::asio::post(s->pool, [s] { Pump(s); });
      return;
    }
  }
}

void Schedule(const std::shared_ptr<StreamState>& s) {
  {
    absl::MutexLock lock(&s->mu);
    if (s->sink == nullptr || s->setup.Running()) return;
    if (s->pumping) {
      s->again = true;
      return;
    }
    s->pumping = true;
  }
  boost::asio::post(s->pool, [s] { Pump(s); });
}

// Ends the set-up: starts following (status ok) or finishes with `status`.
// Touches only `s`, whose reactor may be gone.
void EndSetup(const std::shared_ptr<StreamState>& s, const absl::Status& status, int64_t after_id,
              EventFilter filter) {
  {
    absl::MutexLock lock(&s->mu);
    const bool cancelled = s->setup.End();
    if (s->sink == nullptr) return;
    if (!status.ok() || cancelled) {
      s->sink->End(status.ok() ? grpc::Status::CANCELLED : ToGrpcStatus(status));
      return;
    }
    s->cursor = after_id;
    s->filter = std::move(filter);
    s->sink->SendHeaders();
    std::weak_ptr<StreamState> weak = s;
    s->hub_token = s->hub.Subscribe([weak] {
      if (auto locked = weak.lock()) Schedule(locked);
    });
  }
  Schedule(s);
}

// Ends the stream with `status` (revoked key, removed grant), if open.
void EndStream(const std::shared_ptr<StreamState>& s, const absl::Status& status) {
  absl::MutexLock lock(&s->mu);
  if (s->sink != nullptr && !s->setup.Running()) s->sink->End(ToGrpcStatus(status));
}

void SetAllowed(const std::shared_ptr<StreamState>& s, std::set<std::string> allowed) {
  absl::MutexLock lock(&s->mu);
  s->filter.allowed_workspaces = std::move(allowed);
}

// The reactor of one stream of `Message`s: pb::Event, one a message, or
// pb::EventBatch, what is ready in as few messages as fit.
template <typename Message>
class Subscription final : public QueuedWriteReactor<Message>, public EventSink {
 public:
  Subscription(BrokerStore& store, EventHub& hub, boost::asio::thread_pool& pool)
      : state_(std::make_shared<StreamState>(store, hub, pool)) {
    absl::MutexLock lock(&state_->mu);
    state_->sink = this;
    // The set-up (on the service's pool) starts with the stream.
    state_->setup.Begin();
  }

  std::shared_ptr<StreamState> state() const { return state_; }

  void Deliver(std::vector<pb::Event> events) override {
    if constexpr (std::is_same_v<Message, pb::Event>) {
      for (pb::Event& e : events) this->Send(std::move(e));
    } else {
      pb::EventBatch batch;
      size_t bytes = 0;
      for (pb::Event& e : events) {
        const size_t size = e.ByteSizeLong();
        if (batch.events_size() > 0 && bytes + size > kBatchBytes) {
          this->Send(std::move(batch));
          batch = pb::EventBatch();
          bytes = 0;
        }
        bytes += size;
        *batch.add_events() = std::move(e);
      }
      if (batch.events_size() > 0) this->Send(std::move(batch));
    }
  }
  bool Full() override {
    // Messages queued for the client: a batch stands for many events.
    constexpr size_t kHighWater = std::is_same_v<Message, pb::Event> ? 256 : 8;
    return this->Queued() >= kHighWater;
  }
  void End(const grpc::Status& status) override { this->FinishOnce(status); }
  void SendHeaders() override { this->StartSendInitialMetadata(); }

 protected:
  void OnCancel() override {
    bool now;
    {
      absl::MutexLock lock(&state_->mu);
      now = state_->setup.Cancel();
    }
    if (now) this->FinishOnce(grpc::Status::CANCELLED);
  }
  void OnQueueEmpty() override { Schedule(state_); }
  void OnClosed() override {
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->hub_token >= 0) state_->hub.Unsubscribe(state_->hub_token);
      state_->sink = nullptr;
    }
    if (state_->on_closed) state_->on_closed();
  }

 private:
  std::shared_ptr<StreamState> state_;
};

}  // namespace

// An open Subscribe stream, for revalidation.
struct Subscriptions::Watched {
  std::string key;
  std::string account_id;
  bool is_admin = false;
  // The workspaces its key could see when it started; losing one ends it.
  std::set<std::string> visible;
  std::weak_ptr<StreamState> state;
};

Subscriptions::Subscriptions(Authenticator& auth, BrokerStore& store, EventHub& hub,
                             boost::asio::thread_pool& pool,
                             boost::asio::thread_pool& stream_pool, int max_per_key)
    : auth_(auth),
      store_(store),
      hub_(hub),
      pool_(pool),
      stream_pool_(stream_pool),
      max_per_key_(max_per_key) {}

template <typename Message>
grpc::ServerWriteReactor<Message>* Subscriptions::Open(std::string key,
                                                       const pb::SubscribeRequest& req) {
  auto* sub = new Subscription<Message>(store_, hub_, stream_pool_);
  boost::asio::post(pool_, [this, state = sub->state(), req, key = std::move(key)] {
    absl::StatusOr<Principal> p = auth_.Authenticate(key);
    absl::Status status = p.ok() ? ValidateSubscribe(req) : p.status();
    EventFilter filter;
    filter.workspace_id = req.workspace_id();
    filter.task_id = req.task_id();
    filter.worker_id = req.worker_id();
    filter.branch = req.branch();
    if (status.ok() && !p->is_admin) filter.allowed_workspaces = p->visible;
    if (status.ok()) {
      auto watched = std::make_shared<Watched>();
      watched->key = key;
      watched->account_id = p->account_id;
      watched->is_admin = p->is_admin;
      watched->visible = p->visible;
      watched->state = state;
      absl::StatusOr<int64_t> id = Watch(std::move(watched));
      status = id.status();
      if (id.ok()) state->on_closed = [this, id = *id] { Forget(id); };
    }
    const int64_t after = req.after_id() == 0 && req.from_now() ? hub_.last_id() : req.after_id();
    EndSetup(state, status, after, std::move(filter));
  });
  return sub;
}

template grpc::ServerWriteReactor<pb::Event>* Subscriptions::Open<pb::Event>(
    std::string key, const pb::SubscribeRequest& req);
template grpc::ServerWriteReactor<pb::EventBatch>* Subscriptions::Open<pb::EventBatch>(
    std::string key, const pb::SubscribeRequest& req);

absl::StatusOr<int64_t> Subscriptions::Watch(std::shared_ptr<Watched> watched) {
  absl::MutexLock lock(&mu_);
  const auto same_key = std::count_if(watched_.begin(), watched_.end(), [&](const auto& entry) {
    return entry.second->key == watched->key;
  });
  if (same_key >= max_per_key_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this key already follows ", same_key, " event streams, the most one key may"));
  }
  const int64_t id = next_id_++;
  watched_[id] = std::move(watched);
  return id;
}

void Subscriptions::Forget(int64_t id) {
  absl::MutexLock lock(&mu_);
  watched_.erase(id);
}

void Subscriptions::Refresh(const std::string& account_id) {
  std::vector<std::shared_ptr<Watched>> affected;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, w] : watched_) {
      if (account_id.empty() || w->account_id == account_id) affected.push_back(w);
    }
  }
  if (affected.empty()) return;
  boost::asio::post(pool_, [this, affected = std::move(affected)] {
    for (const std::shared_ptr<Watched>& w : affected) {
      std::shared_ptr<StreamState> state = w->state.lock();
      if (state == nullptr) continue;
      absl::StatusOr<Principal> p = auth_.Authenticate(w->key);
      if (!p.ok()) {
        // The key (or session) is gone; an unreachable accounts service
        // leaves the stream alone.
        if (p.status().code() == absl::StatusCode::kUnavailable) continue;
        Log()->info("account={}: its key no longer works; ending its event stream", w->account_id);
        EndStream(state, absl::UnauthenticatedError(absl::StrCat(
                                     "the credential of this stream no longer works: ",
                                     p.status().message())));
        continue;
      }
      if (p->is_admin || w->is_admin) continue;
      const bool lost = std::any_of(w->visible.begin(), w->visible.end(),
                                    [&](const std::string& ws) { return p->visible.count(ws) == 0; });
      if (lost) {
        Log()->info("account={}: a grant was removed; ending its event stream", w->account_id);
        EndStream(state, absl::PermissionDeniedError(
                                     "a workspace grant this stream relied on was removed"));
        continue;
      }
      SetAllowed(state, p->visible);
    }
  });
}

}  // namespace buildd::broker
