#include "common/service_main.h"

#include <signal.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/db.h"
#include "common/logging.h"

namespace buildd {

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
  if (url.empty()) {
    return absl::InvalidArgumentError("--database_url (or BUILDD_DATABASE_URL) is required");
  }
  auto pool = ConnectWithRetry(url, pool_size, 30000);
  if (!pool.ok()) return pool.status();
  if (absl::Status st = ApplyMigrations(**pool, service, migrations); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("migrations failed: ", st.message()));
  }
  return pool;
}

}  // namespace buildd
