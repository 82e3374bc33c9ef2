#include "services/broker/event_feed.h"

#include <algorithm>
#include <chrono>

#include <google/protobuf/util/json_util.h>

#include "common/logging.h"

namespace buildd::broker {
namespace {

// Events read from the store per query while catching up.
constexpr int kReadChunk = 4096;

}  // namespace

EventFeed::EventFeed(BrokerStore& store, EventHub& hub, std::string replica_id)
    : store_(store), hub_(hub), replica_id_(std::move(replica_id)) {}

EventFeed::~EventFeed() { Stop(); }

void EventFeed::Start(Elsewhere elsewhere, ControlFn control) {
  elsewhere_ = std::move(elsewhere);
  control_ = std::move(control);
  thread_ = std::thread([this] { Listen(); });
}

void EventFeed::Stop() {
  stopping_ = true;
  {
    absl::MutexLock lock(&listener_mu_);
    if (listener_ != nullptr) listener_->Interrupt();
  }
  if (thread_.joinable()) thread_.join();
}

void EventFeed::Committed(const std::vector<pb::Event>& events) {
  if (events.empty()) return;
  absl::MutexLock lock(&mu_);
  const int64_t last = hub_.last_id();
  // Another replica committed in between: this one knows of it, so this
  // commit was notified too, and the listener reads it all from the store,
  // off the journal's thread.
  if (events.front().id() > last + 1) return;
  if (events.back().id() <= last) return;  // the listener read them already
  if (events.front().id() == last + 1) {
    hub_.Publish(events);
    return;
  }
  std::vector<pb::Event> rest;
  for (const pb::Event& e : events) {
    if (e.id() > last) rest.push_back(e);
  }
  hub_.Publish(rest);
}

void EventFeed::CatchUpLocked(int64_t up_to, std::vector<pb::Event>* read) {
  while (hub_.last_id() < up_to) {
    absl::StatusOr<std::vector<pb::Event>> events =
        store_.ReadEvents(hub_.last_id(), EventFilter{}, kReadChunk, up_to);
    if (!events.ok()) {
      // The next notice or commit tries again; until then streams here lag.
      Log()->warn("cannot read the events other replicas committed: {}", events.status().message());
      return;
    }
    // Ids are gap-free: a short read means they are not visible yet.
    if (events->empty() || events->front().id() != hub_.last_id() + 1) {
      Log()->warn("events after {} are not readable yet", hub_.last_id());
      return;
    }
    hub_.Publish(*events);
    read->insert(read->end(), events->begin(), events->end());
  }
}

void EventFeed::Listen() {
  auto delay = std::chrono::milliseconds(100);
  while (!stopping_) {
    absl::StatusOr<std::unique_ptr<ReplicaListener>> listener = store_.Listen();
    if (!listener.ok()) {
      Log()->warn("cannot listen for the other replicas: {}", listener.status().message());
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, std::chrono::milliseconds(5000));
      continue;
    }
    delay = std::chrono::milliseconds(100);
    {
      absl::MutexLock lock(&listener_mu_);
      listener_ = listener->get();
    }
    // Stop set stopping_ before it looked for a listener to interrupt.
    if (stopping_) break;
    // What was committed while nobody listened.
    if (absl::StatusOr<int64_t> last = store_.LastEventId(); last.ok()) {
      std::vector<pb::Event> read;
      {
        absl::MutexLock lock(&mu_);
        CatchUpLocked(*last, &read);
      }
      if (!read.empty() && elsewhere_) elsewhere_(read);
    }
    while (!stopping_) {
      absl::StatusOr<std::vector<ReplicaNotice>> notices = (*listener)->Wait(absl::InfiniteDuration());
      if (!notices.ok()) {
        Log()->warn("listening for the other replicas: {}", notices.status().message());
        break;
      }
      int64_t up_to = 0;
      for (const ReplicaNotice& n : *notices) {
        if (!n.control.empty()) {
          if (n.from == replica_id_) continue;  // it was not held here
          pb::Control control;
          if (google::protobuf::util::JsonStringToMessage(n.control, &control).ok() && control_) {
            control_(control);
          }
          continue;
        }
        // This replica's own too: its journal hands them over unless
        // another replica's commit came in between (nothing to read then).
        up_to = std::max(up_to, n.committed_up_to);
      }
      if (up_to == 0) continue;
      std::vector<pb::Event> read;
      {
        absl::MutexLock lock(&mu_);
        CatchUpLocked(up_to, &read);
      }
      if (!read.empty() && elsewhere_) elsewhere_(read);
    }
    absl::MutexLock lock(&listener_mu_);
    listener_ = nullptr;
  }
  absl::MutexLock lock(&listener_mu_);
  listener_ = nullptr;
}

}  // namespace buildd::broker
