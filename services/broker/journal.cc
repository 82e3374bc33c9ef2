#include "services/broker/journal.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace buildd::broker {

Journal::Journal(std::unique_ptr<StoreWriter> writer, Publish publish, size_t max_batch,
                 size_t max_queued_bytes)
    : writer_(std::move(writer)),
      publish_(std::move(publish)),
      max_batch_(max_batch),
      max_queued_bytes_(max_queued_bytes) {
  thread_ = std::thread([this] { Loop(); });
}

Journal::~Journal() { Stop(); }

void Journal::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Journal::Submit(Op op, Done done, size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      if (done) done(absl::UnavailableError("broker is shutting down"));
      return;
    }
    queue_.push_back(Item{std::move(op), std::move(done), bytes});
    queued_bytes_ += bytes;
  }
  cv_.notify_one();
}

bool Journal::HasRoom(std::function<void()> when_room) {
  std::lock_guard<std::mutex> lock(mu_);
  if (queued_bytes_ < max_queued_bytes_ || stopping_) return true;
  waiting_for_room_.push_back(std::move(when_room));
  return false;
}

absl::Status Journal::Run(Op op) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  auto future = promise->get_future();
  Submit(std::move(op), [promise](absl::Status status) { promise->set_value(std::move(status)); });
  return future.get();
}

void Journal::Loop() {
  while (true) {
    std::vector<Item> batch;
    std::vector<std::function<void()>> room;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) {
        room.swap(waiting_for_room_);
        lock.unlock();
        for (auto& fn : room) fn();
        return;
      }
      while (!queue_.empty() && batch.size() < max_batch_) {
        queued_bytes_ -= queue_.front().bytes;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (queued_bytes_ < max_queued_bytes_) room.swap(waiting_for_room_);
    }
    for (auto& fn : room) fn();
    if (RunBatch(batch, batch.size() == 1)) continue;
    // Something threw: find it by running each operation on its own.
    for (Item& item : batch) {
      std::vector<Item> single;
      single.push_back(std::move(item));
      RunBatch(single, true);
    }
  }
}

bool Journal::RunBatch(std::vector<Item>& items, bool single) {
  StoreWriter& writer = *writer_;
  const auto started = std::chrono::steady_clock::now();
  std::vector<JournalTx> txs;
  txs.reserve(items.size());
  std::vector<absl::Status> results;
  results.reserve(items.size());
  std::vector<pb::Event> events;
  WriteBatch batch;
  bool begun = false;
  try {
    for (Item& item : items) {
      txs.emplace_back(writer, batch, begun);
      results.push_back(item.op(txs.back()));
      if (results.back().ok()) {
        for (pb::Event& e : txs.back().events_) events.push_back(std::move(e));
        batch.MergeFrom(txs.back().writes_);
      }
    }
    // Without an explicit transaction this one statement commits by itself.
    const auto writing = std::chrono::steady_clock::now();
    writer.Write(batch, &events);
    if (begun) writer.Commit();
    commit_us_ += std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - writing).count();
  } catch (const std::exception& e) {
    absl::Status error = writer.StatusOf(e);
    Log()->error("journal batch of {} rolled back: {}", items.size(), e.what());
    try {
      if (begun) writer.Rollback();
    } catch (const std::exception&) {
    }
    if (error.code() == absl::StatusCode::kUnavailable) {
      try {
        writer.Reconnect();
      } catch (const std::exception& re) {
        Log()->error("journal reconnect failed: {}", re.what());
      }
    }
    for (JournalTx& tx : txs) {
      for (auto& fn : tx.on_abort_) fn();
    }
    if (!single && error.code() != absl::StatusCode::kUnavailable) return false;
    for (Item& item : items) {
      if (item.done) item.done(error);
    }
    return true;
  }
  ++batches_;
  ops_ += static_cast<int64_t>(items.size());
  busy_us_ += std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - started).count();
  if (!events.empty() && publish_) publish_(events);
  for (size_t i = 0; i < items.size(); ++i) {
    if (results[i].ok()) {
      for (auto& fn : txs[i].on_commit_) fn();
    } else {
      for (auto& fn : txs[i].on_abort_) fn();
    }
    if (items[i].done) items[i].done(results[i]);
  }
  return true;
}

}  // namespace buildd::broker
