// buildd-gateway: the REST + SSE front of the mesh. Wires the gRPC clients
// of buildd-accounts and buildd-broker to the HTTP server.

#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/grpc_server.h"
#include "common/logging.h"
#include "common/tls.h"
#include "gateway/accounts_client.h"
#include "gateway/broker_client.h"
#include "gateway/http_server.h"
#include "gateway/rest_api.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8080",
          "HTTP listen address, host:port (port 0 picks a free port)");
ABSL_FLAG(int, max_connections, 4096,
          "Open HTTP connections at most, lowered to fit the open-file limit; a connection "
          "beyond it is answered 503 at once");
ABSL_FLAG(int, header_timeout_ms, 10000,
          "How long a request header may take, whole; for a new connection counted from the "
          "connection, the TLS handshake included");
ABSL_FLAG(std::string, accounts_addr, "127.0.0.1:7001", "gRPC address of buildd-accounts");
ABSL_FLAG(std::string, broker_addr, "127.0.0.1:7002", "gRPC address of buildd-broker");
ABSL_FLAG(int, sse_heartbeat_ms, 15000, "Idle time after which an SSE stream gets a comment");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(std::vector<std::string>, allowed_origins, {},
          "origins (scheme://host:port, comma-separated) besides the gateway's own whose pages may "
          "make cookie-signed changes, e.g. behind a proxy that rewrites Host");

int main(int argc, char** argv) {
  buildd::ParseFlagsWithEnv(argc, argv,
                            {{"listen", "BUILDD_GATEWAY_LISTEN"},
                             {"max_connections", "BUILDD_GATEWAY_MAX_CONNECTIONS"},
                             {"header_timeout_ms", "BUILDD_GATEWAY_HEADER_TIMEOUT_MS"},
                             {"accounts_addr", "BUILDD_ACCOUNTS_ADDR"},
                             {"broker_addr", "BUILDD_BROKER_ADDR"},
                             {"sse_heartbeat_ms", "BUILDD_SSE_HEARTBEAT_MS"},
                             {"log_level", "BUILDD_LOG_LEVEL"}},
                            "buildd-gateway: REST and SSE for the buildd services");
  buildd::InitLogging("gateway", absl::GetFlag(FLAGS_log_level));
  namespace gw = buildd::gateway;

  // Every thread started from here on inherits the mask; main waits for the
  // signals with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const int heartbeat_ms = absl::GetFlag(FLAGS_sse_heartbeat_ms);
  if (heartbeat_ms <= 0) {
    std::fprintf(stderr, "--sse_heartbeat_ms must be positive\n");
    return 2;
  }

  auto credentials = buildd::ChannelCredentials(buildd::TlsClientFlags());
  if (!credentials.ok()) {
    std::fprintf(stderr, "%s\n", std::string(credentials.status().message()).c_str());
    return 2;
  }
  gw::ClientOptions client_options;
  const std::string accounts_addr = absl::GetFlag(FLAGS_accounts_addr);
  const std::string broker_addr = absl::GetFlag(FLAGS_broker_addr);
  std::shared_ptr<gw::AccountsClient> accounts = gw::NewGrpcAccountsClient(
      grpc::CreateChannel(accounts_addr, *credentials), client_options);
  // Subscribe streams are long-lived: keepalive pings notice a dead broker.
  std::shared_ptr<gw::BrokerClient> broker = gw::NewGrpcBrokerClient(
      grpc::CreateCustomChannel(broker_addr, *credentials, buildd::StreamChannelArguments()),
      client_options);

  gw::RestApiOptions api_options;
  api_options.sse.heartbeat = absl::Milliseconds(heartbeat_ms);
  gw::HttpServerOptions server_options;
  server_options.listen = buildd::ListenAddress(absl::GetFlag(FLAGS_listen), "127.0.0.1");
  server_options.allowed_origins = absl::GetFlag(FLAGS_allowed_origins);
  server_options.max_connections = absl::GetFlag(FLAGS_max_connections);
  server_options.header_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_header_timeout_ms));
  if (server_options.max_connections <= 0 ||
      server_options.header_timeout <= absl::ZeroDuration()) {
    std::fprintf(stderr, "--max_connections and --header_timeout_ms must be positive\n");
    return 2;
  }
  // --tls_cert and --tls_key (common/tls.h) make the gateway serve HTTPS.
  const buildd::TlsServerFiles https = buildd::TlsServerFlags();
  if (!https.client_ca.empty()) {
    std::fprintf(stderr, "--tls_client_ca: the gateway does not ask browsers for certificates\n");
    return 2;
  }
  server_options.tls = {https.cert, https.key};
  auto server =
      gw::HttpServer::Start(server_options, gw::BuildRouter(accounts, broker, api_options));
  if (!server.ok()) {
    buildd::Log()->error("gateway: {}", server.status().ToString());
    return 1;
  }
  const std::string& host = (*server)->host();
  const bool ipv6 = host.find(':') != std::string::npos;
  std::printf("gateway listening on %s://%s%s%s:%d\n", (*server)->scheme(), ipv6 ? "[" : "",
              host.c_str(), ipv6 ? "]" : "", (*server)->port());
  std::fflush(stdout);
  buildd::Log()->info("gateway listening on {}:{} accounts={} broker={}", host, (*server)->port(),
                      accounts_addr, broker_addr);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  buildd::Log()->info("gateway: signal {}, shutting down", signal_number);
  (*server)->Stop(absl::Seconds(15));
  server->reset();
  buildd::Log()->info("gateway: stopped");
  return 0;
}
