#include "tests/gateway/gateway_process.h"

#include <signal.h>

#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace buildd::gateway::fake {

absl::StatusOr<std::unique_ptr<GatewayProcess>> GatewayProcess::Start(
    const FakeBackends& backends, const std::vector<std::string>& args,
    const buildd::testing::ProcessOptions& options) {
  std::unique_ptr<GatewayProcess> gateway(new GatewayProcess);
  gateway->dir_ = buildd::testing::MakeTempDir("gateway-");
  if (gateway->dir_.empty()) return absl::InternalError("no temporary directory");
  std::vector<std::string> all = {"--listen=127.0.0.1:0",
                                  "--accounts_addr=" + backends.accounts_server.address(),
                                  "--broker_addr=" + backends.broker_server.address()};
  all.insert(all.end(), args.begin(), args.end());
  gateway->process_ = buildd::testing::Process::Start(BUILDD_GATEWAY_BINARY, all, {},
                                                      gateway->dir_ + "/gateway.log", options);
  constexpr char kListening[] = "gateway listening on ";
  if (!gateway->process_->WaitForLog(kListening, 10000)) {
    return absl::UnavailableError(absl::StrCat("the gateway did not start:\n", gateway->Log()));
  }
  const std::string log = gateway->Log();
  const size_t start = log.find(kListening) + sizeof kListening - 1;
  gateway->url_ = log.substr(start, log.find('\n', start) - start);
  if (!absl::SimpleAtoi(gateway->url_.substr(gateway->url_.rfind(':') + 1), &gateway->port_)) {
    return absl::InternalError(absl::StrCat("no port in ", gateway->url_));
  }
  return gateway;
}

GatewayProcess::~GatewayProcess() {
  if (process_) process_->Stop(SIGTERM, 10000);
  buildd::testing::RemoveUnlessFailed(dir_, "gateway's logs");
}

size_t GatewayProcess::LogLines() const { return LogLinesWith(""); }

size_t GatewayProcess::LogLinesWith(const std::string& needle) const {
  std::istringstream log(Log());
  size_t lines = 0;
  for (std::string line; std::getline(log, line);) {
    if (absl::StrContains(line, needle)) ++lines;
  }
  return lines;
}

}  // namespace buildd::gateway::fake
