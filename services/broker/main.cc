// buildd-broker: workspaces, tasks, workers, events and the runner stream.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "absl/flags/flag.h"
#include "common/admin_http.h"
#include "common/config.h"
#include "common/metrics.h"
#include "common/db.h"
#include "common/grpc_server.h"
#include "common/health_service.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/service_main.h"
#include "common/tls.h"
#include "services/broker/accounts_client.h"
#include "services/broker/action_dispatch.h"
#include "services/broker/broker_service.h"
#include "services/broker/dispatcher.h"
#include "services/broker/event_feed.h"
#include "services/broker/event_hub.h"
#include "services/broker/github_client.h"
#include "services/broker/journal.h"
#include "services/broker/pg_broker_store.h"
#include "services/broker/pull_requests.h"
#include "services/broker/queue_scaler.h"
#include "services/broker/runner_service.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7002", "gRPC listen address (host:port or :port)");
ABSL_FLAG(std::string, database_url, "", "PostgreSQL URL");
ABSL_FLAG(std::string, session_key, "",
          "64 hex digits: key that seals agent session transcripts in the database");
ABSL_FLAG(std::string, accounts_addr, "127.0.0.1:7001", "accounts service address");
ABSL_FLAG(std::string, service_key, "",
          "secret presented to accounts for WatchChanges and RunnerCredentials");
ABSL_FLAG(std::string, database_url_file, "", "file holding --database_url");
ABSL_FLAG(std::string, session_key_file, "", "file holding --session_key");
ABSL_FLAG(std::string, service_key_file, "", "file holding --service_key");
ABSL_FLAG(int, max_streams_per_key, 64, "runner streams one API key may hold at once");
ABSL_FLAG(int, hello_timeout_ms, 10000, "a runner stream without Hello by then is closed");
ABSL_FLAG(int, db_pool_size, 8, "PostgreSQL connections for reads");
ABSL_FLAG(int, threads, 4, "worker threads for blocking calls");
ABSL_FLAG(int, lease_grace_ms, 30000, "how long a disconnected runner keeps its work");
ABSL_FLAG(int, heartbeat_interval_ms, 10000, "runner heartbeat interval");
ABSL_FLAG(int, poll_lease_ms, 300000,
          "how long a polling agent (POST /api/workers/claim) may stay silent and keep its claims; "
          "the lease grace comes on top");
ABSL_FLAG(int, max_subscriptions_per_key, 16, "event streams one API key may hold open at once");
ABSL_FLAG(int, accept_timeout_ms, 30000,
          "a task its runner has not accepted by then goes back to the queue");
ABSL_FLAG(int, journal_queue_mb, 64,
          "runner messages waiting to be stored, in MiB, beyond which runner streams are not read");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(std::string, metrics_listen, "", "HTTP address for /metrics and /health (empty: off)");
ABSL_FLAG(std::string, scaler_listen, "",
          "gRPC address of KEDA's external scaler over the task queue (empty: off); not "
          "authenticated, so reachable by KEDA only (TLS as --tls_cert says)");

// GitHub.
ABSL_FLAG(std::string, github_api_url, "https://api.github.com",
          "GitHub's REST API (a GitHub Enterprise server: https://HOST/api/v3)");
ABSL_FLAG(std::string, github_ca_file, "",
          "PEM file of the CAs to trust for --github_api_url (default: the system's)");
ABSL_FLAG(int, github_timeout_ms, 10000, "deadline of one call to GitHub");
ABSL_FLAG(std::string, github_webhook_secret, "",
          "the secret of GitHub's webhook deliveries (X-Hub-Signature-256); empty: POST "
          "/webhooks/github refuses every delivery. Prefer --github_webhook_secret_file");
ABSL_FLAG(std::string, github_webhook_secret_file, "", "file holding --github_webhook_secret");
ABSL_FLAG(int, github_dispatch_attempts, 5,
          "repository_dispatch attempts for a task, retried on GitHub's 5xx and network errors");
ABSL_FLAG(int, github_dispatch_backoff_ms, 1000,
          "the wait after a failed repository_dispatch, doubled after each further one");

int main(int argc, char** argv) {
  using namespace buildd;
  using namespace buildd::broker;
  BlockTerminationSignals();
  ParseFlagsWithEnv(argc, argv,
                    {{"listen", "BUILDD_BROKER_LISTEN"},
                     {"database_url", "BUILDD_DATABASE_URL"},
                     {"accounts_addr", "BUILDD_ACCOUNTS_ADDR"},
                     {"session_key", "BUILDD_SESSION_KEY"},
                     {"service_key", "BUILDD_SERVICE_KEY"},
                     {"lease_grace_ms", "BUILDD_LEASE_GRACE_MS"},
                     {"metrics_listen", "BUILDD_BROKER_METRICS_LISTEN"},
                     {"scaler_listen", "BUILDD_BROKER_SCALER_LISTEN"},
                     {"migrate", "BUILDD_MIGRATE"},
                     {"log_level", "BUILDD_LOG_LEVEL"},
                     {"github_api_url", "BUILDD_GITHUB_API_URL"},
                     {"github_webhook_secret_file", "BUILDD_GITHUB_WEBHOOK_SECRET_FILE"}},
                    "buildd-broker: tasks, dispatch and the runner stream over gRPC");
  InitLogging("broker", absl::GetFlag(FLAGS_log_level));
  if (auto code = MigrateOnlyIfAsked(SecretFlagOrExit("database_url"), "broker", BrokerMigrations())) {
    return *code;
  }
  auto sessions_box = SecretBox::FromHex(SecretFlagOrExit("session_key"));
  if (!sessions_box.ok()) {
    std::fprintf(stderr, "--session_key (or BUILDD_SESSION_KEY): %s\n",
                 std::string(sessions_box.status().message()).c_str());
    return 2;
  }
  const std::string service_key = SecretFlagOrExit("service_key");
  if (service_key.empty()) {
    std::fprintf(stderr, "--service_key (or BUILDD_SERVICE_KEY) is required: the secret that "
                         "buildd-accounts was given\n");
    return 2;
  }
  const std::string url = SecretFlagOrExit("database_url");
  auto pool = OpenServiceDatabase(url, absl::GetFlag(FLAGS_db_pool_size), "broker",
                                  BrokerMigrations());
  if (!pool.ok()) {
    Log()->critical("{}", pool.status().message());
    return pool.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  auto conninfo = ToConninfo(url);
  if (!conninfo.ok()) {
    Log()->critical("{}", conninfo.status().message());
    return 2;
  }
  // This process among the replicas on the database.
  const std::string replica_id = NewUuid();
  PgBrokerStore store(**pool, *std::move(sessions_box), *conninfo, replica_id);
  EventHub hub;
  auto last_id = store.LastEventId();
  if (!last_id.ok()) {
    Log()->critical("{}", last_id.status().message());
    return 1;
  }
  hub.Reset(*last_id);
  EventFeed feed(store, hub, replica_id);

  auto writer = store.OpenWriter();
  if (!writer.ok()) {
    Log()->critical("{}", writer.status().message());
    return 1;
  }
  // KEDA's view of the queue, recounted as the journal commits changes.
  boost::asio::thread_pool scaler_pool(1);
  QueueScaler scaler(store, scaler_pool);
  // Set once the accounts client it asks exists; read on the journal's thread.
  std::atomic<ActionDispatch*> action_dispatch{nullptr};
  std::atomic<PullRequests*> pull_requests{nullptr};
  Journal journal(*std::move(writer),
                  [&feed, &scaler, &action_dispatch,
                   &pull_requests](const std::vector<pb::Event>& events) {
                    feed.Committed(events);
                    scaler.OnEvents(events);
                    if (ActionDispatch* d = action_dispatch.load()) d->OnEvents(events);
                    if (PullRequests* p = pull_requests.load()) p->OnEvents(events);
                  },
                  /*max_batch=*/512,
                  static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_journal_queue_mb))) << 20);

  boost::asio::io_context timers;
  auto work = boost::asio::make_work_guard(timers);
  std::thread timer_thread([&timers] { timers.run(); });

  boost::asio::thread_pool workers(absl::GetFlag(FLAGS_threads));
  DispatcherOptions options;
  options.lease_grace_ms = absl::GetFlag(FLAGS_lease_grace_ms);
  options.heartbeat_interval_ms = absl::GetFlag(FLAGS_heartbeat_interval_ms);
  options.accept_timeout_ms = absl::GetFlag(FLAGS_accept_timeout_ms);
  options.max_streams_per_key = absl::GetFlag(FLAGS_max_streams_per_key);
  options.broker_id = replica_id;
  Dispatcher dispatcher(journal, store, timers, workers, options);
  if (auto st = dispatcher.Start(); !st.ok()) {
    Log()->critical("dispatcher: {}", st.message());
    return 1;
  }
  // What the other replicas commit and ask.
  feed.Start(
      [&dispatcher, &scaler](const std::vector<pb::Event>& events) {
        dispatcher.OnCommittedElsewhere(events);
        scaler.OnEvents(events);
      },
      [&dispatcher](const pb::Control& control) { dispatcher.OnControlElsewhere(control); });

  auto server_credentials = ServerCredentials(TlsServerFlags());
  auto accounts_credentials = ChannelCredentials(TlsClientFlags());
  for (const absl::Status& st : {server_credentials.status(), accounts_credentials.status()}) {
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
      return 2;
    }
  }
  RunnerServiceImpl* runner_service_ptr = nullptr;
  BrokerServiceImpl* broker_service_ptr = nullptr;
  AccountsClient accounts(absl::GetFlag(FLAGS_accounts_addr), *accounts_credentials, service_key,
                          [&](const std::string& account_id) {
    static auto& refreshes = Metrics::Global().Counter(
        "buildd_broker_account_refreshes_total",
        "Account changes applied to this replica's runners and event streams.");
    if (runner_service_ptr != nullptr) runner_service_ptr->RefreshAccount(account_id);
    if (broker_service_ptr != nullptr) broker_service_ptr->RefreshSubscriptions(account_id);
    ++refreshes;
  });
  HttpGitHubClient::Options github_options;
  github_options.api_url = absl::GetFlag(FLAGS_github_api_url);
  github_options.ca_file = absl::GetFlag(FLAGS_github_ca_file);
  github_options.timeout_ms = std::max(100, absl::GetFlag(FLAGS_github_timeout_ms));
  github_options.user_agent = "buildd-broker";
  auto github = HttpGitHubClient::Create(github_options);
  if (!github.ok()) {
    std::fprintf(stderr, "%s\n", std::string(github.status().message()).c_str());
    return 2;
  }
  ActionDispatch::Options dispatch_options;
  dispatch_options.max_attempts = std::max(1, absl::GetFlag(FLAGS_github_dispatch_attempts));
  dispatch_options.first_backoff_ms = std::max(1, absl::GetFlag(FLAGS_github_dispatch_backoff_ms));
  ActionDispatch dispatch(
      store, journal, **github,
      [&accounts](const std::string& workspace_id) { return accounts.ActionTargets(workspace_id); },
      workers, timers, dispatch_options);
  action_dispatch = &dispatch;
  PullRequests::Options pull_options;
  pull_options.max_attempts = dispatch_options.max_attempts;
  pull_options.first_backoff_ms = dispatch_options.first_backoff_ms;
  PullRequests pulls(
      store, journal, **github,
      [&accounts](const std::string& workspace_id) { return accounts.ActionTargets(workspace_id); },
      workers, timers, pull_options);
  pull_requests = &pulls;
  const std::string webhook_secret = SecretFlagOrExit("github_webhook_secret");
  GitHubWebhook webhook(
      webhook_secret, store,
      [&accounts](const std::string& workspace_id) { return accounts.ActionTargets(workspace_id); });
  boost::asio::thread_pool stream_pool(2);
  BrokerServiceImpl::Options service_options;
  service_options.max_subscriptions_per_key = absl::GetFlag(FLAGS_max_subscriptions_per_key);
  service_options.github_webhook = &webhook;
  PollingAgents agents(dispatcher, store, workers,
                       std::chrono::milliseconds(std::max(1000, absl::GetFlag(FLAGS_poll_lease_ms))));
  BrokerServiceImpl broker_service(accounts, store, dispatcher, agents, journal, hub, workers,
                                   stream_pool, service_options);
  broker_service_ptr = &broker_service;
  // Sessions expire without a notice: open streams are checked now and then
  // (through the cache, which forgets a principal after a minute).
  boost::asio::steady_timer recheck(timers);
  std::function<void()> arm_recheck = [&] {
    recheck.expires_after(std::chrono::seconds(30));
    recheck.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      broker_service.RefreshSubscriptions("");
      arm_recheck();
    });
  };
  arm_recheck();
  RunnerServiceImpl::Options stream_options;
  stream_options.hello_timeout_ms = absl::GetFlag(FLAGS_hello_timeout_ms);
  RunnerServiceImpl runner_service(accounts, dispatcher, workers, timers, stream_options);
  runner_service_ptr = &runner_service;

  soci::connection_pool& db = **pool;
  HealthService health({"buildd.v1.BrokerService", "buildd.v1.RunnerService"},
                       [&db] { return DatabaseReachable(db); });
  int port = 0;
  const std::string address = ListenAddress(absl::GetFlag(FLAGS_listen), "127.0.0.1");
  // A runner's Finished is the largest message; unary calls are held to
  // less by the services themselves.
  auto server = StartGrpcServer(address, {&broker_service, &runner_service, &health}, &port,
                                *server_credentials, kMaxFinishedBytes);
  if (!server.ok()) {
    Log()->critical("{}", server.status().message());
    return 1;
  }
  std::unique_ptr<grpc::Server> scaler_server;
  if (const std::string scaler_address = ListenAddress(absl::GetFlag(FLAGS_scaler_listen), "127.0.0.1");
      !scaler_address.empty()) {
    int scaler_port = 0;
    auto started = StartGrpcServer(scaler_address, {&scaler}, &scaler_port, *server_credentials);
    if (!started.ok()) {
      Log()->critical("scaler: {}", started.status().message());
      return 1;
    }
    scaler_server = *std::move(started);
    Log()->info("external scaler on {}",
                scaler_address.substr(0, scaler_address.rfind(':') + 1) + std::to_string(scaler_port));
  }
  auto metrics = MaybeStartMetrics(absl::GetFlag(FLAGS_metrics_listen), [&db] { return DatabaseReachable(db); });
  if (!metrics.ok()) {
    Log()->critical("{}", metrics.status().message());
    return 1;
  }
  Metrics::Global().GaugeFamily(
      "buildd_broker_pending_tasks",
      "Tasks waiting for a runner, by provider and required labels (the database's count: the "
      "same from every replica).",
      [&store] { return PendingSeries(store); });
  Metrics::Global().Gauge("buildd_broker_journal_batches", "Transactions committed by the journal.",
                          [&journal] { return static_cast<double>(journal.committed_batches()); });
  Metrics::Global().Gauge("buildd_broker_journal_ops", "Operations committed by the journal.",
                          [&journal] { return static_cast<double>(journal.committed_ops()); });
  Metrics::Global().Gauge("buildd_broker_journal_busy_seconds", "Time the journal spent in transactions.",
                          [&journal] { return journal.busy_us() / 1e6; });
  Metrics::Global().Gauge("buildd_broker_journal_commit_seconds",
                          "Of that, the time in each batch's final write and commit.",
                          [&journal] { return journal.commit_us() / 1e6; });
  Log()->info("broker listening on {}{}", address.substr(0, address.rfind(':') + 1) + std::to_string(port),
              TlsServerFlags().enabled() ? " (TLS)" : "");

  const int sig = WaitForTermination();
  Log()->info("signal {} received, draining", sig);
  health.Drain();
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (scaler_server) scaler_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  recheck.cancel();
  feed.Stop();
  dispatch.Stop();
  pulls.Stop();
  dispatcher.Stop();
  workers.join();
  action_dispatch = nullptr;
  pull_requests = nullptr;
  stream_pool.join();
  journal.Stop();
  work.reset();
  timers.stop();
  timer_thread.join();
  Log()->info("stopped");
  return 0;
}
