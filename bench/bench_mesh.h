#ifndef BUILDD_BENCH_BENCH_MESH_H_
#define BUILDD_BENCH_BENCH_MESH_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "tests/testing/process.h"

namespace buildd::bench {

// The real buildd-accounts, buildd-broker and (optionally) buildd-gateway
// binaries as child processes on free loopback ports, over the benchmark's
// database, with an admin key made for the run.
class BenchMesh {
 public:
  struct Options {
    std::string database_url;
    std::string work_dir;  // logs
    bool gateway = false;
    std::vector<std::string> broker_args;
  };
  static absl::StatusOr<std::unique_ptr<BenchMesh>> Start(Options options);
  ~BenchMesh();

  // Stops the broker and starts a fresh one on a new port, with `extra_args`
  // on top of Options::broker_args and RLIMIT_NOFILE `open_files` (0: ours).
  // REQUIRES: the gateway is stopped (it would still dial the old port).
  absl::Status RestartBroker(const std::vector<std::string>& extra_args, uint64_t open_files);
  void StopGateway();
  // Another broker replica on the same database; its channel.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> StartReplica();
  // Stops every service (gateway, broker, accounts) with SIGTERM.
  void Stop();

  testing::Process& broker() { return *broker_; }
  testing::Process& accounts() { return *accounts_; }
  std::string broker_addr() const;
  int gateway_port() const { return gateway_port_; }
  int metrics_port() const { return metrics_port_; }
  const std::shared_ptr<grpc::Channel>& broker_channel() const { return broker_channel_; }

  // A service account (no worker limit to speak of) granted claim and
  // create on `workspaces`; returns its API key.
  absl::StatusOr<std::string> CreateAccount(const std::string& name,
                                            const std::vector<std::string>& workspaces);
  absl::StatusOr<std::string> CreateWorkspace(const std::string& name);

 private:
  explicit BenchMesh(Options options) : options_(std::move(options)) {}
  absl::Status StartBroker(const std::vector<std::string>& extra_args, uint64_t open_files);
  std::unique_ptr<testing::Process> StartBrokerProcess(int port, int metrics_port,
                                                       const std::string& log,
                                                       const std::vector<std::string>& extra_args,
                                                       uint64_t open_files);

  Options options_;
  std::string admin_key_;
  std::string service_key_;
  std::string session_key_;
  int accounts_port_ = 0;
  int broker_port_ = 0;
  int metrics_port_ = 0;
  int gateway_port_ = 0;
  int broker_starts_ = 0;
  std::unique_ptr<testing::Process> accounts_;
  std::unique_ptr<testing::Process> broker_;
  std::unique_ptr<testing::Process> gateway_;
  std::vector<std::unique_ptr<testing::Process>> replicas_;
  std::shared_ptr<grpc::Channel> accounts_channel_;
  std::shared_ptr<grpc::Channel> broker_channel_;
};

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_BENCH_MESH_H_
