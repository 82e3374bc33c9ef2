#ifndef BUILDD_SERVICES_BROKER_STREAM_SETUP_H_
#define BUILDD_SERVICES_BROKER_STREAM_SETUP_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace buildd::broker {

// Who finishes a stream whose set-up (authenticating and registering it)
// runs on a pool while gRPC may cancel the call. A cancel that arrives
// during the set-up is deferred: finishing would let gRPC free the reactor
// that the set-up still uses. The set-up's end reports the deferred cancel,
// and the stream finishes then. In a reactor:
//
//   OnCancel():        if (setup_.Cancel()) FinishOnce(grpc::Status::CANCELLED);
//   the set-up's end:  if (setup_.End()) FinishOnce(grpc::Status::CANCELLED);
//                      else go on (or finish with the set-up's error).
//
// This only decides who finishes; the pool task must still keep the reactor
// (or the state it touches) alive itself: a QueuedWrites hold, or a
// shared_ptr. Thread-safe.
class StreamSetup {
 public:
  // Starts a set-up: cancels are deferred until End().
  // REQUIRES: no set-up is running.
  void Begin() {
    absl::MutexLock lock(&mu_);
    running_ = true;
  }

  // Ends the set-up. Returns true when the call was cancelled meanwhile:
  // the caller then finishes the stream as cancelled.
  [[nodiscard]] bool End() {
    absl::MutexLock lock(&mu_);
    running_ = false;
    return cancelled_;
  }

  // Records a cancel (call it from OnCancel). Returns true when the caller
  // should finish the stream now; false while a set-up runs (its End() then
  // returns true).
  [[nodiscard]] bool Cancel() {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    return !running_;
  }

  // Whether a set-up is running (the stream is not to be finished or fed).
  bool Running() const {
    absl::MutexLock lock(&mu_);
    return running_;
  }

 private:
  mutable absl::Mutex mu_;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_STREAM_SETUP_H_
