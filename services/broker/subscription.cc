#include "services/broker/subscription.h"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <functional>
#include <set>
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

// One Subscribe call (see Subscriptions): backfills from the hub's ring or
// the database (filtered in the query), then follows the hub. The state
// outlives the reactor: pool work and the hub's wake-ups hold it, not the
// reactor.
class Subscription final : public QueuedWriteReactor<pb::Event> {
 public:
  struct State {
    State(BrokerStore& store, EventHub& hub, boost::asio::thread_pool& pool)
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
    Subscription* reactor ABSL_GUARDED_BY(mu) = nullptr;
    int64_t cursor ABSL_GUARDED_BY(mu) = 0;
    bool pumping ABSL_GUARDED_BY(mu) = false;
    bool again ABSL_GUARDED_BY(mu) = false;
    EventFilter filter ABSL_GUARDED_BY(mu);
    int hub_token ABSL_GUARDED_BY(mu) = -1;
  };

  Subscription(BrokerStore& store, EventHub& hub, boost::asio::thread_pool& pool)
      : state_(std::make_shared<State>(store, hub, pool)) {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
    // The set-up (on the service's pool) starts with the stream.
    state_->setup.Begin();
  }

  std::shared_ptr<State> state() const { return state_; }

  // Ends the set-up: starts following (status ok) or finishes with `status`.
  // Touches only `s` after the reactor may be gone.
  static void EndSetup(const std::shared_ptr<State>& s, const absl::Status& status,
                       int64_t after_id, EventFilter filter) {
    {
      absl::MutexLock lock(&s->mu);
      const bool cancelled = s->setup.End();
      if (s->reactor == nullptr) return;
      if (!status.ok() || cancelled) {
        s->reactor->FinishOnce(status.ok() ? grpc::Status::CANCELLED : ToGrpcStatus(status));
        return;
      }
      s->cursor = after_id;
      s->filter = std::move(filter);
      s->reactor->StartSendInitialMetadata();
      std::weak_ptr<State> weak = s;
      s->hub_token = s->hub.Subscribe([weak] {
        if (auto locked = weak.lock()) Schedule(locked);
      });
    }
    Schedule(s);
  }

  // Ends the stream with `status` (revoked key, removed grant), if open.
  static void End(const std::shared_ptr<State>& s, const absl::Status& status) {
    absl::MutexLock lock(&s->mu);
    if (s->reactor != nullptr && !s->setup.Running()) s->reactor->FinishOnce(ToGrpcStatus(status));
  }

  static void SetAllowed(const std::shared_ptr<State>& s, std::set<std::string> allowed) {
    absl::MutexLock lock(&s->mu);
    s->filter.allowed_workspaces = std::move(allowed);
  }

 protected:
  void OnCancel() override {
    bool now;
    {
      absl::MutexLock lock(&state_->mu);
      now = state_->setup.Cancel();
    }
    if (now) FinishOnce(grpc::Status::CANCELLED);
  }
  void OnQueueEmpty() override { Schedule(state_); }
  void OnClosed() override {
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->hub_token >= 0) state_->hub.Unsubscribe(state_->hub_token);
      state_->reactor = nullptr;
    }
    if (state_->on_closed) state_->on_closed();
  }

 private:
  static constexpr size_t kHighWater = 256;
  // Ids one database read of a backfill spans, and events it returns.
  static constexpr int64_t kScanIds = 5000;
  static constexpr int kScanEvents = 500;

  static void Schedule(const std::shared_ptr<State>& s) {
    {
      absl::MutexLock lock(&s->mu);
      if (s->reactor == nullptr || s->setup.Running()) return;
      if (s->pumping) {
        s->again = true;
        return;
      }
      s->pumping = true;
    }
    boost::asio::post(s->pool, [s] { Pump(s); });
  }

  // Sends what is after the cursor until caught up or the queue is full.
  static void Pump(const std::shared_ptr<State>& s) {
    while (true) {
      int64_t cursor;
      EventFilter filter;
      {
        absl::MutexLock lock(&s->mu);
        if (s->reactor == nullptr) return;
        cursor = s->cursor;
        filter = s->filter;
        s->again = false;
      }
      std::vector<pb::Event> events;
      const int64_t last = s->hub.last_id();
      int64_t scanned_to = 0;  // set when read from the database
      if (cursor < last && !s->hub.ReadAfter(cursor, 500, &events)) {
        const int64_t up_to = std::min(last, cursor + kScanIds);
        auto from_db = s->store.ReadEvents(cursor, filter, kScanEvents, up_to);
        if (!from_db.ok()) {
          absl::MutexLock lock(&s->mu);
          if (s->reactor) {
            s->reactor->FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot read events"));
          }
          return;
        }
        events = std::move(*from_db);
        scanned_to = events.size() == static_cast<size_t>(kScanEvents) ? events.back().id() : up_to;
      }
      absl::MutexLock lock(&s->mu);
      if (s->reactor == nullptr) return;
      for (const pb::Event& e : events) {
        s->cursor = e.id();
        if (s->filter.Matches(e)) s->reactor->Send(e);
      }
      s->cursor = std::max(s->cursor, scanned_to);
      const bool full = s->reactor->Queued() >= kHighWater;
      if (full || (events.empty() && scanned_to == 0 && !s->again)) {
        // Caught up, or waiting for the client to read: a wake-up resumes.
        s->pumping = false;
        return;
      }
      if (scanned_to > 0) {
        // One range per turn: other streams' work goes in between.
        boost::asio::post(s->pool, [s] { Pump(s); });
        return;
      }
    }
  }

  std::shared_ptr<State> state_;
};

}  // namespace

// An open Subscribe stream, for revalidation.
struct Subscriptions::Watched {
  std::string key;
  std::string account_id;
  bool is_admin = false;
  // The workspaces its key could see when it started; losing one ends it.
  std::set<std::string> visible;
  std::weak_ptr<Subscription::State> state;
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

grpc::ServerWriteReactor<pb::Event>* Subscriptions::Open(std::string key,
                                                         const pb::SubscribeRequest& req) {
  auto* sub = new Subscription(store_, hub_, stream_pool_);
  boost::asio::post(pool_, [this, state = sub->state(), req, key = std::move(key)] {
    absl::StatusOr<Principal> p = auth_.Authenticate(key);
    absl::Status status = p.ok() ? ValidateSubscribe(req) : p.status();
    EventFilter filter;
    filter.workspace_id = req.workspace_id();
    filter.task_id = req.task_id();
    filter.worker_id = req.worker_id();
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
    Subscription::EndSetup(state, status, req.after_id(), std::move(filter));
  });
  return sub;
}

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
      std::shared_ptr<Subscription::State> state = w->state.lock();
      if (state == nullptr) continue;
      absl::StatusOr<Principal> p = auth_.Authenticate(w->key);
      if (!p.ok()) {
        // The key (or session) is gone; an unreachable accounts service
        // leaves the stream alone.
        if (p.status().code() == absl::StatusCode::kUnavailable) continue;
        Log()->info("account={}: its key no longer works; ending its event stream", w->account_id);
        Subscription::End(state, absl::UnauthenticatedError(absl::StrCat(
                                     "the credential of this stream no longer works: ",
                                     p.status().message())));
        continue;
      }
      if (p->is_admin || w->is_admin) continue;
      const bool lost = std::any_of(w->visible.begin(), w->visible.end(),
                                    [&](const std::string& ws) { return p->visible.count(ws) == 0; });
      if (lost) {
        Log()->info("account={}: a grant was removed; ending its event stream", w->account_id);
        Subscription::End(state, absl::PermissionDeniedError(
                                     "a workspace grant this stream relied on was removed"));
        continue;
      }
      Subscription::SetAllowed(state, p->visible);
    }
  });
}

}  // namespace buildd::broker
