// HttpServer in-process with routes of its own: timeouts, the connection cap
// and what handlers learn about HTTPS.

#include "gateway/http_server.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/held_connections.h"
#include "tests/testing/http_client.h"
#include "tests/testing/process.h"

namespace buildd::gateway {
namespace {

using ::buildd::testing::HeldConnections;
using ::buildd::testing::HttpConnection;
using ::buildd::testing::HttpResult;

// GET /secure answers "true" or "false": HttpRequest::secure.
std::shared_ptr<Router> SecureRouter() {
  auto router = std::make_shared<Router>();
  router->Get(
      "/secure",
      [](const HttpRequest& request, Reply reply) {
        reply(JsonResponse(200, request.secure ? "true" : "false"));
      },
      Auth::kNone);
  return router;
}

std::unique_ptr<HttpServer> StartServer(absl::Duration header_timeout,
                                        absl::Duration idle_timeout = absl::Seconds(60),
                                        TlsFiles tls = {}) {
  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  options.threads = 1;
  options.header_timeout = header_timeout;
  options.idle_timeout = idle_timeout;
  options.tls = std::move(tls);
  auto server = HttpServer::Start(std::move(options), SecureRouter());
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

// Waits until the server closed connection 0 of `held`; how long it took
// from `since`.
absl::Duration WaitUntilClosed(HeldConnections& held, absl::Time since) {
  while (held.CountClosed() == 0 && absl::Now() - since < absl::Seconds(10)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::Now() - since;
}

TEST(ConnectionCapTest, KeepsAnEighthOfTheOpenFileLimitAndAtLeast32Descriptors) {
  EXPECT_EQ(ConnectionCapForFileLimit(4096, 1024), 896);
  EXPECT_EQ(ConnectionCapForFileLimit(4096, 524288), 4096);
  EXPECT_EQ(ConnectionCapForFileLimit(100, 1024), 100);
  EXPECT_EQ(ConnectionCapForFileLimit(4096, 64), 32);
  EXPECT_EQ(ConnectionCapForFileLimit(4096, 16), 1);
}

TEST(HttpServerTest, TheHeaderDeadlineIsForTheWholeHeaderNotEachByte) {
  auto server = StartServer(absl::Milliseconds(600));
  ASSERT_NE(server, nullptr);
  HeldConnections slow;
  const absl::Time opened = absl::Now();
  ASSERT_EQ(slow.Open(server->port(), 1, "GET /secure HTTP/1.1\r\nX-Slow: "), 1u);
  // A byte every 50 ms would keep a per-read timeout from ever firing.
  while (slow.CountClosed() == 0 && absl::Now() - opened < absl::Seconds(5)) {
    slow.SendToEach('x');
    absl::SleepFor(absl::Milliseconds(50));
  }
  const absl::Duration closed_after = absl::Now() - opened;
  EXPECT_GE(closed_after, absl::Milliseconds(550));
  EXPECT_LT(closed_after, absl::Milliseconds(1500));
  EXPECT_EQ(slow.Received(0), "");
}

TEST(HttpServerTest, AnIdleKeepAliveConnectionIsClosedAfterTheIdleTimeout) {
  auto server = StartServer(absl::Seconds(5), absl::Milliseconds(300));
  ASSERT_NE(server, nullptr);
  HeldConnections client;
  ASSERT_EQ(client.Open(server->port(), 1, "GET /secure HTTP/1.1\r\nHost: x\r\n\r\n"), 1u);
  // The answer comes, then the connection idles.
  const absl::Time start = absl::Now();
  while (client.Received(0).find("false") == std::string::npos &&
         absl::Now() - start < absl::Seconds(5)) {
    client.CountClosed();
    absl::SleepFor(absl::Milliseconds(5));
  }
  const absl::Time answered = absl::Now();
  const absl::Duration idle = WaitUntilClosed(client, answered);
  EXPECT_GE(idle, absl::Milliseconds(250));
  EXPECT_LT(idle, absl::Seconds(2));
}

TEST(HttpServerTest, ANewConnectionThatSendsNothingIsClosedAtTheHeaderTimeout) {
  auto server = StartServer(absl::Milliseconds(300), absl::Seconds(30));
  ASSERT_NE(server, nullptr);
  HeldConnections client;
  const absl::Time opened = absl::Now();
  ASSERT_EQ(client.Open(server->port(), 1), 1u);
  const absl::Duration closed_after = WaitUntilClosed(client, opened);
  EXPECT_GE(closed_after, absl::Milliseconds(250));
  EXPECT_LT(closed_after, absl::Seconds(2));
}

TEST(HttpServerTest, RequestsKnowWhetherTheyCameOverHttps) {
  const std::string dir = buildd::testing::MakeTempDir("http-server-tls-");
  ASSERT_FALSE(dir.empty());
  ASSERT_TRUE(buildd::testing::MakeTlsCertificates(dir));
  auto https =
      StartServer(absl::Seconds(10), absl::Seconds(60), {dir + "/server.pem", dir + "/server.key"});
  ASSERT_NE(https, nullptr);
  EXPECT_STREQ(https->scheme(), "https");
  auto connection = HttpConnection::Open(absl::StrCat("https://127.0.0.1:", https->port()),
                                         absl::Seconds(5), {dir + "/ca.pem"});
  ASSERT_TRUE(connection.ok()) << connection.status();
  HttpResult secure = (*connection)->Request("GET", "/secure");
  EXPECT_EQ(secure.status, 200) << secure.error;
  EXPECT_EQ(secure.body, "true");

  auto http = StartServer(absl::Seconds(10));
  ASSERT_NE(http, nullptr);
  EXPECT_STREQ(http->scheme(), "http");
  HttpResult plain =
      buildd::testing::Request("GET", absl::StrCat("127.0.0.1:", http->port()), "/secure");
  EXPECT_EQ(plain.body, "false");
  buildd::testing::RemoveUnlessFailed(dir);
}

TEST(HttpServerTest, StartRefusesHalfATlsConfigurationAndFilesThatDoNotLoad) {
  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  options.tls.cert_file = "/nonexistent/server.pem";
  EXPECT_EQ(HttpServer::Start(options, SecureRouter()).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.tls.key_file = "/nonexistent/server.key";
  EXPECT_EQ(HttpServer::Start(options, SecureRouter()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace buildd::gateway
