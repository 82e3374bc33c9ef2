// The buildd-gateway binary with --tls_cert and --tls_key: HTTPS only, a
// renewed certificate served without a restart, event streams over TLS, and
// the header timeout covering the handshake.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/gateway/gateway_process.h"
#include "tests/testing/held_connections.h"
#include "tests/testing/http_client.h"
#include "tests/testing/process.h"

namespace buildd::gateway::fake {
namespace {

using ::buildd::testing::HeldConnections;
using ::buildd::testing::HttpConnection;
using ::buildd::testing::HttpResult;
using ::buildd::testing::SseStream;
using ::buildd::testing::TlsClientOptions;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Certificates as `./buildd up --tls` makes them, in a directory of their
// own; the gateway is started with its server.pem and server.key.
class TlsGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = buildd::testing::MakeTempDir("gateway-tls-");
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(buildd::testing::MakeTlsCertificates(dir_));
    trust_.ca_file = dir_ + "/ca.pem";
  }

  void TearDown() override { buildd::testing::RemoveUnlessFailed(dir_, "certificates"); }

  // A new server certificate and key from the same CA, put in place of the
  // old ones the way a renewal does (rename over them). Returns the new
  // certificate.
  std::string Renew() {
    const std::string renewal = dir_ + "/renewal";
    std::filesystem::create_directory(renewal);
    for (const char* file : {"ca.pem", "ca.key"}) {
      std::filesystem::copy_file(dir_ + "/" + file, renewal + "/" + file);
    }
    EXPECT_TRUE(buildd::testing::MakeTlsCertificates(renewal));
    std::filesystem::rename(renewal + "/server.key", dir_ + "/server.key");
    std::filesystem::rename(renewal + "/server.pem", dir_ + "/server.pem");
    return ReadFile(dir_ + "/server.pem");
  }

  absl::StatusOr<std::unique_ptr<GatewayProcess>> StartGateway(std::vector<std::string> args = {}) {
    args.push_back("--tls_cert=" + dir_ + "/server.pem");
    args.push_back("--tls_key=" + dir_ + "/server.key");
    return GatewayProcess::Start(backends_, args);
  }

  FakeBackends backends_;
  std::string dir_;
  TlsClientOptions trust_;
};

TEST_F(TlsGatewayTest, ServesHttpsOnlyAndPicksUpARenewedCertificateWithoutARestart) {
  const std::string first_cert = ReadFile(dir_ + "/server.pem");
  auto gateway = StartGateway();
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const std::string& url = (*gateway)->url();
  ASSERT_TRUE(absl::StartsWith(url, "https://127.0.0.1:")) << url;

  auto first = HttpConnection::Open(url, absl::Seconds(5), trust_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->PeerCertificate(), first_cert);
  HttpResult health = (*first)->Request("GET", "/health");
  EXPECT_EQ(health.status, 200) << health.error;
  EXPECT_EQ(health.body, R"({"status":"ok","accounts":"SERVING","broker":"SERVING"})");

  // Without the test CA the certificate is not trusted: verification is on.
  EXPECT_FALSE(HttpConnection::Open(url, absl::Seconds(5), TlsClientOptions{}).ok());
  // Plain HTTP on the HTTPS port gets no HTTP answer.
  const HttpResult plain = buildd::testing::Request(
      "GET", absl::StrCat("127.0.0.1:", (*gateway)->port()), "/health", {}, "", absl::Seconds(3));
  EXPECT_EQ(plain.status, 0) << plain.body;

  // Renewed: new connections get the new certificate once the gateway looks
  // at the files again (at most once a second).
  const std::string second_cert = Renew();
  ASSERT_NE(second_cert, first_cert);
  std::string served;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    auto next = HttpConnection::Open(url, absl::Seconds(5), trust_);
    ASSERT_TRUE(next.ok()) << next.status();
    served = (*next)->PeerCertificate();
    if (served == second_cert) {
      EXPECT_EQ((*next)->Request("GET", "/health").status, 200);
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(served, second_cert);
  // The connection made before keeps working on the certificate it began with.
  health = (*first)->Request("GET", "/health");
  EXPECT_EQ(health.status, 200) << health.error;
  EXPECT_EQ((*gateway)->LogLinesWith("loaded the changed certificate"), 1u) << (*gateway)->Log();
}

TEST_F(TlsGatewayTest, EventStreamsWorkOverTls) {
  auto gateway = StartGateway();
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  auto events = SseStream::Open((*gateway)->url(), "/api/events?taskId=t1",
                                {{"Authorization", "Bearer buildd_user_0123456789abcdef"}},
                                absl::Seconds(5), trust_);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ((*events)->status(), 200) << (*events)->body();
  EXPECT_EQ((*events)->Header("Content-Type"), "text/event-stream");
  ASSERT_TRUE(backends_.broker.WaitForOpenSubscriptions(1, absl::Seconds(5)));

  pb::Event event;
  event.set_id(7);
  event.set_type("output");
  event.set_task_id("t1");
  event.set_text("over tls");
  backends_.broker.Publish(event);
  auto item = (*events)->NextEvent(absl::Seconds(5));
  ASSERT_TRUE(item.ok()) << item.status();
  EXPECT_EQ(item->id, "7");
  EXPECT_EQ(item->event, "output");
  EXPECT_TRUE(absl::StrContains(item->data, R"("text":"over tls")")) << item->data;

  // The browser goes away: the gateway cancels the subscription.
  (*events)->Close();
  EXPECT_TRUE(backends_.broker.WaitForCancelledSubscriptions(1, absl::Seconds(5)));
}

TEST_F(TlsGatewayTest, AStalledHandshakeIsClosedAtTheHeaderTimeout) {
  auto gateway = StartGateway({"--header_timeout_ms=1000"});
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  // The first byte of a TLS record (a handshake), then nothing.
  HeldConnections stalled;
  const absl::Time opened = absl::Now();
  ASSERT_EQ(stalled.Open((*gateway)->port(), 1, "\x16"), 1u);
  while (stalled.CountClosed() == 0 && absl::Now() - opened < absl::Seconds(5)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const absl::Duration closed_after = absl::Now() - opened;
  EXPECT_EQ(stalled.CountClosed(), 1u);
  EXPECT_GE(closed_after, absl::Milliseconds(900));
  EXPECT_LT(closed_after, absl::Seconds(3));
}

}  // namespace
}  // namespace buildd::gateway::fake
