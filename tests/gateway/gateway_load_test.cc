// The buildd-gateway binary under hostile load: a thousand slow clients, more
// clients than --max_connections, more connections than file descriptors.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
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

using ::buildd::testing::CpuTime;
using ::buildd::testing::HeldConnections;
using ::buildd::testing::HttpResult;
using ::buildd::testing::Request;

constexpr char kHealthy[] = R"({"status":"ok","accounts":"SERVING","broker":"SERVING"})";
// What a slowloris client sends before dribbling the rest of a header.
constexpr char kPartialHeader[] = "GET / HTTP/1.1\r\nHost: gateway\r\nX-Slow: ";

// The gateway's CPU use over a window, as a fraction of one core.
class CpuWindow {
 public:
  explicit CpuWindow(pid_t pid) : pid_(pid), cpu_(CpuTime(pid)), start_(absl::Now()) {}
  double Fraction() const { return absl::FDivDuration(CpuTime(pid_) - cpu_, absl::Now() - start_); }
  absl::Duration Wall() const { return absl::Now() - start_; }

 private:
  pid_t pid_;
  absl::Duration cpu_;
  absl::Time start_;
};

// Waits until GET /health answers 200, each try on a new connection.
HttpResult HealthWhenBack(const std::string& url, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  HttpResult health;
  do {
    health = Request("GET", url, "/health", {}, "", absl::Seconds(2));
    if (health.status == 200) break;
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < deadline);
  return health;
}

class GatewayLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The held connections and the gateway (which inherits the limit) each
    // need a descriptor per client.
    ASSERT_GE(buildd::testing::RaiseOpenFileLimit(), 1500u)
        << "the hard RLIMIT_NOFILE is too low to hold a thousand connections";
  }

  FakeBackends backends_;
};

TEST_F(GatewayLoadTest, AThousandSlowlorisClientsNeitherDelayHealthNorOutliveTheHeaderTimeout) {
  constexpr int kSlowClients = 1000;
  constexpr int kHealthChecks = 200;
  const absl::Duration header_timeout = absl::Seconds(6);
  auto gateway = GatewayProcess::Start(
      backends_, {absl::StrCat("--header_timeout_ms=", absl::ToInt64Milliseconds(header_timeout)),
                  "--log_level=warn"});
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const std::string& url = (*gateway)->url();
  ASSERT_EQ(Request("GET", url, "/health").status, 200);

  HeldConnections slow;
  const absl::Time opened = absl::Now();
  ASSERT_EQ(slow.Open((*gateway)->port(), kSlowClients, kPartialHeader), kSlowClients);

  // One more header byte on each slow connection every second, and a health
  // check on a new connection every 10 ms.
  std::vector<absl::Duration> latencies;
  absl::Time next_byte = absl::Now();
  const CpuWindow cpu((*gateway)->pid());
  for (int i = 0; i < kHealthChecks; ++i) {
    if (absl::Now() >= next_byte) {
      slow.SendToEach('x');
      next_byte += absl::Seconds(1);
    }
    const absl::Time start = absl::Now();
    const HttpResult health = Request("GET", url, "/health", {}, "", absl::Seconds(5));
    latencies.push_back(absl::Now() - start);
    ASSERT_EQ(health.status, 200) << health.error;
    ASSERT_EQ(health.body, kHealthy);
    absl::SleepFor(absl::Milliseconds(10));
  }
  const double cpu_fraction = cpu.Fraction();
  const absl::Duration window = cpu.Wall();
  std::sort(latencies.begin(), latencies.end());
  const absl::Duration p50 = latencies[latencies.size() / 2];
  const absl::Duration p99 = latencies[latencies.size() * 99 / 100];
  std::printf(
      "/health with %d slowloris clients: p50 %.2f ms, p99 %.2f ms, max %.2f ms; "
      "gateway CPU %.1f%% over %.2f s\n",
      kSlowClients, absl::ToDoubleMilliseconds(p50), absl::ToDoubleMilliseconds(p99),
      absl::ToDoubleMilliseconds(latencies.back()), 100 * cpu_fraction,
      absl::ToDoubleSeconds(window));
  EXPECT_LT(p99, absl::Milliseconds(50));
  // The window's CPU is mostly the 200 health checks' own (10% here on an
  // idle machine, more when the suite shares the cores); a gateway that
  // spins on a partial header takes a whole core.
  EXPECT_LT(cpu_fraction, 0.5);

  // Still dribbling, none is closed before its header deadline...
  ASSERT_LT(absl::Now() - opened, header_timeout - absl::Seconds(1))
      << "the health checks took too long to tell an early close from a timely one";
  EXPECT_EQ(slow.CountClosed(), 0u);
  // ...and every one is once the deadline for its whole header has passed,
  // though it never stopped sending.
  const absl::Time deadline = opened + header_timeout + absl::Seconds(3);
  size_t closed = 0;
  while ((closed = slow.CountClosed()) < slow.size() && absl::Now() < deadline) {
    slow.SendToEach('x');
    absl::SleepFor(absl::Milliseconds(100));
  }
  const absl::Duration all_closed = absl::Now() - opened;
  std::printf("all slow clients closed %.2f s after they connected (header timeout %.0f s)\n",
              absl::ToDoubleSeconds(all_closed), absl::ToDoubleSeconds(header_timeout));
  EXPECT_EQ(closed, slow.size());
  EXPECT_GE(all_closed, header_timeout - absl::Milliseconds(100));
}

TEST_F(GatewayLoadTest, BeyondMaxConnectionsNewClientsGetA503AtOnceAndTheLogStaysQuiet) {
  constexpr int kCap = 50;
  auto gateway = GatewayProcess::Start(backends_, {absl::StrCat("--max_connections=", kCap)});
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const std::string& url = (*gateway)->url();

  // Idle clients: twice the cap, and nothing else connected (so that the
  // count is exact). The first kCap are held; each other one is answered 503
  // and closed without its request being read.
  HeldConnections idle;
  ASSERT_EQ(idle.Open((*gateway)->port(), 2 * kCap), 2u * kCap);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (idle.CountClosed() < static_cast<size_t>(kCap) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(idle.CountClosed(), static_cast<size_t>(kCap));
  for (size_t i = 0; i < idle.size(); ++i) {
    const bool refused = i >= static_cast<size_t>(kCap);
    EXPECT_EQ(absl::StartsWith(idle.Received(i), "HTTP/1.1 503 "), refused)
        << "connection " << i << ": " << idle.Received(i);
  }

  // A new client gets the 503 at once, not a wait in the backlog.
  const absl::Time start = absl::Now();
  const HttpResult full = Request("GET", url, "/health", {}, "", absl::Seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_EQ(full.status, 503) << full.error;
  EXPECT_EQ(full.Header("Retry-After"), "1");
  EXPECT_EQ(full.Header("Connection"), "close");
  EXPECT_TRUE(absl::StrContains(full.body, R"("code":"UNAVAILABLE")")) << full.body;

  // Once the idle clients leave, health answers again.
  idle.CloseAll();
  const HttpResult health = HealthWhenBack(url, absl::Seconds(5));
  EXPECT_EQ(health.status, 200) << health.error;
  EXPECT_EQ(health.body, kHealthy);

  // 51 refusals, but at most a line a second about them.
  const size_t refusal_lines = (*gateway)->LogLinesWith("at the connection limit");
  EXPECT_GE(refusal_lines, 1u);
  EXPECT_LE(refusal_lines, 3u);
  EXPECT_LT((*gateway)->LogLines(), 25u) << (*gateway)->Log();
}

TEST_F(GatewayLoadTest, OutOfFileDescriptorsTheGatewayBacksOffInsteadOfSpinningAndRecovers) {
  // 64 descriptors: the default cap of 4096 is lowered to 32, and 200 idle
  // clients need more descriptors than there are, refusals included.
  constexpr int kClients = 200;
  auto gateway = GatewayProcess::Start(backends_, {}, {.max_open_files = 64});
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  EXPECT_EQ((*gateway)->LogLinesWith("max_connections lowered from 4096 to 32"), 1u)
      << (*gateway)->Log();
  const std::string& url = (*gateway)->url();
  ASSERT_EQ(Request("GET", url, "/health").status, 200);

  HeldConnections idle;
  ASSERT_EQ(idle.Open((*gateway)->port(), kClients), static_cast<size_t>(kClients));
  // Wait until accepting fails, then watch the gateway for two seconds.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while ((*gateway)->LogLinesWith("accept failed") == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE((*gateway)->LogLinesWith("accept failed"), 1u) << (*gateway)->Log();
  const CpuWindow cpu((*gateway)->pid());
  absl::SleepFor(absl::Seconds(2));
  const double cpu_fraction = cpu.Fraction();
  const size_t accept_lines = (*gateway)->LogLinesWith("accept failed");
  std::printf("out of descriptors: gateway CPU %.1f%% over %.2f s, %zu accept-failure lines\n",
              100 * cpu_fraction, absl::ToDoubleSeconds(cpu.Wall()), accept_lines);
  EXPECT_LT(cpu_fraction, 0.10);
  // At most one line a second (the first, then ~2 over the window).
  EXPECT_LE(accept_lines, 5u);

  // The clients leave: the gateway accepts again and answers.
  idle.CloseAll();
  const HttpResult health = HealthWhenBack(url, absl::Seconds(10));
  EXPECT_EQ(health.status, 200) << health.error;
  EXPECT_EQ(health.body, kHealthy);
  EXPECT_LT((*gateway)->LogLines(), 50u) << (*gateway)->Log();
}

}  // namespace
}  // namespace buildd::gateway::fake
