#ifndef BUILDD_SERVICES_BROKER_JOURNAL_H_
#define BUILDD_SERVICES_BROKER_JOURNAL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <atomic>

#include "absl/status/status.h"
#include "services/broker/broker_store.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

// What an operation may do inside the journal's transaction.
class JournalTx {
 public:
  JournalTx(StoreWriter& writer, WriteBatch& batch, bool& begun)
      : writer_(writer), batch_(batch), begun_(begun) {}

  // The store inside the transaction, for locks, claims and rare writes:
  // opens the transaction (a batch of buffered writes alone needs none: it
  // is one statement) and writes the buffered writes of earlier
  // operations, so they are visible.
  StoreTx& store() {
    if (!begun_) {
      writer_.Begin();
      begun_ = true;
    }
    writer_.Write(batch_, nullptr);
    return writer_;
  }
  // Row writes buffered until the end of the batch (or the next store()).
  WriteBatch& writes() { return writes_; }

  // Records an event; it gets its id when the transaction commits.
  void Append(pb::Event event) { events_.push_back(std::move(event)); }
  // Runs after a successful commit (pushes to runners, acks, releases).
  void OnCommit(std::function<void()> fn) { on_commit_.push_back(std::move(fn)); }
  // Runs when the operation's writes are rolled back (undo reservations).
  void OnAbort(std::function<void()> fn) { on_abort_.push_back(std::move(fn)); }

 private:
  friend class Journal;
  StoreWriter& writer_;
  WriteBatch& batch_;
  bool& begun_;
  WriteBatch writes_;
  std::vector<pb::Event> events_;
  std::vector<std::function<void()>> on_commit_;
  std::vector<std::function<void()>> on_abort_;
};

// The broker's single writer. Operations queue up and run on one thread and
// one connection; whatever is queued when a transaction starts goes into it
// (group commit), and event ids are drawn from event_counter for the whole
// batch just before COMMIT. Several replicas serialise on that row, so ids
// are gap-free and increase in commit order across replicas too.
//
// An operation that returns an error must not have written anything (check,
// then write). An operation that throws rolls back its batch; the batch's
// operations are then retried one by one so only the culprit fails.
// Thread-safe.
class Journal {
 public:
  using Op = std::function<absl::Status(JournalTx&)>;
  using Done = std::function<void(absl::Status)>;
  // Receives every committed batch of events, in id order, on the writer
  // thread (keep it short).
  using Publish = std::function<void(const std::vector<pb::Event>&)>;

  // `max_queued_bytes`: see HasRoom.
  Journal(std::unique_ptr<StoreWriter> writer, Publish publish, size_t max_batch = 512,
          size_t max_queued_bytes = 64 << 20);
  ~Journal();

  // Queues `op`; `done` runs on the writer thread after commit or failure.
  // `bytes`: what the op holds (a runner's message), counted until it runs.
  void Submit(Op op, Done done = nullptr, size_t bytes = 0);
  // Whether the queued operations hold less than max_queued_bytes. When
  // not, `when_room` runs (on the writer thread) once they do; a producer
  // that can wait (a runner stream) takes its next message only then.
  bool HasRoom(std::function<void()> when_room);
  // Runs `op` and waits for its outcome (not from the writer thread).
  absl::Status Run(Op op);

  // Stops after the queued operations ran.
  void Stop();

  int64_t committed_batches() const { return batches_; }
  int64_t committed_ops() const { return ops_; }
  // Time spent inside transactions, in microseconds.
  int64_t busy_us() const { return busy_us_; }
  // Of that, the time in the final write and commit of each batch.
  int64_t commit_us() const { return commit_us_; }

 private:
  struct Item {
    Op op;
    Done done;
    size_t bytes = 0;
  };
  void Loop();
  // Runs `items` in one transaction; false when it threw and rolled back.
  bool RunBatch(std::vector<Item>& items, bool single);

  std::unique_ptr<StoreWriter> writer_;
  Publish publish_;
  size_t max_batch_;
  const size_t max_queued_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  size_t queued_bytes_ = 0;
  std::vector<std::function<void()>> waiting_for_room_;
  bool stopping_ = false;
  std::thread thread_;
  std::atomic<int64_t> batches_{0};
  std::atomic<int64_t> ops_{0};
  std::atomic<int64_t> busy_us_{0};
  std::atomic<int64_t> commit_us_{0};
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_JOURNAL_H_
