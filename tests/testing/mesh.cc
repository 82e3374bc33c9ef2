#include "tests/testing/mesh.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/ids.h"

namespace buildd::testing {

Mesh::Mesh(Options options) : options_(options) {
  dir_ = MakeTempDir("buildd-mesh-");
  admin_key_ = absl::StrCat("buildd_service_", RandomBase64Url(32));
  pepper_ = RandomHex(16);
  master_key_ = RandomHex(32);
  session_key_ = RandomHex(32);
  service_key_ = RandomHex(32);
  if (options_.tls || options_.mtls) {
    options_.tls = true;
    const std::string make = absl::StrCat("bash ", SourceFile("scripts/tls_certs.sh"), " ", tls_dir());
    EXPECT_EQ(std::system(make.c_str()), 0) << make;
  }
  if (options_.migrate_first) {
    for (const char* service : {"accounts", "broker"}) {
      auto job = Process::Start(BuiltBinary(absl::StrCat("services/", service, "/buildd-", service)),
                                {"--migrate=only"}, {{"BUILDD_DATABASE_URL", db_.url()}},
                                absl::StrCat(dir_, "/migrate-", service, ".log"));
      const int status = job->Wait(60000);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << job->Log();
    }
  }
  const std::string migrate = options_.migrate_first ? "--migrate=check" : "--migrate=apply";
  accounts_port_ = FreePort();
  std::vector<std::string> accounts_args = {absl::StrCat("--listen=127.0.0.1:", accounts_port_), migrate};
  for (const std::string& arg : ServerTlsArgs()) accounts_args.push_back(arg);
  accounts_ = Process::Start(BuiltBinary("services/accounts/buildd-accounts"), accounts_args,
                             {{"BUILDD_DATABASE_URL", db_.url()},
                              {"BUILDD_KEY_PEPPER", pepper_},
                              {"BUILDD_MASTER_KEY", master_key_},
                              {"BUILDD_ADMIN_KEY", admin_key_},
                              {"BUILDD_SERVICE_KEY", service_key_}},
                             dir_ + "/accounts.log");
  EXPECT_TRUE(accounts_->WaitForLog("accounts listening on", 30000)) << accounts_->Log();
  broker_port_ = FreePort();
  broker_metrics_port_ = FreePort();
  StartBroker();
  if (options_.gateway) {
    gateway_port_ = FreePort();
    gateway_ = StartGatewayProcess(gateway_port_, broker_addr(), dir_ + "/gateway.log");
  }
}

std::unique_ptr<Process> Mesh::StartGatewayProcess(int port, const std::string& broker_addr,
                                                   const std::string& log) {
  std::vector<std::string> args = {absl::StrCat("--listen=127.0.0.1:", port),
                                   absl::StrCat("--accounts_addr=", accounts_addr()),
                                   absl::StrCat("--broker_addr=", broker_addr),
                                   absl::StrCat("--sse_heartbeat_ms=", options_.sse_heartbeat_ms)};
  for (const std::string& arg : ClientTlsArgs()) args.push_back(arg);
  auto gateway = Process::Start(BuiltBinary("gateway/buildd-gateway"), args, {}, log);
  EXPECT_TRUE(gateway->WaitForLog("gateway listening on", 30000)) << gateway->Log();
  return gateway;
}

Mesh::~Mesh() {
  for (auto& r : runners_) r->Stop(SIGTERM, 10000);
  for (auto& r : replicas_) {
    if (r->gateway) r->gateway->Stop(SIGTERM, 10000);
    if (r->broker) r->broker->Stop(SIGTERM, 10000);
  }
  if (gateway_) gateway_->Stop(SIGTERM, 10000);
  if (broker_) broker_->Stop(SIGTERM, 10000);
  if (accounts_) accounts_->Stop(SIGTERM, 10000);
  // The logs, worktrees and repositories stay for a failed test only.
  RemoveUnlessFailed(dir_, "mesh's logs and files");
}

std::string Mesh::accounts_addr() const { return absl::StrCat("127.0.0.1:", accounts_port_); }
std::string Mesh::gateway_url() const { return absl::StrCat("http://127.0.0.1:", gateway_port_); }
std::string Mesh::broker_addr() const { return absl::StrCat("127.0.0.1:", broker_port_); }

void Mesh::StartBroker() {
  ++broker_starts_;
  broker_ = StartBrokerProcess(broker_port_, broker_metrics_port_,
                               absl::StrCat(dir_, "/broker.", broker_starts_, ".log"), options_.broker_args);
}

std::unique_ptr<Process> Mesh::StartBrokerProcess(int port, int metrics_port, const std::string& log,
                                                  const std::vector<std::string>& more_args) {
  std::vector<std::string> args = {absl::StrCat("--listen=127.0.0.1:", port),
                                   absl::StrCat("--accounts_addr=", accounts_addr()),
                                   absl::StrCat("--lease_grace_ms=", options_.lease_grace_ms),
                                   absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port),
                                   options_.migrate_first ? "--migrate=check" : "--migrate=apply"};
  for (const std::string& arg : ServerTlsArgs()) args.push_back(arg);
  for (const std::string& arg : ClientTlsArgs()) args.push_back(arg);
  args.insert(args.end(), more_args.begin(), more_args.end());
  auto broker = Process::Start(BuiltBinary("services/broker/buildd-broker"), args,
                               {{"BUILDD_DATABASE_URL", db_.url()},
                                {"BUILDD_SESSION_KEY", session_key_},
                                {"BUILDD_SERVICE_KEY", service_key_}},
                               log);
  EXPECT_TRUE(broker->WaitForLog("broker listening on", 30000)) << broker->Log();
  return broker;
}

Mesh::Replica& Mesh::StartReplica(const std::vector<std::string>& broker_args) {
  auto replica = std::make_unique<Replica>();
  const int n = static_cast<int>(replicas_.size()) + 2;
  replica->broker_port = FreePort();
  replica->broker = StartBrokerProcess(replica->broker_port, FreePort(),
                                       absl::StrCat(dir_, "/broker-replica", n, ".log"), broker_args);
  replica->gateway_port = FreePort();
  replica->gateway = StartGatewayProcess(replica->gateway_port, replica->broker_addr(),
                                         absl::StrCat(dir_, "/gateway-replica", n, ".log"));
  replicas_.push_back(std::move(replica));
  return *replicas_.back();
}

std::string Mesh::Replica::broker_addr() const { return absl::StrCat("127.0.0.1:", broker_port); }
std::string Mesh::Replica::gateway_url() const {
  return absl::StrCat("http://127.0.0.1:", gateway_port);
}

std::vector<std::string> Mesh::ServerTlsArgs() const {
  if (!options_.tls) return {};
  std::vector<std::string> args = {absl::StrCat("--tls_cert=", tls_dir(), "/server.pem"),
                                   absl::StrCat("--tls_key=", tls_dir(), "/server.key")};
  if (options_.mtls) args.push_back(absl::StrCat("--tls_client_ca=", tls_dir(), "/ca.pem"));
  return args;
}

std::vector<std::string> Mesh::ClientTlsArgs() const {
  if (!options_.tls) return {};
  std::vector<std::string> args = {absl::StrCat("--tls_ca=", tls_dir(), "/ca.pem")};
  if (options_.mtls) {
    args.push_back(absl::StrCat("--tls_client_cert=", tls_dir(), "/client.pem"));
    args.push_back(absl::StrCat("--tls_client_key=", tls_dir(), "/client.key"));
  }
  return args;
}

void Mesh::RestartBroker() {
  broker_->Stop(SIGTERM, 10000);
  StartBroker();
}

Process& Mesh::StartRunner(const std::string& api_key, const std::string& name,
                           const std::vector<std::string>& extra_args,
                           const std::map<std::string, std::string>& env) {
  return StartRunnerAt(absl::StrCat(options_.tls ? "https://" : "", broker_addr()), *broker_, api_key,
                       name, extra_args, env);
}

Process& Mesh::StartRunnerAt(const std::string& server, Process& broker, const std::string& api_key,
                             const std::string& name, const std::vector<std::string>& extra_args,
                             const std::map<std::string, std::string>& env) {
  std::vector<std::string> args = {absl::StrCat("--server=", server),
                                   absl::StrCat("--name=", name),
                                   absl::StrCat("--listen=127.0.0.1:", FreePort()),
                                   absl::StrCat("--work_dir=", dir_, "/", name)};
  for (const std::string& arg : ClientTlsArgs()) args.push_back(arg);
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::map<std::string, std::string> runner_env = env;
  runner_env["BUILDD_API_KEY"] = api_key;
  runners_.push_back(Process::Start(BuiltBinary("services/runner/buildd-runner"), args, runner_env,
                                    absl::StrCat(dir_, "/runner-", name, ".log")));
  Process& runner = *runners_.back();
  EXPECT_TRUE(broker.WaitForLog(absl::StrCat("name=", name, " account="), 30000))
      << runner.Log() << broker.Log();
  return runner;
}

}  // namespace buildd::testing
