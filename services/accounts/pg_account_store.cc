#include "services/accounts/pg_account_store.h"

#include <algorithm>
#include <functional>

#include <sodium.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/db.h"
#include "common/ids.h"
#include "common/status.h"
#include "services/accounts/api_keys.h"

namespace buildd {
const std::vector<Migration>& AccountsMigrationList();
}

namespace buildd::accounts {
namespace {

constexpr char kAccountColumns[] =
    "a.id::text, a.type, a.name, a.auth_type, a.max_concurrent_workers, "
    "a.max_concurrent_sessions, a.max_cost_per_day, a.github_id, a.is_admin::int, "
    "(a.credentials IS NOT NULL)::int, "
    "to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "a.claim_all::int, (a.github_token IS NOT NULL)::int";
constexpr size_t kAccountColumnCount = 13;

AccountRecord AccountFromRow(const soci::row& row, size_t i = 0) {
  AccountRecord a;
  a.id = row.get<std::string>(i + 0);
  a.type = row.get<std::string>(i + 1);
  a.name = row.get<std::string>(i + 2);
  a.auth_type = row.get<std::string>(i + 3);
  a.max_concurrent_workers = row.get<int>(i + 4);
  a.max_concurrent_sessions = row.get<int>(i + 5);
  a.max_cost_per_day = row.get<double>(i + 6);
  a.github_id = row.get<std::string>(i + 7);
  a.is_admin = row.get<int>(i + 8) != 0;
  a.has_credentials = row.get<int>(i + 9) != 0;
  a.created_at = row.get<std::string>(i + 10);
  a.claim_all = row.get<int>(i + 11) != 0;
  a.has_github_token = row.get<int>(i + 12) != 0;
  return a;
}

std::string ToBase64(const std::string& bytes) {
  const int variant = sodium_base64_VARIANT_ORIGINAL;
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), variant);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

absl::StatusOr<AccountRecord> GetAccountIn(soci::session& sql, const std::string& id) {
  soci::rowset<soci::row> rows =
      (sql.prepare << absl::StrCat("SELECT ", kAccountColumns, " FROM accounts a WHERE a.id = :id"),
       soci::use(id));
  for (const soci::row& row : rows) return AccountFromRow(row);
  return absl::NotFoundError(absl::StrCat("account ", id, " not found"));
}

}  // namespace

const std::vector<Migration>& AccountsMigrations() { return AccountsMigrationList(); }

absl::StatusOr<AccountRecord> PgAccountStore::CreateAccount(const AccountRecord& account,
                                                            const std::string& sealed_credentials,
                                                            const std::string& key_id,
                                                            const std::string& key_hash) {
  return WithSession(pool_, "create account", [&](soci::session& sql) -> absl::StatusOr<AccountRecord> {
    soci::transaction tx(sql);
    const std::string creds = ToBase64(sealed_credentials);
    const int has_creds = sealed_credentials.empty() ? 0 : 1;
    const int is_admin = account.is_admin ? 1 : 0;
    const int claim_all = account.claim_all ? 1 : 0;
    sql << "INSERT INTO accounts (id, type, name, auth_type, max_concurrent_workers,"
           " max_concurrent_sessions, max_cost_per_day, github_id, is_admin, claim_all,"
           " credentials)"
           " VALUES (:id, :type, :name, :auth, :mcw, :mcs, :cost, :gh, :admin <> 0, :all <> 0,"
           " CASE WHEN :has <> 0 THEN decode(:creds, 'base64') END)",
        soci::use(account.id), soci::use(account.type), soci::use(account.name),
        soci::use(account.auth_type), soci::use(account.max_concurrent_workers),
        soci::use(account.max_concurrent_sessions), soci::use(account.max_cost_per_day),
        soci::use(account.github_id), soci::use(is_admin), soci::use(claim_all),
        soci::use(has_creds), soci::use(creds);
    sql << "INSERT INTO api_keys (id, account_id, key_hash) VALUES (:id, :acc, :hash)",
        soci::use(key_id), soci::use(account.id), soci::use(key_hash);
    BUILDD_ASSIGN_OR_RETURN(AccountRecord created, GetAccountIn(sql, account.id));
    tx.commit();
    return created;
  });
}

absl::StatusOr<AccountRecord> PgAccountStore::GetAccount(const std::string& id) {
  return WithSession(pool_, "get account",
                     [&](soci::session& sql) { return GetAccountIn(sql, id); });
}

absl::StatusOr<std::vector<AccountRecord>> PgAccountStore::ListAccounts() {
  return WithSession(pool_, "list accounts",
                     [&](soci::session& sql) -> absl::StatusOr<std::vector<AccountRecord>> {
                       std::vector<AccountRecord> out;
                       soci::rowset<soci::row> rows =
                           (sql.prepare << absl::StrCat("SELECT ", kAccountColumns,
                                                        " FROM accounts a ORDER BY a.created_at"));
                       for (const soci::row& row : rows) out.push_back(AccountFromRow(row));
                       return out;
                     });
}

absl::StatusOr<AccountRecord> PgAccountStore::UpdateAccount(const std::string& id,
                                                            const AccountUpdate& update) {
  return WithSession(pool_, "update account", [&](soci::session& sql) -> absl::StatusOr<AccountRecord> {
    // A field left out binds NULL and keeps the column's value.
    const std::string name = update.name.value_or("");
    const int workers = update.max_concurrent_workers.value_or(0);
    const int sessions = update.max_concurrent_sessions.value_or(0);
    const double cost = update.max_cost_per_day.value_or(0);
    soci::indicator name_ind = update.name ? soci::i_ok : soci::i_null;
    soci::indicator workers_ind = update.max_concurrent_workers ? soci::i_ok : soci::i_null;
    soci::indicator sessions_ind = update.max_concurrent_sessions ? soci::i_ok : soci::i_null;
    soci::indicator cost_ind = update.max_cost_per_day ? soci::i_ok : soci::i_null;
    const std::string github_id = update.github_id.value_or("");
    soci::indicator github_id_ind = update.github_id ? soci::i_ok : soci::i_null;
    // 0 keeps the token, 1 sets it, 2 removes it.
    const int token_op = !update.sealed_github_token ? 0 : update.sealed_github_token->empty() ? 2 : 1;
    const std::string token = ToBase64(update.sealed_github_token.value_or(""));
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat(
             "UPDATE accounts a SET name = COALESCE(:name, a.name),"
             " max_concurrent_workers = COALESCE(:mcw, a.max_concurrent_workers),"
             " max_concurrent_sessions = COALESCE(:mcs, a.max_concurrent_sessions),"
             " max_cost_per_day = COALESCE(:cost, a.max_cost_per_day),"
             " github_id = COALESCE(:gh, a.github_id),"
             " github_token = CASE CAST(:op1 AS integer) WHEN 0 THEN a.github_token WHEN 2 THEN NULL"
             " ELSE decode(:tok, 'base64') END"
             " WHERE a.id = :id RETURNING ",
             kAccountColumns),
         soci::use(name, name_ind), soci::use(workers, workers_ind),
         soci::use(sessions, sessions_ind), soci::use(cost, cost_ind),
         soci::use(github_id, github_id_ind), soci::use(token_op), soci::use(token),
         soci::use(id));
    for (const soci::row& row : rows) return AccountFromRow(row);
    return absl::NotFoundError(absl::StrCat("account ", id, " not found"));
  });
}

absl::Status PgAccountStore::AddKey(const std::string& account_id, const std::string& key_id,
                                    const std::string& key_hash, bool revoke_others) {
  return WithSession(pool_, "add key", [&](soci::session& sql) -> absl::Status {
    soci::transaction tx(sql);
    BUILDD_RETURN_IF_ERROR(GetAccountIn(sql, account_id).status());
    if (revoke_others) {
      sql << "UPDATE api_keys SET revoked_at = now() WHERE account_id = :a AND revoked_at IS NULL",
          soci::use(account_id);
    }
    sql << "INSERT INTO api_keys (id, account_id, key_hash) VALUES (:id, :acc, :hash)",
        soci::use(key_id), soci::use(account_id), soci::use(key_hash);
    tx.commit();
    return absl::OkStatus();
  });
}

absl::StatusOr<int> PgAccountStore::RevokeKeys(const std::string& account_id,
                                               const std::string& key_id) {
  return WithSession(pool_, "revoke keys", [&](soci::session& sql) -> absl::StatusOr<int> {
    BUILDD_RETURN_IF_ERROR(GetAccountIn(sql, account_id).status());
    soci::statement st = (sql.prepare << "UPDATE api_keys SET revoked_at = now()"
                                         " WHERE account_id = :a AND revoked_at IS NULL"
                                         " AND (:k1 = '' OR id::text = :k2)",
                          soci::use(account_id), soci::use(key_id), soci::use(key_id));
    st.execute(true);
    const int revoked = static_cast<int>(st.get_affected_rows());
    if (!key_id.empty() && revoked == 0) {
      return absl::NotFoundError(absl::StrCat("active key ", key_id, " not found"));
    }
    return revoked;
  });
}

absl::StatusOr<GrantRecord> PgAccountStore::UpsertGrant(const GrantRecord& grant) {
  return WithSession(pool_, "grant workspace", [&](soci::session& sql) -> absl::StatusOr<GrantRecord> {
    BUILDD_RETURN_IF_ERROR(GetAccountIn(sql, grant.account_id).status());
    const int claim = grant.can_claim ? 1 : 0;
    const int create = grant.can_create ? 1 : 0;
    const int share = grant.share_credentials ? 1 : 0;
    sql << "INSERT INTO account_workspaces (account_id, workspace_id, can_claim, can_create,"
           " share_credentials) VALUES (:a, :w, :c <> 0, :cr <> 0, :s <> 0)"
           " ON CONFLICT (account_id, workspace_id) DO UPDATE SET can_claim = EXCLUDED.can_claim,"
           " can_create = EXCLUDED.can_create, share_credentials = EXCLUDED.share_credentials",
        soci::use(grant.account_id), soci::use(grant.workspace_id), soci::use(claim),
        soci::use(create), soci::use(share);
    return grant;
  });
}

absl::StatusOr<std::vector<GrantRecord>> PgAccountStore::ListGrants(
    const std::string& account_id, const std::string& workspace_id) {
  return WithSession(pool_, "list grants", [&](soci::session& sql) -> absl::StatusOr<std::vector<GrantRecord>> {
    if (!account_id.empty()) BUILDD_RETURN_IF_ERROR(GetAccountIn(sql, account_id).status());
    std::vector<GrantRecord> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT account_id::text, workspace_id::text, can_claim::int, can_create::int,"
                        " share_credentials::int FROM account_workspaces"
                        " WHERE (:a = '' OR account_id::text = :a2) AND (:w = '' OR workspace_id::text = :w2)"
                        " ORDER BY workspace_id, account_id LIMIT 10000",
         soci::use(account_id), soci::use(account_id), soci::use(workspace_id), soci::use(workspace_id));
    for (const soci::row& row : rows) {
      out.push_back(GrantRecord{row.get<std::string>(0), row.get<std::string>(1), row.get<int>(2) != 0,
                                row.get<int>(3) != 0, row.get<int>(4) != 0});
    }
    return out;
  });
}

absl::StatusOr<std::string> PgAccountStore::SealedCredentials(const std::string& account_id) {
  return WithSession(pool_, "read credentials", [&](soci::session& sql) -> absl::StatusOr<std::string> {
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT COALESCE(encode(credentials, 'base64'), '') FROM accounts"
                        " WHERE id = :id",
         soci::use(account_id));
    for (const soci::row& row : rows) {
      // PostgreSQL's base64 breaks lines every 76 characters.
      std::string text = row.get<std::string>(0);
      text.erase(std::remove(text.begin(), text.end(), '\n'), text.end());
      std::string sealed;
      if (!absl::Base64Unescape(text, &sealed)) {
        return absl::DataLossError("stored credentials are not valid base64");
      }
      return sealed;
    }
    return absl::NotFoundError(absl::StrCat("account ", account_id, " not found"));
  });
}

namespace {

// The principal whose key `where` finds (one row of api_keys k, with
// k.key_hash or s.token_hash compared to `hash` in constant time).
absl::StatusOr<PrincipalRecord> FindPrincipal(soci::session& sql, const std::string& from_where,
                                              const std::string& hash_column,
                                              const std::string& hash) {
  PrincipalRecord p;
  bool found = false;
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat("SELECT ", kAccountColumns, ", k.id::text, ", hash_column,
                                     from_where),
         soci::use(hash));
    for (const soci::row& row : rows) {
      // The index found the row; compare in constant time all the same.
      if (!KeyHasher::Equal(row.get<std::string>(kAccountColumnCount + 1), hash)) continue;
      p.account = AccountFromRow(row);
      p.key_id = row.get<std::string>(kAccountColumnCount);
      found = true;
    }
  }
  if (!found) return absl::UnauthenticatedError("invalid or revoked API key");
  soci::rowset<soci::row> grants =
      (sql.prepare << "SELECT workspace_id::text, can_claim::int, can_create::int,"
                      " share_credentials::int FROM account_workspaces WHERE account_id = :a",
       soci::use(p.account.id));
  for (const soci::row& row : grants) {
    p.grants.push_back(GrantRecord{p.account.id, row.get<std::string>(0), row.get<int>(1) != 0,
                                   row.get<int>(2) != 0, row.get<int>(3) != 0});
  }
  return p;
}

constexpr char kSessionColumns[] =
    "s.id::text, k.account_id::text, s.key_id::text, s.user_agent, "
    "to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "to_char(s.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "(s.revoked_at IS NOT NULL)::int";

SessionRecord SessionFromRow(const soci::row& row) {
  SessionRecord s;
  s.id = row.get<std::string>(0);
  s.account_id = row.get<std::string>(1);
  s.key_id = row.get<std::string>(2);
  s.user_agent = row.get<std::string>(3);
  s.created_at = row.get<std::string>(4);
  s.expires_at = row.get<std::string>(5);
  s.revoked = row.get<int>(6) != 0;
  return s;
}

absl::StatusOr<SessionRecord> GetSessionIn(soci::session& sql, const std::string& id) {
  soci::rowset<soci::row> rows =
      (sql.prepare << absl::StrCat("SELECT ", kSessionColumns,
                                   " FROM sessions s JOIN api_keys k ON k.id = s.key_id"
                                   " WHERE s.id = :id"),
       soci::use(id));
  for (const soci::row& row : rows) return SessionFromRow(row);
  return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
}

}  // namespace

absl::StatusOr<PrincipalRecord> PgAccountStore::FindByKeyHash(const std::string& key_hash) {
  return WithSession(pool_, "authenticate", [&](soci::session& sql) {
    return FindPrincipal(sql,
                         " FROM api_keys k JOIN accounts a ON a.id = k.account_id"
                         " WHERE k.key_hash = :h AND k.revoked_at IS NULL",
                         "k.key_hash", key_hash);
  });
}

absl::StatusOr<PrincipalRecord> PgAccountStore::FindBySessionHash(const std::string& token_hash) {
  return WithSession(pool_, "authenticate session", [&](soci::session& sql) -> absl::StatusOr<PrincipalRecord> {
    std::string session_id;
    soci::indicator ind = soci::i_null;
    sql << "SELECT id::text FROM sessions WHERE token_hash = :h", soci::use(token_hash),
        soci::into(session_id, ind);
    BUILDD_ASSIGN_OR_RETURN(
        PrincipalRecord p,
        FindPrincipal(sql,
                      " FROM sessions s JOIN api_keys k ON k.id = s.key_id"
                      " JOIN accounts a ON a.id = k.account_id"
                      " WHERE s.token_hash = :h AND s.revoked_at IS NULL AND s.expires_at > now()"
                      " AND k.revoked_at IS NULL",
                      "s.token_hash", token_hash));
    p.session_id = session_id;
    return p;
  });
}

absl::StatusOr<SessionRecord> PgAccountStore::CreateSession(const std::string& key_id,
                                                            const std::string& session_id,
                                                            const std::string& token_hash,
                                                            int64_t ttl_seconds,
                                                            const std::string& user_agent) {
  return WithSession(pool_, "create session", [&](soci::session& sql) {
    const long long ttl = ttl_seconds;
    sql << "INSERT INTO sessions (id, key_id, token_hash, user_agent, expires_at)"
           " VALUES (:id, :k, :h, :ua, now() + make_interval(secs => :ttl))",
        soci::use(session_id), soci::use(key_id), soci::use(token_hash), soci::use(user_agent),
        soci::use(ttl);
    return GetSessionIn(sql, session_id);
  });
}

absl::StatusOr<std::vector<SessionRecord>> PgAccountStore::ListSessions(const std::string& account_id) {
  return WithSession(pool_, "list sessions", [&](soci::session& sql) -> absl::StatusOr<std::vector<SessionRecord>> {
    std::vector<SessionRecord> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat("SELECT ", kSessionColumns,
                                     " FROM sessions s JOIN api_keys k ON k.id = s.key_id"
                                     " WHERE k.account_id = :a AND s.revoked_at IS NULL"
                                     " AND s.expires_at > now() AND k.revoked_at IS NULL"
                                     " ORDER BY s.created_at DESC"),
         soci::use(account_id));
    for (const soci::row& row : rows) out.push_back(SessionFromRow(row));
    return out;
  });
}

absl::StatusOr<SessionRecord> PgAccountStore::RevokeSession(const std::string& account_id,
                                                            const std::string& session_id) {
  return WithSession(pool_, "revoke session", [&](soci::session& sql) -> absl::StatusOr<SessionRecord> {
    soci::statement st =
        (sql.prepare << "UPDATE sessions s SET revoked_at = COALESCE(s.revoked_at, now())"
                        " FROM api_keys k WHERE k.id = s.key_id AND s.id = :id AND k.account_id = :a",
         soci::use(session_id), soci::use(account_id));
    st.execute(true);
    if (st.get_affected_rows() == 0) {
      return absl::NotFoundError(absl::StrCat("session ", session_id, " not found"));
    }
    return GetSessionIn(sql, session_id);
  });
}

absl::StatusOr<std::vector<ActionTargetRecord>> PgAccountStore::ActionTargets(
    const std::string& workspace_id) {
  return WithSession(pool_, "action targets",
                     [&](soci::session& sql) -> absl::StatusOr<std::vector<ActionTargetRecord>> {
    std::vector<ActionTargetRecord> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT a.id::text, a.github_id, encode(a.github_token, 'base64')"
                        " FROM accounts a WHERE a.type = 'action' AND a.github_id <> ''"
                        " AND a.github_token IS NOT NULL AND (a.claim_all OR EXISTS ("
                        " SELECT 1 FROM account_workspaces g WHERE g.account_id = a.id"
                        " AND g.workspace_id::text = :w AND g.can_claim))"
                        " ORDER BY a.created_at, a.id",
         soci::use(workspace_id));
    for (const soci::row& row : rows) {
      ActionTargetRecord t;
      t.account_id = row.get<std::string>(0);
      t.github_id = row.get<std::string>(1);
      std::string text = row.get<std::string>(2);
      text.erase(std::remove(text.begin(), text.end(), '\n'), text.end());
      if (!absl::Base64Unescape(text, &t.sealed_github_token)) {
        return absl::DataLossError("a stored GitHub token is not valid base64");
      }
      out.push_back(std::move(t));
    }
    return out;
  });
}

namespace {

// Makes sure the account that `account` finds or creates (inside the same
// transaction) holds a key with `key_hash`; one bootstrap at a time.
absl::Status EnsureBootstrapKey(soci::session& sql, const std::string& lock_name,
                                const std::string& key_hash,
                                const std::function<std::string(soci::session&)>& account) {
  soci::transaction tx(sql);
  sql << "SELECT pg_advisory_xact_lock(hashtext(:n))", soci::use(lock_name);
  int existing = 0;
  sql << "SELECT count(*) FROM api_keys WHERE key_hash = :h", soci::use(key_hash),
      soci::into(existing);
  if (existing == 0) {
    const std::string account_id = account(sql);
    const std::string key_id = NewUuid();
    sql << "INSERT INTO api_keys (id, account_id, key_hash) VALUES (:id, :a, :h)",
        soci::use(key_id), soci::use(account_id), soci::use(key_hash);
  }
  tx.commit();
  return absl::OkStatus();
}

}  // namespace

absl::Status PgAccountStore::EnsureAdminKey(const std::string& key_hash) {
  return WithSession(pool_, "bootstrap admin", [&](soci::session& sql) {
    return EnsureBootstrapKey(sql, "buildd_admin_bootstrap", key_hash, [](soci::session& sql) {
      std::string id;
      soci::indicator ind = soci::i_null;
      sql << "SELECT id::text FROM accounts WHERE is_admin ORDER BY created_at LIMIT 1",
          soci::into(id, ind);
      if (sql.got_data() && ind != soci::i_null) return id;
      id = NewUuid();
      sql << "INSERT INTO accounts (id, type, name, auth_type, is_admin)"
             " VALUES (:id, 'service', 'admin', 'api', true)",
          soci::use(id);
      return id;
    });
  });
}

absl::Status PgAccountStore::EnsureRunnerKey(const std::string& name, const std::string& key_hash) {
  return WithSession(pool_, "bootstrap runner", [&](soci::session& sql) {
    return EnsureBootstrapKey(sql, "buildd_runner_bootstrap", key_hash, [&](soci::session& sql) {
      std::string id;
      soci::indicator ind = soci::i_null;
      sql << "SELECT id::text FROM accounts WHERE claim_all AND NOT is_admin AND name = :n"
             " ORDER BY created_at LIMIT 1",
          soci::use(name), soci::into(id, ind);
      if (sql.got_data() && ind != soci::i_null) return id;
      id = NewUuid();
      sql << "INSERT INTO accounts (id, type, name, auth_type, claim_all, max_concurrent_workers)"
             " VALUES (:id, 'service', :n, 'api', true, 1000)",
          soci::use(id), soci::use(name);
      return id;
    });
  });
}

}  // namespace buildd::accounts
