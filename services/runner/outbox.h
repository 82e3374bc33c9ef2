#ifndef BUILDD_SERVICES_RUNNER_OUTBOX_H_
#define BUILDD_SERVICES_RUNNER_OUTBOX_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "buildd/v1/runner.pb.h"

namespace buildd::runner {

namespace pb = ::buildd::v1;

// What the runner still owes the broker, per worker: every event numbered
// with seq 1, 2, 3… and kept until an Ack covers it, then the worker's
// Finished, kept until an Ack with up_to_seq > its last_seq (the broker acks
// a Finished as last_seq + 1) arrives after it was sent. A fully acknowledged worker is forgotten.
//
// Not thread-safe: the owner serializes calls.
class Outbox {
 public:
  // Starts (or restarts) the worker's numbering at seq 1.
  void Open(const std::string& worker_id, int64_t epoch);
  bool Has(const std::string& worker_id) const { return workers_.count(worker_id) > 0; }

  // Numbers `event`, keeps it (with `checkpoint`, which is dropped should
  // the message be too large for the broker) and returns it ready to send.
  // REQUIRES: Has(worker_id) and the worker has no Finished yet.
  pb::RunnerEvent Append(const std::string& worker_id, pb::Event event,
                         std::optional<pb::Checkpoint> checkpoint = std::nullopt);

  // Keeps the worker's Finished with worker_id, epoch and last_seq filled in
  // and returns it. REQUIRES: Has(worker_id).
  pb::Finished Finish(const std::string& worker_id, pb::Finished finished);

  // The Finished went out on the current stream: Acks may now release it.
  void MarkFinishedSent(const std::string& worker_id);
  // The stream broke: nothing counts as sent any more.
  void MarkAllUnsent();

  // Drops the worker's events with seq <= up_to_seq. Returns true when that
  // released the worker (its Finished was sent and is covered): it is gone.
  // Unknown workers and acks that go backwards are ignored.
  bool Ack(const std::string& worker_id, int64_t up_to_seq);

  // Forgets the worker without delivering (the broker called it stale).
  void Drop(const std::string& worker_id) { workers_.erase(worker_id); }

  // {worker_id, epoch, last_acked_seq} of every held worker, for Hello.resume.
  std::vector<pb::ResumeWorker> ResumeList() const;

  // Every unacknowledged message, each worker's events in seq order followed
  // by its Finished; marks those Finished as sent.
  std::vector<pb::RunnerMessage> Replay();

  size_t worker_count() const { return workers_.size(); }
  size_t unacked_events(const std::string& worker_id) const;
  int64_t last_acked_seq(const std::string& worker_id) const;
  bool finished(const std::string& worker_id) const;

 private:
  struct WorkerBox {
    int64_t epoch = 0;
    int64_t last_seq = 0;
    int64_t last_acked_seq = 0;
    std::deque<pb::RunnerEvent> unacked;
    std::optional<pb::Finished> finished;
    bool finished_sent = false;
  };

  std::map<std::string, WorkerBox> workers_;
};

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_OUTBOX_H_
