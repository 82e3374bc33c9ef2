#ifndef BUILDD_TESTS_GATEWAY_GATEWAY_PROCESS_H_
#define BUILDD_TESTS_GATEWAY_GATEWAY_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/gateway/fake_services.h"
#include "tests/testing/process.h"

namespace buildd::gateway::fake {

// Fake accounts and broker services of this process, each on its own port,
// for a gateway binary to dial.
struct FakeBackends {
  FakeAccountService accounts;
  FakeBrokerService broker;
  FakeServer accounts_server{&accounts};
  FakeServer broker_server{&broker};
};

// The buildd-gateway binary against FakeBackends, listening on 127.0.0.1:0,
// its stdout and stderr in a log file in a directory of its own (kept when
// the test failed). Stopped with SIGTERM when destroyed.
class GatewayProcess {
 public:
  // Starts it with `args` added and waits for its "gateway listening on"
  // line.
  static absl::StatusOr<std::unique_ptr<GatewayProcess>> Start(
      const FakeBackends& backends, const std::vector<std::string>& args,
      const buildd::testing::ProcessOptions& options = {});
  ~GatewayProcess();

  // "http://127.0.0.1:<port>", or "https://…" with TLS.
  const std::string& url() const { return url_; }
  int port() const { return port_; }
  pid_t pid() const { return process_->pid(); }
  // Its own directory, for files the test hands it.
  const std::string& dir() const { return dir_; }
  std::string Log() const { return process_->Log(); }
  size_t LogLines() const;
  // Lines of the log holding `needle`.
  size_t LogLinesWith(const std::string& needle) const;

 private:
  GatewayProcess() = default;
  std::string dir_;
  std::unique_ptr<buildd::testing::Process> process_;
  std::string url_;
  int port_ = 0;
};

}  // namespace buildd::gateway::fake

#endif  // BUILDD_TESTS_GATEWAY_GATEWAY_PROCESS_H_
