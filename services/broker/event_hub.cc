#include "services/broker/event_hub.h"

#include <algorithm>

namespace buildd::broker {

void EventHub::Reset(int64_t last_id) {
  absl::MutexLock lock(&mu_);
  ring_.clear();
  sizes_.clear();
  ring_bytes_ = 0;
  last_id_ = last_id;
}

void EventHub::Publish(const std::vector<pb::Event>& events) {
  std::vector<std::function<void()>> wakes;
  {
    absl::MutexLock lock(&mu_);
    for (const pb::Event& e : events) {
      ring_.push_back(e);
      sizes_.push_back(sizeof(pb::Event) + e.ByteSizeLong());
      ring_bytes_ += sizes_.back();
      last_id_ = e.id();
    }
    while (!ring_.empty() && (ring_.size() > capacity_ || ring_bytes_ > max_bytes_)) {
      ring_bytes_ -= sizes_.front();
      sizes_.pop_front();
      ring_.pop_front();
    }
    for (const auto& [token, wake] : subscribers_) wakes.push_back(wake);
  }
  for (auto& wake : wakes) wake();
}

bool EventHub::ReadAfter(int64_t after_id, const EventFilter& filter, size_t max, size_t scan,
                         std::vector<pb::Event>* out, int64_t* scanned_to) const {
  absl::MutexLock lock(&mu_);
  *scanned_to = after_id;
  if (after_id >= last_id_) return true;
  const int64_t first = ring_.empty() ? last_id_ + 1 : ring_.front().id();
  if (after_id + 1 < first) return false;
  // Only what the subscriber wants is copied.
  size_t i = static_cast<size_t>(after_id + 1 - first);
  for (const size_t end = std::min(ring_.size(), i + scan); i < end && out->size() < max; ++i) {
    *scanned_to = ring_[i].id();
    if (filter.Matches(ring_[i])) out->push_back(ring_[i]);
  }
  return true;
}

int64_t EventHub::last_id() const {
  absl::MutexLock lock(&mu_);
  return last_id_;
}

int EventHub::Subscribe(std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  subscribers_[next_token_] = std::move(wake);
  return next_token_++;
}

void EventHub::Unsubscribe(int token) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(token);
}

}  // namespace buildd::broker
