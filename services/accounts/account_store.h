#ifndef BUILDD_SERVICES_ACCOUNTS_ACCOUNT_STORE_H_
#define BUILDD_SERVICES_ACCOUNTS_ACCOUNT_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace buildd::accounts {

struct AccountRecord {
  std::string id;
  std::string type;       // user | service | action
  std::string name;
  std::string auth_type;  // oauth | api
  int max_concurrent_workers = 3;
  int max_concurrent_sessions = 1;
  double max_cost_per_day = 0;
  std::string github_id;
  bool is_admin = false;
  // May claim from every workspace (a runner account), not an admin.
  bool claim_all = false;
  bool has_credentials = false;
  // A GitHub token is stored (it is never read back but for ActionTargets).
  bool has_github_token = false;
  std::string created_at;
};

// An action account that GitHub work of a workspace goes to.
struct ActionTargetRecord {
  std::string account_id;
  std::string github_id;  // owner/repo
  std::string sealed_github_token;
};

// What UpdateAccount changes: the fields that hold a value; the others keep
// theirs.
struct AccountUpdate {
  std::optional<std::string> name;
  std::optional<int> max_concurrent_workers;
  std::optional<int> max_concurrent_sessions;
  std::optional<double> max_cost_per_day;
  std::optional<std::string> github_id;
  // Sealed; "" removes the token.
  std::optional<std::string> sealed_github_token;

  bool empty() const {
    return !name && !max_concurrent_workers && !max_concurrent_sessions && !max_cost_per_day &&
           !github_id && !sealed_github_token;
  }
};

struct GrantRecord {
  std::string account_id;
  std::string workspace_id;
  bool can_claim = false;
  bool can_create = false;
  bool share_credentials = false;
};

struct PrincipalRecord {
  AccountRecord account;
  std::string key_id;
  std::vector<GrantRecord> grants;
  // Set when found through a session rather than the key.
  std::string session_id;
};

struct SessionRecord {
  std::string id;
  std::string account_id;
  std::string key_id;
  std::string user_agent;
  std::string created_at;
  std::string expires_at;
  bool revoked = false;
};

// Accounts, their API keys (hashes only) and workspace grants. Every method
// is thread-safe. Errors: NotFound for a missing account or key,
// AlreadyExists on a duplicate, Unavailable when the database is down.
class AccountStore {
 public:
  virtual ~AccountStore() = default;

  // Creates the account with its first key, atomically. `sealed_credentials`
  // may be empty.
  virtual absl::StatusOr<AccountRecord> CreateAccount(const AccountRecord& account,
                                                      const std::string& sealed_credentials,
                                                      const std::string& key_id,
                                                      const std::string& key_hash) = 0;
  virtual absl::StatusOr<AccountRecord> GetAccount(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<AccountRecord>> ListAccounts() = 0;
  // Sets the fields `update` holds, in one statement, and returns the
  // account as it is afterwards. REQUIRES: the values are valid (the caller
  // checked them).
  virtual absl::StatusOr<AccountRecord> UpdateAccount(const std::string& id,
                                                      const AccountUpdate& update) = 0;

  // Adds a key; with `revoke_others`, revokes the account's other keys in the
  // same transaction.
  virtual absl::Status AddKey(const std::string& account_id, const std::string& key_id,
                              const std::string& key_hash, bool revoke_others) = 0;
  // Revokes one key (or all when `key_id` is empty); returns how many.
  virtual absl::StatusOr<int> RevokeKeys(const std::string& account_id,
                                         const std::string& key_id) = 0;

  virtual absl::StatusOr<GrantRecord> UpsertGrant(const GrantRecord& grant) = 0;
  // The grants of `account_id`, or on `workspace_id` (the other ""), by
  // workspace then account. NotFound for an account that does not exist.
  virtual absl::StatusOr<std::vector<GrantRecord>> ListGrants(const std::string& account_id,
                                                              const std::string& workspace_id) = 0;

  // The principal of an active (unrevoked) key with this hash.
  virtual absl::StatusOr<PrincipalRecord> FindByKeyHash(const std::string& key_hash) = 0;

  // A session standing for key `key_id` for `ttl_seconds`.
  virtual absl::StatusOr<SessionRecord> CreateSession(const std::string& key_id,
                                                      const std::string& session_id,
                                                      const std::string& token_hash,
                                                      int64_t ttl_seconds,
                                                      const std::string& user_agent) = 0;
  // The principal of a session with this token hash that is neither
  // revoked nor expired, and whose key is not revoked.
  virtual absl::StatusOr<PrincipalRecord> FindBySessionHash(const std::string& token_hash) = 0;
  // The account's sessions that have not ended, newest first.
  virtual absl::StatusOr<std::vector<SessionRecord>> ListSessions(const std::string& account_id) = 0;
  // Revokes one of the account's sessions; NotFound when it has none by
  // that id.
  virtual absl::StatusOr<SessionRecord> RevokeSession(const std::string& account_id,
                                                      const std::string& session_id) = 0;

  // The account's sealed provider credentials; "" when it has none.
  virtual absl::StatusOr<std::string> SealedCredentials(const std::string& account_id) = 0;
  // The action accounts with a githubId and a GitHub token that may claim
  // tasks of `workspace_id` (a grant with canClaim, or claimAll), oldest
  // first.
  virtual absl::StatusOr<std::vector<ActionTargetRecord>> ActionTargets(
      const std::string& workspace_id) = 0;

  // Makes sure an admin account holds a key with this hash (bootstrap).
  virtual absl::Status EnsureAdminKey(const std::string& key_hash) = 0;
  // Makes sure a service account named `name` with claimAll holds a key
  // with this hash (the local runner's, bootstrapped like the admin's).
  virtual absl::Status EnsureRunnerKey(const std::string& name, const std::string& key_hash) = 0;
};

}  // namespace buildd::accounts

#endif  // BUILDD_SERVICES_ACCOUNTS_ACCOUNT_STORE_H_
