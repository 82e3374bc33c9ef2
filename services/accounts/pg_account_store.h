#ifndef BUILDD_SERVICES_ACCOUNTS_PG_ACCOUNT_STORE_H_
#define BUILDD_SERVICES_ACCOUNTS_PG_ACCOUNT_STORE_H_

#include <soci/soci.h>

#include "common/db.h"
#include "services/accounts/account_store.h"

namespace buildd::accounts {

// AccountStore on PostgreSQL through a SOCI connection pool (not owned).
class PgAccountStore final : public AccountStore {
 public:
  explicit PgAccountStore(soci::connection_pool& pool) : pool_(pool) {}

  absl::StatusOr<AccountRecord> CreateAccount(const AccountRecord& account,
                                              const std::string& sealed_credentials,
                                              const std::string& key_id,
                                              const std::string& key_hash) override;
  absl::StatusOr<AccountRecord> GetAccount(const std::string& id) override;
  absl::StatusOr<std::vector<AccountRecord>> ListAccounts() override;
  absl::StatusOr<AccountRecord> UpdateAccount(const std::string& id,
                                              const AccountUpdate& update) override;
  absl::Status AddKey(const std::string& account_id, const std::string& key_id,
                      const std::string& key_hash, bool revoke_others) override;
  absl::StatusOr<int> RevokeKeys(const std::string& account_id,
                                 const std::string& key_id) override;
  absl::StatusOr<GrantRecord> UpsertGrant(const GrantRecord& grant) override;
  absl::StatusOr<std::vector<GrantRecord>> ListGrants(const std::string& account_id,
                                                      const std::string& workspace_id) override;
  absl::StatusOr<PrincipalRecord> FindByKeyHash(const std::string& key_hash) override;
  absl::StatusOr<SessionRecord> CreateSession(const std::string& key_id,
                                              const std::string& session_id,
                                              const std::string& token_hash, int64_t ttl_seconds,
                                              const std::string& user_agent) override;
  absl::StatusOr<PrincipalRecord> FindBySessionHash(const std::string& token_hash) override;
  absl::StatusOr<std::vector<SessionRecord>> ListSessions(const std::string& account_id) override;
  absl::StatusOr<SessionRecord> RevokeSession(const std::string& account_id,
                                              const std::string& session_id) override;
  absl::StatusOr<std::string> SealedCredentials(const std::string& account_id) override;
  absl::StatusOr<std::vector<ActionTargetRecord>> ActionTargets(
      const std::string& workspace_id) override;
  absl::Status EnsureAdminKey(const std::string& key_hash) override;
  absl::Status EnsureRunnerKey(const std::string& name, const std::string& key_hash) override;

 private:
  soci::connection_pool& pool_;
};

// The accounts service's schema migrations (embedded from migrations/*.sql).
const std::vector<Migration>& AccountsMigrations();

}  // namespace buildd::accounts

#endif  // BUILDD_SERVICES_ACCOUNTS_PG_ACCOUNT_STORE_H_
