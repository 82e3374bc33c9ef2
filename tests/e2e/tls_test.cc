// Every link of the mesh on TLS, as scripts/tls_certs.sh makes the
// certificates for `./buildd up --tls`: the services verify each other, the
// broker and accounts require client certificates, and clients that speak
// plaintext or bring no certificate are refused.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "buildd/v1/broker.grpc.pb.h"
#include "common/tls.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/files.h"
#include "tests/testing/reflection_client.h"

namespace buildd {
namespace {

namespace pb = ::buildd::v1;
using ::testing::HasSubstr;
using ::testing::Not;

Mesh::Options MutualTls() {
  Mesh::Options options;
  options.tls = true;
  options.mtls = true;
  options.broker_args = {"--tls_reload_s=1"};
  return options;
}

// A client of the mesh with its CA and, when `with_cert`, its client
// certificate.
std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(const Mesh& mesh, bool with_cert) {
  TlsClientFiles files;
  files.tls = true;
  files.ca = mesh.tls_dir() + "/ca.pem";
  if (with_cert) {
    files.cert = mesh.tls_dir() + "/client.pem";
    files.key = mesh.tls_dir() + "/client.key";
  }
  auto credentials = ChannelCredentials(files);
  EXPECT_TRUE(credentials.ok()) << credentials.status();
  return credentials.ok() ? *credentials : nullptr;
}

grpc::Status ListWorkspaces(const std::string& address,
                            std::shared_ptr<grpc::ChannelCredentials> credentials,
                            const std::string& key) {
  auto stub = pb::BrokerService::NewStub(grpc::CreateChannel(address, credentials));
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + key);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pb::ListWorkspacesRequest request;
  pb::ListWorkspacesResponse response;
  return stub->ListWorkspaces(&context, request, &response);
}

class TlsTest : public MeshTest {
 protected:
  TlsTest() : MeshTest(MutualTls()) {}
};

TEST_F(TlsTest, TheWholeMeshRunsATaskOnMutualTls) {
  // The gateway reaches accounts and the broker with its client certificate.
  Setup s = CreateAccountAndWorkspace("service", true, true);
  testing::Process& runner = mesh_.StartRunner(s.api_key, "tls-runner");
  auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                                {{"Authorization", "Bearer " + mesh_.admin_key()}});
  ASSERT_TRUE(stream.ok());
  const std::string id = CreateTask(s.api_key, s.workspace_id, "echo over-tls");
  std::string out;
  for (const SseItem& item : ReadTaskEvents(**stream, id, {"completed", "error", "failed"})) {
    absl::StrAppend(&out, item.event, ":", Str(Json(item.data), "text"), "\n");
  }
  EXPECT_THAT(out, HasSubstr("output:over-tls"));
  EXPECT_THAT(out, HasSubstr("completed:"));
  EXPECT_THAT(runner.Log(), HasSubstr("(TLS)"));
  EXPECT_THAT(mesh_.broker().Log(), HasSubstr("(TLS)"));
  EXPECT_THAT(mesh_.accounts().Log(), HasSubstr("(TLS)"));
}

TEST_F(TlsTest, PlaintextAndCertificatelessClientsAreRefused) {
  for (const std::string& address : {mesh_.broker_addr(), mesh_.accounts_addr()}) {
    SCOPED_TRACE(address);
    const grpc::Status plaintext =
        ListWorkspaces(address, grpc::InsecureChannelCredentials(), mesh_.admin_key());
    EXPECT_EQ(plaintext.error_code(), grpc::StatusCode::UNAVAILABLE) << plaintext.error_message();
    const grpc::Status no_cert =
        ListWorkspaces(address, TlsCredentials(mesh_, false), mesh_.admin_key());
    EXPECT_EQ(no_cert.error_code(), grpc::StatusCode::UNAVAILABLE) << no_cert.error_message();
  }
  EXPECT_TRUE(ListWorkspaces(mesh_.broker_addr(), TlsCredentials(mesh_, true), mesh_.admin_key()).ok());

  // A runner stream without a client certificate never reaches the broker.
  RawRunner raw(mesh_.broker_addr(), mesh_.admin_key(), TlsCredentials(mesh_, false));
  EXPECT_EQ(raw.Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ReflectionAndHealthAnswerOverTls) {
  for (const std::string& address : {mesh_.broker_addr(), mesh_.accounts_addr()}) {
    SCOPED_TRACE(address);
    testing::ReflectionClient client(address, TlsCredentials(mesh_, true));
    auto services = client.ListServices();
    ASSERT_TRUE(services.ok()) << services.status();
    EXPECT_THAT(*services, ::testing::Contains("grpc.health.v1.Health"));
    auto health = client.Call("grpc.health.v1.Health/Check", "");
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_THAT(*health, HasSubstr("SERVING"));
  }
}

// The certificate the broker presents to a new connection.
std::string PresentedCertificate(const Mesh& mesh) {
  auto stub = pb::BrokerService::NewStub(
      grpc::CreateChannel(mesh.broker_addr(), TlsCredentials(mesh, true)));
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + mesh.admin_key());
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pb::ListWorkspacesResponse response;
  if (!stub->ListWorkspaces(&context, pb::ListWorkspacesRequest(), &response).ok()) return "";
  auto auth = context.auth_context();
  if (auth == nullptr) return "";
  std::vector<grpc::string_ref> pem = auth->FindPropertyValues("x509_pem_cert");
  return pem.empty() ? "" : std::string(pem.front().data(), pem.front().size());
}

TEST_F(TlsTest, ARenewedCertificateIsServedWithoutARestart) {
  const std::string before = PresentedCertificate(mesh_);
  ASSERT_THAT(before, HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_EQ(before, testing::ReadFile(mesh_.tls_dir() + "/server.pem"));
  // A new server certificate from the same CA, written over the old files.
  const std::string renewed = mesh_.dir() + "/renewed";
  std::filesystem::create_directories(renewed);
  for (const char* file : {"ca.pem", "ca.key"}) {
    std::filesystem::copy_file(mesh_.tls_dir() + "/" + file, renewed + "/" + file);
  }
  ASSERT_EQ(std::system(absl::StrCat("bash ", testing::SourceFile("scripts/tls_certs.sh"), " ", renewed).c_str()), 0);
  const std::string next = testing::ReadFile(renewed + "/server.pem");
  ASSERT_NE(next, before);
  std::filesystem::copy_file(renewed + "/server.key", mesh_.tls_dir() + "/server.key",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(renewed + "/server.pem", mesh_.tls_dir() + "/server.pem",
                             std::filesystem::copy_options::overwrite_existing);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  std::string now;
  while (std::chrono::steady_clock::now() < deadline) {
    now = PresentedCertificate(mesh_);
    if (now == next) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(now, next);
  EXPECT_TRUE(mesh_.broker().Running());
}

// A runner told https:// does not fall back to plaintext.
TEST(TlsRunnerTest, AnHttpsRunnerRefusesAPlaintextBroker) {
  Mesh mesh;
  const std::string tls = mesh.dir() + "/runner-tls";
  ASSERT_EQ(std::system(absl::StrCat("bash ", testing::SourceFile("scripts/tls_certs.sh"), " ", tls).c_str()), 0);
  auto runner = testing::Process::Start(
      testing::BuiltBinary("services/runner/buildd-runner"),
      {absl::StrCat("--server=https://", mesh.broker_addr()), "--name=strict",
       absl::StrCat("--tls_ca=", tls, "/ca.pem"), absl::StrCat("--work_dir=", mesh.dir(), "/strict"),
       absl::StrCat("--listen=127.0.0.1:", testing::FreePort()), "--sandbox=none"},
      {{"BUILDD_API_KEY", mesh.admin_key()}}, mesh.dir() + "/runner-strict.log");
  // It tries, fails the handshake and backs off to try again.
  EXPECT_TRUE(runner->WaitForLog("reconnecting to", 20000)) << runner->Log();
  EXPECT_THAT(runner->Log(), Not(HasSubstr("connected to")));
  EXPECT_THAT(mesh.broker().Log(), Not(HasSubstr("name=strict")));
  runner->Stop(SIGTERM, 10000);
}

// Bad TLS flags stop a service at start with the flag's name.
TEST(TlsFlagsTest, AMissingCertificateFileNamesItsFlag) {
  const std::string dir = testing::MakeTempDir("buildd-tls-flags-");
  auto runner = testing::Process::Start(
      testing::BuiltBinary("services/runner/buildd-runner"),
      {"--server=https://127.0.0.1:1", absl::StrCat("--tls_ca=", dir, "/missing.pem"),
       absl::StrCat("--work_dir=", dir, "/w")},
      {{"BUILDD_API_KEY", "buildd_service_x"}}, dir + "/runner.log");
  const int status = runner->Wait(10000);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status;
  EXPECT_THAT(runner->Log(), HasSubstr("--tls_ca: cannot read"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace buildd
