#include "services/runner/outbox.h"

#include <algorithm>

namespace buildd::runner {

void Outbox::Open(const std::string& worker_id, int64_t epoch) {
  WorkerBox box;
  box.epoch = epoch;
  workers_[worker_id] = std::move(box);
}

pb::RunnerEvent Outbox::Append(const std::string& worker_id, pb::Event event) {
  WorkerBox& box = workers_.at(worker_id);
  pb::RunnerEvent out;
  out.set_worker_id(worker_id);
  out.set_epoch(box.epoch);
  out.set_seq(++box.last_seq);
  *out.mutable_event() = std::move(event);
  box.unacked.push_back(out);
  return out;
}

pb::Finished Outbox::Finish(const std::string& worker_id, pb::Finished finished) {
  WorkerBox& box = workers_.at(worker_id);
  finished.set_worker_id(worker_id);
  finished.set_epoch(box.epoch);
  finished.set_last_seq(box.last_seq);
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
