#ifndef BUILDD_GATEWAY_CONNECTION_TRACKER_H_
#define BUILDD_GATEWAY_CONNECTION_TRACKER_H_

#include <functional>
#include <memory>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace buildd::gateway {

// Counts a server's open connections and asks them to close when it stops.
// A connection holds a Token for as long as anything may still touch it (an
// outbound call's callback included), so that "no tokens" means the io
// context can stop safely. Thread-safe.
class ConnectionTracker : public std::enable_shared_from_this<ConnectionTracker> {
 public:
  // Tokens keep their tracker alive.
  static std::shared_ptr<ConnectionTracker> Create() {
    return std::shared_ptr<ConnectionTracker>(new ConnectionTracker);
  }

  class Token {
   public:
    ~Token();
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;

    // What to run (once, from the thread calling CloseAll) to ask the
    // connection to finish. Replaces an earlier closer. Runs at once when
    // CloseAll already happened. Must not block.
    void SetCloser(std::function<void()> closer);

   private:
    friend class ConnectionTracker;
    explicit Token(std::shared_ptr<ConnectionTracker> tracker) : tracker_(std::move(tracker)) {}
    std::shared_ptr<ConnectionTracker> tracker_;
    std::function<void()> closer_;  // Guarded by tracker_->mu_.
  };

  std::shared_ptr<Token> Track();
  // Runs every closer, and every later one as it is set.
  void CloseAll();
  // True once no token is alive, false after `timeout`.
  bool WaitUntilIdle(absl::Duration timeout);
  size_t open() const;

 private:
  ConnectionTracker() = default;
  mutable absl::Mutex mu_;
  std::set<Token*> tokens_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_CONNECTION_TRACKER_H_
