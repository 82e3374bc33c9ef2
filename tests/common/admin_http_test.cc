// The admin HTTP server of every service: its paths, and accepting again
// after the process ran out of file descriptors.

#include "common/admin_http.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "tests/testing/held_connections.h"
#include "tests/testing/http_client.h"

namespace buildd {
namespace {

using ::buildd::testing::HttpResult;
using ::buildd::testing::Request;

std::string Address(const AdminHttpServer& server) {
  return absl::StrCat("127.0.0.1:", server.port());
}

TEST(AdminHttpServerTest, ServesHealthHealthzAndMetrics) {
  bool healthy = true;
  auto server = AdminHttpServer::Start("127.0.0.1:0", [&healthy] { return healthy; });
  ASSERT_TRUE(server.ok()) << server.status();
  for (const char* path : {"/health", "/healthz"}) {
    const HttpResult health = Request("GET", Address(**server), path);
    EXPECT_EQ(health.status, 200) << path << health.error;
    EXPECT_EQ(health.body, R"({"status":"ok"})");
  }
  healthy = false;
  EXPECT_EQ(Request("GET", Address(**server), "/healthz").status, 503);
  const HttpResult metrics = Request("GET", Address(**server), "/metrics");
  EXPECT_EQ(metrics.status, 200) << metrics.error;
  EXPECT_EQ(metrics.Header("Content-Type"), "text/plain; version=0.0.4");
  EXPECT_EQ(Request("GET", Address(**server), "/nope").status, 404);
}

absl::Duration ProcessCpu() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime);
}

TEST(AdminHttpServerTest, AcceptsAgainAfterTheProcessRanOutOfFileDescriptors) {
  auto server = AdminHttpServer::Start("127.0.0.1:0", [] { return true; });
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_EQ(Request("GET", Address(**server), "/healthz").status, 200);
  std::ostringstream log;
  Log()->sinks().push_back(std::make_shared<spdlog::sinks::ostream_sink_mt>(log));

  // Our own limit a little above what is open now, every descriptor but one
  // taken, and a client on that last one: the server cannot accept it.
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  const auto open_now = std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                      std::filesystem::directory_iterator());
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(open_now) + 16;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> taken;
  for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) taken.push_back(fd);
  ASSERT_FALSE(taken.empty());
  close(taken.back());
  taken.pop_back();
  buildd::testing::HeldConnections client;
  ASSERT_EQ(client.Open((*server)->port(), 1), 1u);

  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!absl::StrContains(log.str(), "accept failed") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  // Out of descriptors for a while: retrying after a backoff, not spinning,
  // and saying so about once a second.
  const absl::Duration cpu = ProcessCpu();
  absl::SleepFor(absl::Milliseconds(1500));
  const absl::Duration used = ProcessCpu() - cpu;

  for (int fd : taken) close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  const std::string lines = log.str();
  Log()->sinks().pop_back();
  EXPECT_TRUE(absl::StrContains(lines, "admin http: accept failed: Too many open files")) << lines;
  EXPECT_LE(std::count(lines.begin(), lines.end(), '\n'), 3) << lines;
  EXPECT_LT(used, absl::Milliseconds(150));

  // Descriptors are free again: it answers (within the longest backoff).
  const HttpResult health = Request("GET", Address(**server), "/healthz", {}, "", absl::Seconds(5));
  EXPECT_EQ(health.status, 200) << health.error;
}

}  // namespace
}  // namespace buildd
