#include "bench/bench_mesh.h"

#include <signal.h>

#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "buildd/v1/accounts.grpc.pb.h"
#include "buildd/v1/broker.grpc.pb.h"
#include "common/ids.h"

namespace buildd::bench {

namespace pb = ::buildd::v1;
using testing::BuiltBinary;
using testing::FreePort;
using testing::Process;

namespace {

absl::Status Failed(const std::string& what, const Process& p) {
  return absl::UnavailableError(absl::StrCat(what, "; its log:\n", p.Log()));
}

absl::Status FromGrpc(const std::string& call, const grpc::Status& st) {
  if (st.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                      absl::StrCat(call, ": ", st.error_message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BenchMesh>> BenchMesh::Start(Options options) {
  std::unique_ptr<BenchMesh> mesh(new BenchMesh(std::move(options)));
  BenchMesh& m = *mesh;
  m.admin_key_ = absl::StrCat("buildd_service_", RandomHex(32));
  m.service_key_ = RandomHex(32);
  m.session_key_ = RandomHex(32);
  m.accounts_port_ = FreePort();
  m.accounts_ = Process::Start(
      BuiltBinary("services/accounts/buildd-accounts"),
      {Arg("listen", absl::StrCat("127.0.0.1:", m.accounts_port_))},
      {{"BUILDD_DATABASE_URL", m.options_.database_url},
       {"BUILDD_KEY_PEPPER", RandomHex(16)},
       {"BUILDD_MASTER_KEY", RandomHex(32)},
       {"BUILDD_ADMIN_KEY", m.admin_key_},
       {"BUILDD_SERVICE_KEY", m.service_key_}},
      m.options_.work_dir + "/accounts.log");
  if (!m.accounts_->WaitForLog("accounts listening on", 30000)) {
    return Failed("accounts did not start", *m.accounts_);
  }
  m.accounts_channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", m.accounts_port_),
                                            grpc::InsecureChannelCredentials());
  if (absl::Status st = m.StartBroker({}, 0); !st.ok()) return st;
  if (m.options_.gateway) {
    m.gateway_port_ = FreePort();
    m.gateway_ = Process::Start(
        BuiltBinary("gateway/buildd-gateway"),
        {Arg("listen", absl::StrCat("127.0.0.1:", m.gateway_port_)),
         Arg("accounts_addr", absl::StrCat("127.0.0.1:", m.accounts_port_)),
         Arg("broker_addr", m.broker_addr()), "--log_level=warn"},
        {}, m.options_.work_dir + "/gateway.log");
    if (!m.gateway_->WaitForLog("gateway listening on", 30000)) {
      return Failed("the gateway did not start", *m.gateway_);
    }
  }
  return mesh;
}

BenchMesh::~BenchMesh() { Stop(); }

std::unique_ptr<testing::Process> BenchMesh::StartBrokerProcess(
    int port, int metrics_port, const std::string& log, const std::vector<std::string>& extra_args,
    uint64_t open_files) {
  std::vector<std::string> args = {
      Arg("listen", absl::StrCat("127.0.0.1:", port)),
      Arg("accounts_addr", absl::StrCat("127.0.0.1:", accounts_port_)),
      Arg("metrics_listen", absl::StrCat("127.0.0.1:", metrics_port))};
  args.insert(args.end(), options_.broker_args.begin(), options_.broker_args.end());
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  testing::ProcessOptions process_options;
  process_options.max_open_files = open_files;
  return Process::Start(BuiltBinary("services/broker/buildd-broker"), args,
                        {{"BUILDD_DATABASE_URL", options_.database_url},
                         {"BUILDD_SESSION_KEY", session_key_},
                         {"BUILDD_SERVICE_KEY", service_key_}},
                        log, process_options);
}

absl::Status BenchMesh::StartBroker(const std::vector<std::string>& extra_args,
                                    uint64_t open_files) {
  ++broker_starts_;
  broker_port_ = FreePort();
  metrics_port_ = FreePort();
  broker_ = StartBrokerProcess(broker_port_, metrics_port_,
                               absl::StrCat(options_.work_dir, "/broker.", broker_starts_, ".log"),
                               extra_args, open_files);
  if (!broker_->WaitForLog("broker listening on", 30000)) {
    return Failed("the broker did not start", *broker_);
  }
  broker_channel_ = grpc::CreateChannel(broker_addr(), grpc::InsecureChannelCredentials());
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> BenchMesh::StartReplica() {
  const int port = FreePort();
  replicas_.push_back(StartBrokerProcess(
      port, FreePort(), absl::StrCat(options_.work_dir, "/broker-replica", replicas_.size() + 2, ".log"),
      {}, 0));
  if (!replicas_.back()->WaitForLog("broker listening on", 30000)) {
    return Failed("the second broker replica did not start", *replicas_.back());
  }
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
}

absl::Status BenchMesh::RestartBroker(const std::vector<std::string>& extra_args,
                                      uint64_t open_files) {
  broker_->Stop(SIGTERM, 10000);
  return StartBroker(extra_args, open_files);
}

void BenchMesh::StopGateway() {
  if (gateway_) gateway_->Stop(SIGTERM, 10000);
}

void BenchMesh::Stop() {
  StopGateway();
  for (auto& r : replicas_) r->Stop(SIGTERM, 10000);
  if (broker_) broker_->Stop(SIGTERM, 10000);
  if (accounts_) accounts_->Stop(SIGTERM, 10000);
}

std::string BenchMesh::broker_addr() const { return absl::StrCat("127.0.0.1:", broker_port_); }

absl::StatusOr<std::string> BenchMesh::CreateWorkspace(const std::string& name) {
  auto stub = pb::BrokerService::NewStub(broker_channel_);
  grpc::ClientContext ctx;
  Auth(ctx, admin_key_);
  pb::CreateWorkspaceRequest req;
  req.set_name(name);
  pb::Workspace ws;
  if (absl::Status st = FromGrpc("CreateWorkspace", stub->CreateWorkspace(&ctx, req, &ws));
      !st.ok()) {
    return st;
  }
  return ws.id();
}

absl::StatusOr<std::string> BenchMesh::CreateAccount(const std::string& name,
                                                     const std::vector<std::string>& workspaces) {
  auto stub = pb::AccountService::NewStub(accounts_channel_);
  grpc::ClientContext ctx;
  Auth(ctx, admin_key_);
  pb::CreateAccountRequest req;
  req.set_type(pb::Account::service);
  req.set_name(name);
  req.set_max_concurrent_workers(100000);
  pb::CreateAccountResponse account;
  if (absl::Status st = FromGrpc("CreateAccount", stub->CreateAccount(&ctx, req, &account));
      !st.ok()) {
    return st;
  }
  for (const std::string& workspace_id : workspaces) {
    grpc::ClientContext grant_ctx;
    Auth(grant_ctx, admin_key_);
    pb::GrantWorkspaceRequest g;
    g.set_account_id(account.id());
    g.set_workspace_id(workspace_id);
    g.set_can_claim(true);
    g.set_can_create(true);
    pb::Grant grant;
    if (absl::Status st = FromGrpc("GrantWorkspace", stub->GrantWorkspace(&grant_ctx, g, &grant));
        !st.ok()) {
      return st;
    }
  }
  return account.api_key();
}

}  // namespace buildd::bench
