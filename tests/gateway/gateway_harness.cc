#include "tests/gateway/gateway_harness.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "gateway/accounts_client.h"
#include "gateway/broker_client.h"

namespace buildd::gateway::fake {

GatewayHarness::GatewayHarness(HarnessOptions options) {
  static const bool logging = [] {
    const char* level = std::getenv("BUILDD_TEST_LOG_LEVEL");
    InitLogging("gateway-test", level != nullptr ? level : "warn");
    return true;
  }();
  (void)logging;
  accounts_server_ = std::make_unique<FakeServer>(&accounts_);
  broker_server_ = std::make_unique<FakeServer>(&broker_);
  ClientOptions client_options;
  std::shared_ptr<AccountsClient> accounts = NewGrpcAccountsClient(
      grpc::CreateChannel(accounts_server_->address(), grpc::InsecureChannelCredentials()),
      client_options);
  std::shared_ptr<BrokerClient> broker = NewGrpcBrokerClient(
      grpc::CreateChannel(broker_server_->address(), grpc::InsecureChannelCredentials()),
      client_options);
  RestApiOptions api;
  api.sse.heartbeat = options.sse_heartbeat;
  api.sse.commit_delay = options.sse_commit_delay;
  HttpServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  server_options.threads = 2;
  auto http = HttpServer::Start(server_options, BuildRouter(accounts, broker, api));
  if (!http.ok()) {
    std::fprintf(stderr, "gateway did not start: %s\n", http.status().ToString().c_str());
    std::abort();
  }
  http_ = std::move(*http);
}

GatewayHarness::~GatewayHarness() {
  // The gateway first: it cancels its calls, then the fakes can stop.
  http_->Stop(absl::Seconds(10));
  http_.reset();
  broker_server_.reset();
  accounts_server_.reset();
}

std::string GatewayHarness::url() const { return absl::StrCat("http://127.0.0.1:", http_->port()); }

buildd::testing::HttpResult GatewayHarness::Get(const std::string& path) {
  return buildd::testing::Request("GET", url(), path,
                                  {{"Authorization", absl::StrCat("Bearer ", kKey)}});
}

buildd::testing::HttpResult GatewayHarness::Post(const std::string& path, const std::string& body) {
  return buildd::testing::Request(
      "POST", url(), path,
      {{"Authorization", absl::StrCat("Bearer ", kKey)}, {"Content-Type", "application/json"}},
      body);
}

buildd::testing::HttpResult GatewayHarness::Delete(const std::string& path) {
  return buildd::testing::Request("DELETE", url(), path,
                                  {{"Authorization", absl::StrCat("Bearer ", kKey)}});
}

}  // namespace buildd::gateway::fake
