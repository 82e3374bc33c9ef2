#ifndef BUILDD_COMMON_SERVICE_MAIN_H_
#define BUILDD_COMMON_SERVICE_MAIN_H_

#include <memory>
#include <optional>
#include <string>

#include <soci/soci.h>

#include "absl/status/statusor.h"
#include "common/db.h"

namespace buildd {

// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it
// starts later); WaitForTermination() then returns the signal received.
// REQUIRES: called from main before any thread starts.
void BlockTerminationSignals();
int WaitForTermination();

// Opens the pool, retrying for up to `wait_ms` while the database is not up
// yet (services may start before PostgreSQL accepts connections).
absl::StatusOr<std::unique_ptr<soci::connection_pool>> ConnectWithRetry(const std::string& url,
                                                                        size_t size, int wait_ms);

// A service's start-up with its database: requires `url` (naming the flag
// and variable when it is empty), connects with retry for up to 30 s and,
// as --migrate says, applies the service's migrations (`apply`, the
// default) or only checks that they are all applied (`check`: when a
// deployment migrates in a job of its own first). The error says which
// step failed.
absl::StatusOr<std::unique_ptr<soci::connection_pool>> OpenServiceDatabase(
    const std::string& url, size_t pool_size, const std::string& service,
    const std::vector<Migration>& migrations);

// With --migrate=only: applies the migrations and returns the process's
// exit code (0 when they are all applied); without: nullopt, start as usual.
// Call before requiring the service's other settings, which migrating
// does not need.
std::optional<int> MigrateOnlyIfAsked(const std::string& url, const std::string& service,
                                      const std::vector<Migration>& migrations);

}  // namespace buildd

#endif  // BUILDD_COMMON_SERVICE_MAIN_H_
