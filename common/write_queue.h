#ifndef BUILDD_COMMON_WRITE_QUEUE_H_
#define BUILDD_COMMON_WRITE_QUEUE_H_

#include <atomic>
#include <deque>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"

namespace buildd {

// A server reactor (`Base`: ServerWriteReactor or ServerBidiReactor) with a
// queue of outgoing messages: Send() may be called from any thread;
// StartWrite runs only when the queue goes from empty to one and OnWriteDone
// writes the next. Finish happens once, after what is queued. Deletes itself
// once done (see AddHold). Subclasses override OnClosed() to unregister themselves and
// OnQueueEmpty() to refill.
template <typename Base, typename Message>
class QueuedWrites : public Base {
 public:
  // Returns false once the stream is finishing or done.
  bool Send(Message message) {
    absl::MutexLock lock(&mu_);
    if (finished_) return false;
    queue_.push_back(std::move(message));
    if (queue_.size() == 1) this->StartWrite(&queue_.front());
    return true;
  }

  // Finishes after the queued messages are written.
  void FinishOnce(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    FinishLocked(std::move(status));
  }

  size_t Queued() {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

  // Work running outside the reactions (on a pool) holds the reactor: it is
  // deleted once the stream is done and every hold is released.
  void AddHold() { holds_.fetch_add(1); }
  void RemoveHold() {
    if (holds_.fetch_sub(1) == 1) delete this;
  }

 protected:
  virtual void OnClosed() {}
  // Runs (under no lock) when the last queued message was written.
  virtual void OnQueueEmpty() {}

  void OnWriteDone(bool ok) override {
    bool idle = false;
    {
      absl::MutexLock lock(&mu_);
      idle = WriteDoneLocked(ok);
    }
    if (idle) OnQueueEmpty();
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    OnClosed();
    RemoveHold();
  }

 private:
  // Returns true when the queue drained and the stream goes on.
  bool WriteDoneLocked(bool ok) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.pop_front();
    if (!ok) {
      queue_.clear();
      if (!finished_) {
        finished_ = true;
        this->Finish(grpc::Status::CANCELLED);
      } else if (finish_pending_) {
        finish_pending_ = false;
        this->Finish(pending_status_);
      }
      return false;
    }
    if (!queue_.empty()) {
      this->StartWrite(&queue_.front());
      return false;
    }
    if (finish_pending_) {
      finish_pending_ = false;
      this->Finish(pending_status_);
      return false;
    }
    return !finished_;
  }

  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    if (queue_.empty()) {
      this->Finish(std::move(status));
    } else {
      finish_pending_ = true;
      pending_status_ = std::move(status);
    }
  }

  // gRPC's own, until OnDone, and AddHold's.
  std::atomic<int> holds_{1};
  absl::Mutex mu_;
  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status pending_status_ ABSL_GUARDED_BY(mu_);
};

template <typename Message>
using QueuedWriteReactor = QueuedWrites<grpc::ServerWriteReactor<Message>, Message>;

}  // namespace buildd

#endif  // BUILDD_COMMON_WRITE_QUEUE_H_
