#include "common/db.h"

#include <algorithm>

#include <libpq-fe.h>

#include "common/pg_connection.h"
#include <soci/postgresql/soci-postgresql.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace buildd {

absl::StatusOr<std::string> ToConninfo(const std::string& url, const std::string& dbname) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    std::string message = error != nullptr ? error : "unparsable";
    PQfreemem(error);
    return absl::InvalidArgumentError(absl::StrCat("database URL: ", message));
  }
  std::string out;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    const char* raw = o->val;
    if (!dbname.empty() && std::string(o->keyword) == "dbname") raw = dbname.c_str();
    if (raw == nullptr || *raw == '\0') continue;
    std::string value;
    for (const char* c = raw; *c; ++c) {
      if (*c == '\'' || *c == '\\') value += '\\';
      value += *c;
    }
    absl::StrAppend(&out, out.empty() ? "" : " ", o->keyword, "='", value, "'");
  }
  PQconninfoFree(options);
  return out;
}

absl::StatusOr<std::unique_ptr<soci::connection_pool>> OpenPool(const std::string& url,
                                                                 size_t size) {
  // SOCI re-parses the string as key=value pairs; libpq URLs must be
  // converted first.
  auto conninfo = ToConninfo(url);
  if (!conninfo.ok()) return conninfo.status();
  auto pool = std::make_unique<soci::connection_pool>(size);
  try {
    for (size_t i = 0; i < size; ++i) pool->at(i).open(soci::postgresql, *conninfo);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot connect to the database: ", e.what()));
  }
  return pool;
}

absl::Status ApplyMigrations(soci::connection_pool& pool, const std::string& service,
                             const std::vector<Migration>& migrations) {
  return WithSession(pool, "migrate", [&](soci::session& sql) -> absl::Status {
    sql << "CREATE TABLE IF NOT EXISTS schema_migrations ("
           " service text NOT NULL, version int NOT NULL, name text NOT NULL,"
           " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version))";
    // Session-level advisory lock: one replica migrates at a time.
    sql << "SELECT pg_advisory_lock(hashtext('buildd_migrations'))";
    absl::Status result = absl::OkStatus();
    try {
      for (const Migration& m : migrations) {
        int applied = 0;
        sql << "SELECT count(*) FROM schema_migrations WHERE service = :s AND version = :v",
            soci::use(service), soci::use(m.version), soci::into(applied);
        if (applied > 0) continue;
        soci::transaction tx(sql);
        sql << m.sql;
        sql << "INSERT INTO schema_migrations (service, version, name) VALUES (:s, :v, :n)",
            soci::use(service), soci::use(m.version), soci::use(m.name);
        tx.commit();
        Log()->info("applied migration service={} version={} name={}", service, m.version, m.name);
      }
    } catch (const std::exception& e) {
      result = StatusFromDbError(e, absl::StrCat("migrating ", service));
    }
    sql << "SELECT pg_advisory_unlock(hashtext('buildd_migrations'))";
    return result;
  });
}

absl::Status CheckMigrations(soci::connection_pool& pool, const std::string& service,
                             const std::vector<Migration>& migrations) {
  return WithSession(pool, "check migrations", [&](soci::session& sql) -> absl::Status {
    int has_table = 0;
    sql << "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
           " AND tablename = 'schema_migrations'",
        soci::into(has_table);
    std::vector<int> applied;
    if (has_table > 0) {
      soci::rowset<int> versions =
          (sql.prepare << "SELECT version FROM schema_migrations WHERE service = :s", soci::use(service));
      applied.assign(versions.begin(), versions.end());
    }
    for (const Migration& m : migrations) {
      if (std::find(applied.begin(), applied.end(), m.version) == applied.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the database lacks ", service, " migration ", m.version, " (", m.name, "); run buildd-",
            service, " --migrate=only first"));
      }
    }
    return absl::OkStatus();
  });
}

absl::Status StatusFromDbError(const std::exception& e, const std::string& what) {
  std::string state;
  if (const auto* pg = dynamic_cast<const soci::postgresql_soci_error*>(&e)) state = pg->sqlstate();
  if (const auto* pg = dynamic_cast<const PgError*>(&e)) state = pg->sqlstate();
  if (!state.empty()) {
    if (state == "23505") return absl::AlreadyExistsError(absl::StrCat(what, ": already exists"));
    if (state == "23503") return absl::FailedPreconditionError(absl::StrCat(what, ": refers to a missing row"));
    if (state == "22P02" || state == "22023") return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.what()));
    if (absl::StartsWith(state, "08") || state == "57P01") {
      return absl::UnavailableError(absl::StrCat(what, ": database unavailable"));
    }
  }
  const std::string message = e.what();
  if (absl::StrContains(message, "connection") || absl::StrContains(message, "server closed")) {
    return absl::UnavailableError(absl::StrCat(what, ": database unavailable"));
  }
  return absl::InternalError(absl::StrCat(what, ": ", message));
}

bool DatabaseReachable(soci::connection_pool& pool) {
  size_t pos = 0;
  // Never wait for a busy pool: health checks must answer quickly.
  if (!pool.try_lease(pos, 200)) return true;
  bool ok = false;
  try {
    soci::session& sql = pool.at(pos);
    int one = 0;
    sql << "SELECT 1", soci::into(one);
    ok = one == 1;
  } catch (const std::exception&) {
    try {
      pool.at(pos).reconnect();
    } catch (const std::exception&) {
    }
  }
  pool.give_back(pos);
  return ok;
}

}  // namespace buildd
