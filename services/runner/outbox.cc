#include "services/runner/outbox.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc_server.h"
#include "common/logging.h"

namespace buildd::runner {
namespace {

// Room left in a runner message for the envelope around an event.
constexpr size_t kEnvelopeBytes = 4 * 1024;

// Keeps an event within what the broker takes: its text is cut, and a
// data payload too large to fit is replaced by a note of its size.
void BoundEvent(pb::Event& event) {
  const size_t limit = kMaxRunnerMessageBytes - kEnvelopeBytes;
  if (event.ByteSizeLong() <= limit) return;
  if (event.has_data() && event.data().ByteSizeLong() > limit / 2) {
    const size_t bytes = event.data().ByteSizeLong();
    event.clear_data();
    (*event.mutable_data()->mutable_fields())["truncatedBytes"].set_number_value(
        static_cast<double>(bytes));
  }
  const size_t over = event.ByteSizeLong() > limit ? event.ByteSizeLong() - limit : 0;
  if (over > 0 && event.text().size() > over + 64) {
    size_t keep = event.text().size() - over - 64;
    // Not in the middle of a UTF-8 sequence.
    while (keep > 0 && (static_cast<unsigned char>(event.text()[keep]) & 0xC0) == 0x80) --keep;
    const size_t cut = event.text().size() - keep;
    event.mutable_text()->resize(keep);
    absl::StrAppend(event.mutable_text(), "\n[", cut, " more bytes not sent]");
  }
}

}  // namespace

void Outbox::Open(const std::string& worker_id, int64_t epoch) {
  WorkerBox box;
  box.epoch = epoch;
  workers_[worker_id] = std::move(box);
}

pb::RunnerEvent Outbox::Append(const std::string& worker_id, pb::Event event,
                               std::optional<pb::Checkpoint> checkpoint) {
  WorkerBox& box = workers_.at(worker_id);
  pb::RunnerEvent out;
  out.set_worker_id(worker_id);
  out.set_epoch(box.epoch);
  out.set_seq(++box.last_seq);
  BoundEvent(event);
  *out.mutable_event() = std::move(event);
  if (checkpoint.has_value()) {
    *out.mutable_checkpoint() = std::move(*checkpoint);
    if (out.ByteSizeLong() > static_cast<size_t>(kMaxFinishedBytes)) {
      Log()->warn("worker={} a checkpoint of {} bytes is too large to send: a later attempt "
                  "plans again",
                  worker_id, out.ByteSizeLong());
      out.clear_checkpoint();
    }
  }
  box.unacked.push_back(out);
  return out;
}

pb::Finished Outbox::Finish(const std::string& worker_id, pb::Finished finished) {
  WorkerBox& box = workers_.at(worker_id);
  finished.set_worker_id(worker_id);
  finished.set_epoch(box.epoch);
  finished.set_last_seq(box.last_seq);
  if (finished.ByteSizeLong() > static_cast<size_t>(kMaxFinishedBytes) && finished.has_session()) {
    Log()->warn("worker={}: its session transcript ({} bytes) is larger than a Finished may be; "
                "the task cannot be resumed",
                worker_id, finished.session().ByteSizeLong());
    finished.clear_session();
  }
  box.finished = finished;
  box.finished_sent = false;
  return finished;
}

void Outbox::MarkFinishedSent(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it != workers_.end() && it->second.finished.has_value()) it->second.finished_sent = true;
}

void Outbox::MarkAllUnsent() {
  for (auto& [id, box] : workers_) box.finished_sent = false;
}

bool Outbox::Ack(const std::string& worker_id, int64_t up_to_seq) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return false;
  WorkerBox& box = it->second;
  // The broker cannot have seen more than was numbered.
  const int64_t acked = std::min(up_to_seq, box.last_seq);
  if (acked > box.last_acked_seq) box.last_acked_seq = acked;
  while (!box.unacked.empty() && box.unacked.front().seq() <= box.last_acked_seq) {
    box.unacked.pop_front();
  }
  // The broker acks a Finished as the message after the last event, so an
  // ack of events alone never releases it.
  if (box.finished.has_value() && box.finished_sent && up_to_seq > box.finished->last_seq()) {
    workers_.erase(it);
    return true;
  }
  return false;
}

std::vector<pb::ResumeWorker> Outbox::ResumeList() const {
  std::vector<pb::ResumeWorker> list;
  for (const auto& [id, box] : workers_) {
    pb::ResumeWorker& resume = list.emplace_back();
    resume.set_worker_id(id);
    resume.set_epoch(box.epoch);
    resume.set_last_acked_seq(box.last_acked_seq);
  }
  return list;
}

std::vector<pb::RunnerMessage> Outbox::Replay() {
  std::vector<pb::RunnerMessage> messages;
  for (auto& [id, box] : workers_) {
    for (const pb::RunnerEvent& event : box.unacked)
      *messages.emplace_back().mutable_event() = event;
    if (box.finished.has_value()) {
      *messages.emplace_back().mutable_finished() = *box.finished;
      box.finished_sent = true;
    }
  }
  return messages;
}

size_t Outbox::unacked_events(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? 0 : it->second.unacked.size();
}

int64_t Outbox::last_acked_seq(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? 0 : it->second.last_acked_seq;
}

bool Outbox::finished(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it != workers_.end() && it->second.finished.has_value();
}

}  // namespace buildd::runner
