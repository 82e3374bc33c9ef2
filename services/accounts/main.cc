// buildd-accounts: accounts, API keys, workspace grants and Authenticate.
#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/admin_http.h"
#include "common/config.h"
#include "common/db.h"
#include "common/grpc_server.h"
#include "common/health_service.h"
#include "common/logging.h"
#include "common/secret_box.h"
#include "common/service_main.h"
#include "common/tls.h"
#include "services/accounts/accounts_service.h"
#include "services/accounts/pg_account_store.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7001", "gRPC listen address (host:port or :port)");
ABSL_FLAG(std::string, database_url, "", "PostgreSQL URL");
ABSL_FLAG(std::string, master_key, "", "64 hex digits: key that seals provider credentials");
ABSL_FLAG(std::string, key_pepper, "", "server secret mixed into API key hashes (>= 16 chars)");
ABSL_FLAG(std::string, admin_key, "", "bootstrap admin API key (buildd_service_…)");
ABSL_FLAG(std::string, runner_key, "",
          "bootstrap key of the local runner's service account (claimAll, not admin)");
ABSL_FLAG(std::string, runner_name, "local runner", "name of that account");
ABSL_FLAG(std::string, service_key, "",
          "secret the broker presents for WatchChanges and RunnerCredentials (>= 32 chars)");
ABSL_FLAG(std::string, database_url_file, "", "file holding --database_url");
ABSL_FLAG(std::string, master_key_file, "", "file holding --master_key");
ABSL_FLAG(std::string, key_pepper_file, "", "file holding --key_pepper");
ABSL_FLAG(std::string, admin_key_file, "", "file holding --admin_key");
ABSL_FLAG(std::string, runner_key_file, "", "file holding --runner_key");
ABSL_FLAG(std::string, service_key_file, "", "file holding --service_key");
ABSL_FLAG(int, db_pool_size, 8, "PostgreSQL connections");
ABSL_FLAG(int, session_ttl_s, 12 * 3600, "how long a dashboard session lasts, in seconds");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(std::string, metrics_listen, "", "HTTP address for /metrics and /health (empty: off)");

int main(int argc, char** argv) {
  using namespace buildd;
  BlockTerminationSignals();
  ParseFlagsWithEnv(argc, argv,
                    {{"listen", "BUILDD_ACCOUNTS_LISTEN"},
                     {"database_url", "BUILDD_DATABASE_URL"},
                     {"master_key", "BUILDD_MASTER_KEY"},
                     {"key_pepper", "BUILDD_KEY_PEPPER"},
                     {"admin_key", "BUILDD_ADMIN_KEY"},
                     {"runner_key", "BUILDD_RUNNER_KEY"},
                     {"service_key", "BUILDD_SERVICE_KEY"},
                     {"migrate", "BUILDD_MIGRATE"},
                     {"log_level", "BUILDD_LOG_LEVEL"},
                     {"metrics_listen", "BUILDD_ACCOUNTS_METRICS_LISTEN"}},
                    "buildd-accounts: accounts, API keys and grants over gRPC");
  InitLogging("accounts", absl::GetFlag(FLAGS_log_level));
  if (auto code = MigrateOnlyIfAsked(SecretFlagOrExit("database_url"), "accounts", accounts::AccountsMigrations())) {
    return *code;
  }

  const std::string pepper = SecretFlagOrExit("key_pepper");
  if (pepper.size() < 16) {
    std::fprintf(stderr, "--key_pepper (or BUILDD_KEY_PEPPER) must be at least 16 characters\n");
    return 2;
  }
  auto box = SecretBox::FromHex(SecretFlagOrExit("master_key"));
  if (!box.ok()) {
    std::fprintf(stderr, "--master_key (or BUILDD_MASTER_KEY): %s\n",
                 std::string(box.status().message()).c_str());
    return 2;
  }
  auto pool = OpenServiceDatabase(SecretFlagOrExit("database_url"),
                                  absl::GetFlag(FLAGS_db_pool_size), "accounts",
                                  accounts::AccountsMigrations());
  if (!pool.ok()) {
    Log()->critical("{}", pool.status().message());
    return pool.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  accounts::PgAccountStore store(**pool);
  accounts::KeyHasher hasher(pepper);
  const std::string service_key = SecretFlagOrExit("service_key");
  if (service_key.size() < 32) {
    std::fprintf(stderr, "--service_key (or BUILDD_SERVICE_KEY) must be at least 32 characters\n");
    return 2;
  }
  const std::string admin_key = SecretFlagOrExit("admin_key");
  if (!admin_key.empty()) {
    if (!accounts::LooksLikeKey(admin_key)) {
      std::fprintf(stderr, "--admin_key must look like buildd_<type>_<random>\n");
      return 2;
    }
    if (auto st = store.EnsureAdminKey(hasher.Hash(admin_key)); !st.ok()) {
      Log()->critical("bootstrap admin key: {}", st.message());
      return 1;
    }
  }

  const std::string runner_key = SecretFlagOrExit("runner_key");
  if (!runner_key.empty()) {
    if (!accounts::LooksLikeKey(runner_key)) {
      std::fprintf(stderr, "--runner_key must look like buildd_<type>_<random>\n");
      return 2;
    }
    auto st = store.EnsureRunnerKey(absl::GetFlag(FLAGS_runner_name), hasher.Hash(runner_key));
    if (!st.ok()) {
      Log()->critical("bootstrap runner key: {}", st.message());
      return 1;
    }
  }

  const int session_ttl_s = absl::GetFlag(FLAGS_session_ttl_s);
  if (session_ttl_s < 60) {
    std::fprintf(stderr, "--session_ttl_s must be at least 60\n");
    return 2;
  }
  accounts::AccountsService service(store, hasher, *std::move(box), service_key, 4, session_ttl_s);
  soci::connection_pool& db = **pool;
  HealthService health({"buildd.v1.AccountService"}, [&db] { return DatabaseReachable(db); });
  auto credentials = ServerCredentials(TlsServerFlags());
  if (!credentials.ok()) {
    std::fprintf(stderr, "%s\n", std::string(credentials.status().message()).c_str());
    return 2;
  }
  int port = 0;
  const std::string address = ListenAddress(absl::GetFlag(FLAGS_listen), "127.0.0.1");
  auto server = StartGrpcServer(address, {&service, &health}, &port, *credentials);
  if (!server.ok()) {
    Log()->critical("{}", server.status().message());
    return 1;
  }
  auto metrics = MaybeStartMetrics(absl::GetFlag(FLAGS_metrics_listen), [&db] { return DatabaseReachable(db); });
  if (!metrics.ok()) {
    Log()->critical("{}", metrics.status().message());
    return 1;
  }
  Log()->info("accounts listening on {}{}", address.substr(0, address.rfind(':') + 1) + std::to_string(port),
              TlsServerFlags().enabled() ? " (TLS)" : "");

  const int sig = WaitForTermination();
  Log()->info("signal {} received, draining", sig);
  health.Drain();
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  Log()->info("stopped");
  return 0;
}
