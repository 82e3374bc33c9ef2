#ifndef BUILDD_SERVICES_BROKER_EVENT_HUB_H_
#define BUILDD_SERVICES_BROKER_EVENT_HUB_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "buildd/v1/common.pb.h"
#include "services/broker/records.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

// The most recent committed events in memory, and who to wake when more
// arrive. Publish() receives batches in id order without gaps. Thread-safe.
class EventHub {
 public:
  // The ring keeps at most `capacity` events and `max_bytes` of them.
  explicit EventHub(size_t capacity = 20000, size_t max_bytes = 64 << 20)
      : capacity_(capacity), max_bytes_(max_bytes) {}

  // REQUIRES: called once at start, before Publish: the last committed id.
  void Reset(int64_t last_id);

  void Publish(const std::vector<pb::Event>& events);

  // Copies the events with id > after_id that `filter` matches into `out`
  // (at most `max`, looking at `scan` ids at most) and sets `*scanned_to` to
  // the last id it looked at (after_id when none). Returns false when
  // after_id is older than what the ring holds (read the database).
  bool ReadAfter(int64_t after_id, const EventFilter& filter, size_t max, size_t scan,
                 std::vector<pb::Event>* out, int64_t* scanned_to) const;
  int64_t last_id() const;

  // `wake` runs (on the publishing thread) after each Publish.
  int Subscribe(std::function<void()> wake);
  void Unsubscribe(int token);

 private:
  const size_t capacity_;
  const size_t max_bytes_;
  mutable absl::Mutex mu_;
  std::deque<pb::Event> ring_ ABSL_GUARDED_BY(mu_);
  std::deque<size_t> sizes_ ABSL_GUARDED_BY(mu_);  // of ring_'s events
  size_t ring_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, std::function<void()>> subscribers_ ABSL_GUARDED_BY(mu_);
  int next_token_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_EVENT_HUB_H_
