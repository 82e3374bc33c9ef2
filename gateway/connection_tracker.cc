#include "gateway/connection_tracker.h"

#include <vector>

namespace buildd::gateway {

ConnectionTracker::Token::~Token() {
  // The closer may hold executors of the server's io context: destroy it
  // before the tracker can report idle and the context goes away.
  std::function<void()> closer;
  {
    absl::MutexLock lock(&tracker_->mu_);
    closer = std::move(closer_);
    closer_ = nullptr;
  }
  closer = nullptr;
  absl::MutexLock lock(&tracker_->mu_);
  tracker_->tokens_.erase(this);
}

void ConnectionTracker::Token::SetCloser(std::function<void()> closer) {
  {
    absl::MutexLock lock(&tracker_->mu_);
    if (!tracker_->closing_) {
      closer_ = std::move(closer);
      return;
    }
    closer_ = nullptr;
  }
  closer();
}

std::shared_ptr<ConnectionTracker::Token> ConnectionTracker::Track() {
  std::shared_ptr<Token> token(new Token(shared_from_this()));
  absl::MutexLock lock(&mu_);
  tokens_.insert(token.get());
  return token;
}

void ConnectionTracker::CloseAll() {
  std::vector<std::function<void()>> closers;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    for (Token* token : tokens_) {
      if (token->closer_) closers.push_back(std::move(token->closer_));
      token->closer_ = nullptr;
    }
  }
  for (auto& closer : closers) closer();
}

bool ConnectionTracker::WaitUntilIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return tokens_.empty(); };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

size_t ConnectionTracker::open() const {
  absl::MutexLock lock(&mu_);
  return tokens_.size();
}

}  // namespace buildd::gateway
