// The buildd-gateway binary: flags, the listening line, health through real
// channels, and shutdown on SIGTERM.

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "tests/gateway/fake_services.h"
#include "tests/testing/http_client.h"

extern char** environ;

namespace buildd::gateway::fake {
namespace {

// The binary, started with `args` and `env` added to ours; stdout on a pipe.
class GatewayProcess {
 public:
  GatewayProcess(const std::vector<std::string>& args, const std::vector<std::string>& env) {
    int out[2];
    if (pipe(out) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<std::string> argv_strings = {BUILDD_GATEWAY_BINARY};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = env;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    std::vector<char*> envp;
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, BUILDD_GATEWAY_BINARY, &actions, nullptr, argv.data(), envp.data()) !=
        0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    stdout_ = out[0];
  }

  ~GatewayProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) close(stdout_);
  }

  // The first line on stdout, or "" after `timeout_ms`.
  std::string ReadLine(int timeout_ms) {
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{stdout_, POLLIN, 0};
      const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            deadline - std::chrono::steady_clock::now())
                                            .count());
      if (poll(&pfd, 1, std::max(left, 0)) <= 0) break;
      char c;
      if (read(stdout_, &c, 1) != 1) break;
      if (c == '\n') return line;
      line.push_back(c);
    }
    return "";
  }

  // Sends `signal` and returns the exit status, or -1.
  int StopWith(int signal) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  bool started() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
};

TEST(GatewayMainTest, PrintsTheRealPortServesHealthAndExitsCleanlyOnSigterm) {
  FakeAccountService accounts;
  FakeBrokerService broker;
  FakeServer accounts_server(&accounts);
  FakeServer broker_server(&broker);
  // --listen through its environment variable, with port 0.
  GatewayProcess gateway({"--accounts_addr=" + accounts_server.address(),
                          "--broker_addr=" + broker_server.address(), "--log_level=warn"},
                         {"BUILDD_GATEWAY_LISTEN=127.0.0.1:0"});
  ASSERT_TRUE(gateway.started());
  const std::string line = gateway.ReadLine(10000);
  const std::string prefix = "gateway listening on http://127.0.0.1:";
  ASSERT_EQ(line.substr(0, prefix.size()), prefix) << line;
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(line.substr(prefix.size()), &port)) << line;
  ASSERT_GT(port, 0);
  const std::string url = prefix.substr(prefix.find("http://")) + std::to_string(port);

  buildd::testing::HttpResult health = buildd::testing::Request("GET", url, "/health");
  EXPECT_EQ(health.status, 200) << health.body << health.error;
  EXPECT_EQ(health.body, R"({"status":"ok","accounts":"SERVING","broker":"SERVING"})");

  // An open event stream must not hold up the shutdown.
  auto events = buildd::testing::SseStream::Open(url, "/api/events",
                                                 {{"Authorization", "Bearer buildd_user_k"}});
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_TRUE(broker.WaitForOpenSubscriptions(1, absl::Seconds(5)));
  EXPECT_EQ(gateway.StopWith(SIGTERM), 0);
  EXPECT_TRUE(broker.WaitForCancelledSubscriptions(1, absl::Seconds(5)));
}

}  // namespace
}  // namespace buildd::gateway::fake
