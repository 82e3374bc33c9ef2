#include "common/service_main.h"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/db.h"
#include "common/logging.h"

ABSL_FLAG(std::string, migrate, "apply",
          "apply: apply missing migrations at start; check: refuse to start while one is "
          "missing; only: apply them and exit");

namespace buildd {
namespace {

enum class MigrateMode { kApply, kCheck, kOnly };

MigrateMode MigrateModeOrExit() {
  const std::string mode = absl::GetFlag(FLAGS_migrate);
  if (mode == "apply") return MigrateMode::kApply;
  if (mode == "check") return MigrateMode::kCheck;
  if (mode == "only") return MigrateMode::kOnly;
  std::fprintf(stderr, "--migrate must be apply, check or only, not '%s'\n", mode.c_str());
  std::exit(2);
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForTermination() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

absl::StatusOr<std::unique_ptr<soci::connection_pool>> ConnectWithRetry(const std::string& url,
                                                                        size_t size, int wait_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  auto delay = std::chrono::milliseconds(50);
  while (true) {
    auto pool = OpenPool(url, size);
    if (pool.ok() || std::chrono::steady_clock::now() + delay > deadline) return pool;
    Log()->warn("database not reachable yet, retrying: {}", pool.status().message());
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

absl::StatusOr<std::unique_ptr<soci::connection_pool>> OpenServiceDatabase(
    const std::string& url, size_t pool_size, const std::string& service,
    const std::vector<Migration>& migrations) {
  const MigrateMode mode = MigrateModeOrExit();
  if (url.empty()) {
    return absl::InvalidArgumentError("--database_url (or BUILDD_DATABASE_URL) is required");
  }
  auto pool = ConnectWithRetry(url, pool_size, 30000);
  if (!pool.ok()) return pool.status();
  if (mode == MigrateMode::kCheck) {
    if (absl::Status st = CheckMigrations(**pool, service, migrations); !st.ok()) return st;
    return pool;
  }
  if (absl::Status st = ApplyMigrations(**pool, service, migrations); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("migrations failed: ", st.message()));
  }
  return pool;
}

std::optional<int> MigrateOnlyIfAsked(const std::string& url, const std::string& service,
                                      const std::vector<Migration>& migrations) {
  if (MigrateModeOrExit() != MigrateMode::kOnly) return std::nullopt;
  auto pool = OpenServiceDatabase(url, 1, service, migrations);
  if (!pool.ok()) {
    Log()->critical("{}", pool.status().message());
    return pool.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  Log()->info("the {} migrations are applied ({} known)", service, migrations.size());
  return 0;
}

}  // namespace buildd
