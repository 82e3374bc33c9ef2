#ifndef BUILDD_COMMON_DB_H_
#define BUILDD_COMMON_DB_H_

#include <memory>
#include <string>
#include <vector>

#include <soci/soci.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace buildd {

// One numbered schema change of a service, applied once, in order.
struct Migration {
  int version;
  std::string name;
  std::string sql;
};

// libpq "key='value' …" form of a PostgreSQL URL or key=value string.
// With `dbname`, that database instead of the URL's.
absl::StatusOr<std::string> ToConninfo(const std::string& url, const std::string& dbname = "");

// Opens `size` PostgreSQL sessions (libpq URL or key=value string).
absl::StatusOr<std::unique_ptr<soci::connection_pool>> OpenPool(const std::string& url,
                                                                 size_t size);

// Applies the migrations of `service` not yet recorded in schema_migrations,
// each in its own transaction, under an advisory lock so that replicas
// starting together apply each one once.
absl::Status ApplyMigrations(soci::connection_pool& pool, const std::string& service,
                             const std::vector<Migration>& migrations);

// OK when every migration of `service` is recorded in schema_migrations;
// otherwise FailedPrecondition naming the first missing one. Versions the
// binary does not know (a newer release migrated first) are allowed.
absl::Status CheckMigrations(soci::connection_pool& pool, const std::string& service,
                             const std::vector<Migration>& migrations);

// Maps a SOCI/PostgreSQL error to a status: unique violation → AlreadyExists,
// foreign key violation → FailedPrecondition, bad text representation →
// InvalidArgument, lost connection → Unavailable, else Internal.
absl::Status StatusFromDbError(const std::exception& e, const std::string& what);

// True when `SELECT 1` succeeds on a pooled session within the pool's wait.
bool DatabaseReachable(soci::connection_pool& pool);

// Runs `fn(session)` with a pooled session, turning any exception into a
// status. `fn` returns absl::Status or absl::StatusOr<T>.
template <typename Fn>
auto WithSession(soci::connection_pool& pool, const std::string& what, Fn&& fn)
    -> decltype(fn(std::declval<soci::session&>())) {
  try {
    soci::session sql(pool);
    return fn(sql);
  } catch (const std::exception& e) {
    return StatusFromDbError(e, what);
  }
}

}  // namespace buildd

#endif  // BUILDD_COMMON_DB_H_
