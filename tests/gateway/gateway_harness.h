#ifndef BUILDD_TESTS_GATEWAY_GATEWAY_HARNESS_H_
#define BUILDD_TESTS_GATEWAY_GATEWAY_HARNESS_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gateway/http_server.h"
#include "gateway/rest_api.h"
#include "tests/gateway/fake_services.h"
#include "tests/testing/http_client.h"

namespace buildd::gateway::fake {

inline constexpr char kKey[] = "buildd_user_0123456789abcdef";

struct HarnessOptions {
  absl::Duration sse_heartbeat = absl::Seconds(15);
  absl::Duration sse_commit_delay = absl::Milliseconds(300);
};

// The gateway in-process on 127.0.0.1:0, wired through real gRPC clients to
// fake services, each on its own port.
class GatewayHarness {
 public:
  explicit GatewayHarness(HarnessOptions options = {});
  ~GatewayHarness();

  FakeAccountService& accounts() { return accounts_; }
  FakeBrokerService& broker() { return broker_; }
  FakeServer& accounts_server() { return *accounts_server_; }
  FakeServer& broker_server() { return *broker_server_; }
  HttpServer& http() { return *http_; }
  // "http://127.0.0.1:<port>"
  std::string url() const;

  // Requests with `Authorization: Bearer kKey`.
  buildd::testing::HttpResult Get(const std::string& path);
  buildd::testing::HttpResult Post(const std::string& path, const std::string& body);
  buildd::testing::HttpResult Delete(const std::string& path);

 private:
  FakeAccountService accounts_;
  FakeBrokerService broker_;
  std::unique_ptr<FakeServer> accounts_server_;
  std::unique_ptr<FakeServer> broker_server_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace buildd::gateway::fake

#endif  // BUILDD_TESTS_GATEWAY_GATEWAY_HARNESS_H_
