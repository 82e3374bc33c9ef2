// The buildd-runner binary itself against the fake broker: flags and
// environment, the signal wiring (tasks must see SIGTERM although the
// runner blocks it in its own threads) and a clean exit on SIGTERM.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/runner/process_group.h"
#include "tests/runner/fake_broker.h"

namespace buildd::runner {
namespace {

namespace pb = ::buildd::v1;
using fakes::Assign;
using fakes::BrokerState;
using fakes::Control;
using fakes::FakeBroker;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kApiKey[] = "buildd_service_binarytest";

// The runner binary as a child process, with its stderr collected.
class RunnerProcess {
 public:
  RunnerProcess(const std::string& command, std::vector<std::pair<std::string, std::string>> env) {
    SpawnOptions options;
    options.command = "exec " + command;
    options.env = std::move(env);
    options.unset_env = {"BUILDD_API_KEY",     "BUILDD_SERVER",        "BUILDD_WORKSPACE",
                         "BUILDD_RUNNER_NAME", "BUILDD_RUNNER_LABELS", "BUILDD_RUNNER_LISTEN",
                         "BUILDD_WORK_DIR"};
    auto group = ProcessGroup::Spawn(options);
    EXPECT_TRUE(group.ok()) << group.status();
    if (group.ok()) group_ = std::move(group).value();
  }

  // Waits up to `timeout` for the exit; the exit code, or -1.
  int WaitForExit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const auto collect = [this](OutputStream, std::string line) { stderr_ += line + "\n"; };
    while (!(group_->output_closed() && group_->PollExit().has_value())) {
      if (std::chrono::steady_clock::now() > deadline) return -1;
      group_->Pump(std::chrono::milliseconds(20), -1, collect);
    }
    group_->FlushLines(collect);
    return group_->PollExit()->exit_code;
  }

  void Signal(int sig) { group_->Signal(sig).IgnoreError(); }
  const std::string& output() const { return stderr_; }

 private:
  std::unique_ptr<ProcessGroup> group_;
  std::string stderr_;
};

class RunnerBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/buildd-runner-binary-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    work_dir_ = pattern;
    int port = 0;
    auto server = StartGrpcServer("127.0.0.1:0", {&broker_}, &port);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    port_ = port;
  }

  void TearDown() override {
    runner_.reset();  // kills it if still running
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(work_dir_, ec);
  }

  FakeBroker broker_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string work_dir_;
  std::unique_ptr<RunnerProcess> runner_;
};

TEST_F(RunnerBinaryTest, MissingApiKeyExitsWithCode2AndSaysSo) {
  runner_ = std::make_unique<RunnerProcess>(
      absl::StrCat(BUILDD_RUNNER_BINARY, " --listen= --work_dir=", work_dir_),
      std::vector<std::pair<std::string, std::string>>{});
  EXPECT_EQ(runner_->WaitForExit(std::chrono::seconds(10)), 2);
  EXPECT_THAT(runner_->output(), HasSubstr("API key is required"));
}

TEST_F(RunnerBinaryTest, FlagsAlsoTakeTheirDashSpelling) {
  // As a systemd unit or a CI step writes them.
  runner_ = std::make_unique<RunnerProcess>(
      absl::StrCat(BUILDD_RUNNER_BINARY, " --api-key=", kApiKey, " --server=http://127.0.0.1:", port_,
                   " --max-tasks=5 --labels=gpu --name=dashed --listen= --work-dir=", work_dir_,
                   " --drain-timeout-ms=1000"),
      std::vector<std::pair<std::string, std::string>>{});
  ASSERT_TRUE(
      broker_.WaitFor([](const BrokerState& s) { return s.welcomes > 0; }, absl::Seconds(30)))
      << runner_->output();
  const BrokerState state = broker_.state();
  EXPECT_EQ(state.sessions[0].bearer, kApiKey);
  EXPECT_EQ(state.hellos[0].name(), "dashed");
  EXPECT_EQ(state.hellos[0].max_tasks(), 5);
  runner_->Signal(SIGTERM);
  EXPECT_EQ(runner_->WaitForExit(std::chrono::seconds(15)), 0) << runner_->output();
}

TEST_F(RunnerBinaryTest, AFlagUnknownInEitherSpellingIsNamedAsWritten) {
  runner_ = std::make_unique<RunnerProcess>(
      absl::StrCat(BUILDD_RUNNER_BINARY, " --api-key=", kApiKey, " --max-taskz=3"),
      std::vector<std::pair<std::string, std::string>>{});
  EXPECT_NE(runner_->WaitForExit(std::chrono::seconds(10)), 0);
  EXPECT_THAT(runner_->output(), HasSubstr("max-taskz"));
}

TEST_F(RunnerBinaryTest, RunsTasksForwardsCancelAndExitsCleanlyOnSigterm) {
  runner_ = std::make_unique<RunnerProcess>(
      absl::StrCat(BUILDD_RUNNER_BINARY, " --listen=127.0.0.1:0 --cancel_grace_ms=10000"),
      std::vector<std::pair<std::string, std::string>>{
          {"BUILDD_API_KEY", kApiKey},
          {"BUILDD_SERVER", absl::StrCat("http://127.0.0.1:", port_, "/")},
          {"BUILDD_RUNNER_NAME", "binary-runner"},
          {"BUILDD_RUNNER_LABELS", "a, b"},
          {"BUILDD_WORK_DIR", work_dir_}});
  ASSERT_TRUE(
      broker_.WaitFor([](const BrokerState& s) { return s.welcomes > 0; }, absl::Seconds(30)));
  BrokerState state = broker_.state();
  EXPECT_EQ(state.sessions[0].bearer, kApiKey);
  EXPECT_EQ(state.hellos[0].name(), "binary-runner");
  EXPECT_EQ(state.hellos[0].labels_size(), 2);
  EXPECT_EQ(state.hellos[0].max_tasks(), 3);
  std::vector<std::string> capabilities;
  for (const auto& capability : state.hellos[0].capabilities()) {
    capabilities.push_back(capability.name());
  }
  EXPECT_THAT(capabilities, Contains("command"));
  EXPECT_THAT(capabilities, Contains("os"));

  // SIGTERM (not the SIGKILL 10 s later) must end the task: the child's
  // signal mask was reset although the runner blocks SIGTERM.
  broker_.Send(Assign("w1", 1, "echo up; sleep 30"));
  ASSERT_TRUE(
      broker_.WaitFor([](const BrokerState& s) { return s.Lines("w1", "stdout").size() == 1; }));
  broker_.Send(Control("w1", 1, pb::Control::cancel));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.finished.count("w1") > 0; },
                              absl::Seconds(5)));
  EXPECT_EQ(broker_.state().finished.at("w1").outcome(), pb::Finished::canceled);
  EXPECT_EQ(broker_.state().finished.at("w1").exit_code(), 128 + SIGTERM);

  runner_->Signal(SIGTERM);
  EXPECT_EQ(runner_->WaitForExit(std::chrono::seconds(20)), 0) << runner_->output();
  EXPECT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.sessions[0].ended; }));
  EXPECT_THAT(runner_->output(), ::testing::Not(HasSubstr(kApiKey)));
}

}  // namespace
}  // namespace buildd::runner
