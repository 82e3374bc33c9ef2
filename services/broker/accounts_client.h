#ifndef BUILDD_SERVICES_BROKER_ACCOUNTS_CLIENT_H_
#define BUILDD_SERVICES_BROKER_ACCOUNTS_CLIENT_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class ChannelCredentials;
}  // namespace grpc

namespace buildd::broker {

// Who a call acts as.
struct Principal {
  std::string account_id;
  std::string type;  // user | service | action
  bool is_admin = false;
  // A runner account that claims from every workspace.
  bool claim_all = false;
  int max_concurrent_workers = 0;
  double max_cost_per_day = 0;
  std::set<std::string> can_claim;
  std::set<std::string> can_create;
  // Workspaces whose other accounts' tasks get this account's credentials.
  std::set<std::string> share_credentials;
  // Workspaces with any grant (what the account may read).
  std::set<std::string> visible;

  // Set when the credential is a dashboard session, not an API key.
  std::string session_id;

  bool CanCreate(const std::string& ws) const { return is_admin || can_create.count(ws) > 0; }
  bool CanSee(const std::string& ws) const { return is_admin || visible.count(ws) > 0; }
};

// An action account's repository and GitHub token (AccountService's
// ActionTargets).
struct ActionTarget {
  std::string account_id;
  std::string repo;  // owner/repo
  std::string token;
};

// Resolves API keys. Thread-safe.
class Authenticator {
 public:
  virtual ~Authenticator() = default;
  virtual absl::StatusOr<Principal> Authenticate(const std::string& api_key) = 0;
  virtual absl::StatusOr<std::map<std::string, std::string>> RunnerCredentials(
      const std::string& api_key) = 0;
};

// Authenticator backed by the accounts service. Answers are cached until the
// accounts service reports a change to that account on its WatchChanges
// stream (revocation, grant, limits); while the stream is down nothing is
// cached, so a revoked key outlives its revocation only by the moment the
// change takes to arrive.
class AccountsClient final : public Authenticator {
 public:
  // `on_change(account_id)` runs after a cached account was dropped; with ""
  // when every account may have changed (the stream was re-established).
  // `service_key` is presented for WatchChanges and RunnerCredentials.
  AccountsClient(const std::string& address,
                 std::shared_ptr<grpc::ChannelCredentials> credentials, std::string service_key,
                 std::function<void(const std::string&)> on_change);
  ~AccountsClient() override;

  absl::StatusOr<Principal> Authenticate(const std::string& api_key) override;
  // The provider credentials of the key's account, as environment (not
  // cached: asked once per runner stream).
  absl::StatusOr<std::map<std::string, std::string>> RunnerCredentials(
      const std::string& api_key) override;
  // The action accounts that may claim the workspace's tasks, with their
  // repositories and GitHub tokens (not cached).
  absl::StatusOr<std::vector<ActionTarget>> ActionTargets(const std::string& workspace_id);

 private:
  void WatchLoop();

  struct Impl;
  std::unique_ptr<Impl> impl_;
  const std::string service_key_;
  std::function<void(const std::string&)> on_change_;
  absl::Mutex mu_;
  struct Cached {
    Principal principal;
    std::chrono::steady_clock::time_point until;
  };
  std::map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
  // Keys refused lately, until when: a client that retries a wrong key does
  // not hold a pool thread on a call to accounts each time.
  std::map<std::string, std::chrono::steady_clock::time_point> refused_ ABSL_GUARDED_BY(mu_);
  bool watching_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped on every change: an answer fetched across a change is not cached.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> stop_{false};
  std::thread watch_thread_;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_ACCOUNTS_CLIENT_H_
