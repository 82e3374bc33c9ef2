#ifndef BUILDD_TESTS_TESTING_MESH_H_
#define BUILDD_TESTS_TESTING_MESH_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/testing/pg_fixture.h"
#include "tests/testing/process.h"

namespace buildd::testing {

// The real binaries as child processes on free loopback ports, over a fresh
// database: accounts, broker and (optionally) gateway; runners on demand.
class Mesh {
 public:
  struct Options {
    bool gateway = true;
    int lease_grace_ms = 30000;
    int sse_heartbeat_ms = 15000;
    // More flags for the broker.
    std::vector<std::string> broker_args;
    // Every gRPC link on TLS (certificates from scripts/tls_certs.sh in
    // tls_dir()); with `mtls`, the broker and accounts also require client
    // certificates.
    bool tls = false;
    bool mtls = false;
    // As a Kubernetes deployment runs them: `--migrate=only` of accounts and
    // broker first (the chart's hook Job), then the services with
    // `--migrate=check`.
    bool migrate_first = false;
  };
  Mesh() : Mesh(Options{}) {}
  explicit Mesh(Options options);
  ~Mesh();

  const std::string& admin_key() const { return admin_key_; }
  // The secret accounts and the broker share (WatchChanges, credentials).
  const std::string& service_key() const { return service_key_; }
  std::string accounts_addr() const;
  std::string broker_addr() const;
  int gateway_port() const { return gateway_port_; }
  std::string gateway_url() const;
  int broker_metrics_port() const { return broker_metrics_port_; }
  const std::string& database_url() const { return db_.url(); }
  const std::string& dir() const { return dir_; }
  // ca.pem, server.pem/key and client.pem/key, with Options::tls.
  std::string tls_dir() const { return dir_ + "/tls"; }
  Process& accounts() { return *accounts_; }
  Process& broker() { return *broker_; }
  Process& gateway() { return *gateway_; }

  // Starts a runner with `api_key` (and `env` on top of the test's
  // environment); waits until the broker logged it.
  Process& StartRunner(const std::string& api_key, const std::string& name,
                       const std::vector<std::string>& extra_args = {},
                       const std::map<std::string, std::string>& env = {});
  // Restarts the broker on the same port (its runners reconnect).
  void RestartBroker();

  // Another broker replica on the mesh's database, with a gateway of its
  // own; `broker_args` are more flags for it.
  struct Replica {
    std::unique_ptr<Process> broker;
    std::unique_ptr<Process> gateway;
    int broker_port = 0;
    int gateway_port = 0;
    std::string broker_addr() const;
    std::string gateway_url() const;
  };
  Replica& StartReplica(const std::vector<std::string>& broker_args = {});
  // Starts a runner on the gRPC target `server` (e.g. a replica's address,
  // or several: "ipv4:127.0.0.1:1,127.0.0.1:2"); waits until `broker`
  // logged it.
  Process& StartRunnerAt(const std::string& server, Process& broker, const std::string& api_key,
                         const std::string& name, const std::vector<std::string>& extra_args = {},
                         const std::map<std::string, std::string>& env = {});

 private:
  void StartBroker();
  std::unique_ptr<Process> StartBrokerProcess(int port, int metrics_port, const std::string& log,
                                              const std::vector<std::string>& more_args);
  std::unique_ptr<Process> StartGatewayProcess(int port, const std::string& broker_addr,
                                               const std::string& log);
  // TLS flags of a server and of a client of the mesh's services.
  std::vector<std::string> ServerTlsArgs() const;
  std::vector<std::string> ClientTlsArgs() const;

  Options options_;
  TestDatabase db_;
  std::string dir_;
  std::string admin_key_;
  std::string pepper_;
  std::string master_key_;
  std::string session_key_;
  std::string service_key_;
  int accounts_port_ = 0;
  int broker_port_ = 0;
  int gateway_port_ = 0;
  int broker_metrics_port_ = 0;
  int broker_starts_ = 0;
  std::unique_ptr<Process> accounts_;
  std::unique_ptr<Process> broker_;
  std::unique_ptr<Process> gateway_;
  std::vector<std::unique_ptr<Process>> runners_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_MESH_H_
