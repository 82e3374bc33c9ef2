#include "services/runner/task_executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace buildd::runner {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// Collects what an executor reports; waits for conditions on it.
class Recorder {
 public:
  TaskCallbacks Callbacks() {
    TaskCallbacks callbacks;
    callbacks.on_event = [this](TaskEvent event) {
      absl::MutexLock lock(&mu_);
      events_.push_back(std::move(event));
    };
    callbacks.on_finish = [this](TaskResult result) {
      absl::MutexLock lock(&mu_);
      result_ = std::move(result);
    };
    return callbacks;
  }

  // Waits until `done(events, result)` holds; false after `timeout`.
  template <typename Done>
  bool WaitFor(Done done, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    const auto holds = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(events_, result_); };
    return mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
  }

  bool WaitForResult(absl::Duration timeout = absl::Seconds(10)) {
    return WaitFor([](const auto&, const auto& result) { return result.has_value(); }, timeout);
  }

  std::vector<TaskEvent> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::optional<TaskResult> result() {
    absl::MutexLock lock(&mu_);
    return result_;
  }
  std::vector<std::string> Lines(const std::string& stream) {
    std::vector<std::string> lines;
    for (const TaskEvent& event : events()) {
      if (event.type() == "output" && event.stream() == stream) lines.push_back(event.text());
    }
    return lines;
  }
  std::vector<std::string> Statuses() {
    std::vector<std::string> statuses;
    for (const TaskEvent& event : events()) {
      if (event.type() == "status") statuses.push_back(event.status());
    }
    return statuses;
  }

 private:
  absl::Mutex mu_;
  std::vector<TaskEvent> events_ ABSL_GUARDED_BY(mu_);
  std::optional<TaskResult> result_ ABSL_GUARDED_BY(mu_);
};

size_t CountOutput(const std::vector<TaskEvent>& events) {
  size_t n = 0;
  for (const TaskEvent& event : events) n += event.type() == "output";
  return n;
}

class TaskExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/buildd-executor-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    executor_.reset();
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  TaskExecutor& Start(const std::string& command, int timeout_seconds = 0,
                      milliseconds grace = milliseconds(10000)) {
    TaskSpec spec;
    spec.worker_id = "worker-1";
    spec.task_id = "task-1";
    spec.workspace_id = "ws-1";
    spec.command = command;
    spec.timeout_seconds = timeout_seconds;
    spec.env = {{"CRED_TOKEN", "t0ken"}};
    spec.tasks_dir = root_ + "/tasks";
    executor_ = std::make_unique<TaskExecutor>(spec, grace, recorder_.Callbacks());
    executor_->Start();
    return *executor_;
  }

  std::string root_;
  Recorder recorder_;
  std::unique_ptr<TaskExecutor> executor_;
};

TEST_F(TaskExecutorTest, ReportsStartedThenOutputThenCompleted) {
  Start("echo hello; echo oops >&2");
  ASSERT_TRUE(recorder_.WaitForResult());
  const auto events = recorder_.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].type(), "started");
  EXPECT_EQ(events[0].text(), "echo hello; echo oops >&2");
  EXPECT_THAT(recorder_.Lines("stdout"), ElementsAre("hello"));
  EXPECT_THAT(recorder_.Lines("stderr"), ElementsAre("oops"));
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kCompleted);
  EXPECT_EQ(recorder_.result()->exit_code, 0);
  executor_->Join();
  EXPECT_TRUE(executor_->done());
}

TEST_F(TaskExecutorTest, NonZeroExitIsAnErrorWithTheCode) {
  Start("exit 3");
  ASSERT_TRUE(recorder_.WaitForResult());
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kError);
  EXPECT_EQ(recorder_.result()->exit_code, 3);
  EXPECT_EQ(recorder_.result()->error_message, "exit code 3");
}

TEST_F(TaskExecutorTest, DeathBySignalIsReportedAs128PlusSignal) {
  Start("kill -KILL $$");
  ASSERT_TRUE(recorder_.WaitForResult());
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kError);
  EXPECT_EQ(recorder_.result()->exit_code, 137);
  EXPECT_EQ(recorder_.result()->error_message, "killed by signal 9");
}

TEST_F(TaskExecutorTest, RunsInTaskDirectoryWithTaskEnvironmentButNotTheApiKey) {
  setenv(kApiKeyEnv, "buildd_service_secret", 1);
  Start(
      "pwd; echo $BUILDD_TASK_ID $BUILDD_WORKER_ID $BUILDD_WORKSPACE_ID $CRED_TOKEN; "
      "echo key=${BUILDD_API_KEY:-unset}");
  ASSERT_TRUE(recorder_.WaitForResult());
  unsetenv(kApiKeyEnv);
  EXPECT_THAT(recorder_.Lines("stdout"),
              ElementsAre(root_ + "/tasks/task-1", "task-1 worker-1 ws-1 t0ken", "key=unset"));
}

TEST_F(TaskExecutorTest, PauseStopsOutputAndResumeContinuesIt) {
  Start("i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done");
  ASSERT_TRUE(
      recorder_.WaitFor([](const auto& events, const auto&) { return CountOutput(events) >= 3; }));
  executor_->Pause();
  ASSERT_TRUE(recorder_.WaitFor([](const auto& events, const auto&) {
    return !events.empty() && events.back().type() == "status";
  }));
  // A line already in the pipe may still arrive shortly after the stop.
  recorder_.WaitFor([](const auto&, const auto&) { return false; }, absl::Milliseconds(100));
  const size_t frozen = CountOutput(recorder_.events());
  recorder_.WaitFor([](const auto&, const auto&) { return false; }, absl::Milliseconds(400));
  EXPECT_EQ(CountOutput(recorder_.events()), frozen) << "output continued while paused";

  executor_->Resume();
  EXPECT_TRUE(recorder_.WaitFor(
      [frozen](const auto& events, const auto&) { return CountOutput(events) >= frozen + 3; }));
  EXPECT_THAT(recorder_.Statuses(), ElementsAre("paused", "running"));
  executor_->Cancel();
  ASSERT_TRUE(recorder_.WaitForResult());
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kCanceled);
}

TEST_F(TaskExecutorTest, CancelEndsACooperativeProcessWithSigterm) {
  Start("echo ready; sleep 30");
  ASSERT_TRUE(
      recorder_.WaitFor([](const auto& events, const auto&) { return CountOutput(events) >= 1; }));
  const auto start = Clock::now();
  executor_->Cancel();
  ASSERT_TRUE(recorder_.WaitForResult());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));  // well before the 10 s grace
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kCanceled);
  EXPECT_EQ(recorder_.result()->exit_code, 128 + SIGTERM);
  EXPECT_EQ(recorder_.events().back().type(), "status");
  EXPECT_EQ(recorder_.events().back().status(), "canceled");
}

TEST_F(TaskExecutorTest, CancelEscalatesToSigkillWhenTermIsTrapped) {
  Start("trap 'echo got-term' TERM; echo ready; while :; do sleep 0.05; done", 0,
        milliseconds(300));
  ASSERT_TRUE(
      recorder_.WaitFor([](const auto& events, const auto&) { return CountOutput(events) >= 1; }));
  const auto start = Clock::now();
  executor_->Cancel();
  ASSERT_TRUE(recorder_.WaitForResult());
  EXPECT_GE(Clock::now() - start, milliseconds(300));
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kCanceled);
  EXPECT_EQ(recorder_.result()->exit_code, 128 + SIGKILL);
  EXPECT_THAT(recorder_.Lines("stdout"), ElementsAre("ready", "got-term"));
  EXPECT_THAT(recorder_.Statuses(), ElementsAre("canceled"));
}

TEST_F(TaskExecutorTest, CancelWhilePausedStillEndsTheTask) {
  Start("echo ready; sleep 30", 0, milliseconds(5000));
  ASSERT_TRUE(
      recorder_.WaitFor([](const auto& events, const auto&) { return CountOutput(events) >= 1; }));
  executor_->Pause();
  executor_->Cancel();
  ASSERT_TRUE(recorder_.WaitForResult(absl::Seconds(3)));
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kCanceled);
  EXPECT_THAT(recorder_.Statuses(), ElementsAre("paused", "canceled"));
}

TEST_F(TaskExecutorTest, TimeoutStopsTheTaskAsAnError) {
  Start("echo ready; sleep 30", 1, milliseconds(300));
  ASSERT_TRUE(recorder_.WaitForResult());
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kError);
  EXPECT_EQ(recorder_.result()->error_message, "timed out after 1 s");
  const auto events = recorder_.events();
  EXPECT_EQ(events.back().type(), "error");
  EXPECT_EQ(events.back().text(), "timed out after 1 s");
}

TEST_F(TaskExecutorTest, UnusableTaskDirectoryReportsErrorEvent) {
  TaskSpec spec;
  spec.worker_id = "worker-1";
  spec.task_id = "task-1";
  spec.command = "true";
  spec.tasks_dir = "/dev/null/tasks";
  executor_ = std::make_unique<TaskExecutor>(spec, milliseconds(100), recorder_.Callbacks());
  executor_->Start();
  ASSERT_TRUE(recorder_.WaitForResult());
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kError);
  const auto events = recorder_.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type(), "started");
  EXPECT_EQ(events[1].type(), "error");
  EXPECT_THAT(events[1].text(), HasSubstr("cannot create"));
}

TEST_F(TaskExecutorTest, BackgroundChildHoldingOutputDoesNotKeepTaskOpen) {
  const auto start = Clock::now();
  Start("sleep 30 & echo done");
  ASSERT_TRUE(recorder_.WaitForResult());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(6));
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kCompleted);
  EXPECT_THAT(recorder_.Lines("stdout"), ElementsAre("done"));
}

TEST_F(TaskExecutorTest, KillEndsTheTaskWithoutReportingIt) {
  Start("echo ready; sleep 30");
  ASSERT_TRUE(
      recorder_.WaitFor([](const auto& events, const auto&) { return CountOutput(events) >= 1; }));
  executor_->Kill();
  executor_->Join();
  EXPECT_TRUE(executor_->done());
  EXPECT_FALSE(recorder_.result().has_value());
}

// A repository whose clone hangs: git appends the host and command to
// GIT_SSH_COMMAND, and the comment swallows them.
class HangingCloneTest : public TaskExecutorTest {
 protected:
  void SetUp() override {
    TaskExecutorTest::SetUp();
    setenv("GIT_SSH_COMMAND", "sleep 60 #", 1);
    git_ = std::make_unique<GitWorkspace>(root_ + "/git");
  }
  void TearDown() override {
    TaskExecutorTest::TearDown();
    unsetenv("GIT_SSH_COMMAND");
  }
  void StartClone(int timeout_seconds) {
    TaskSpec spec;
    spec.worker_id = "worker-1";
    spec.task_id = "task-1";
    spec.command = "true";
    spec.timeout_seconds = timeout_seconds;
    spec.repo_url = "ssh://slow.invalid/repo.git";
    spec.work_branch = "buildd/slow";
    spec.git = git_.get();
    executor_ = std::make_unique<TaskExecutor>(spec, milliseconds(100), recorder_.Callbacks());
    executor_->Start();
    // The clone has begun once its progress event is out.
    ASSERT_TRUE(recorder_.WaitFor([](const auto& events, const auto&) {
      return std::any_of(events.begin(), events.end(),
                         [](const TaskEvent& e) { return e.type() == "git"; });
    }));
  }
  std::unique_ptr<GitWorkspace> git_;
};

TEST_F(HangingCloneTest, CancelStopsIt) {
  StartClone(0);
  const auto start = Clock::now();
  executor_->Cancel();
  ASSERT_TRUE(recorder_.WaitForResult(absl::Seconds(20)));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kCanceled);
  EXPECT_EQ(recorder_.events().back().status(), "canceled");
}

TEST_F(HangingCloneTest, TheTaskTimeoutStopsIt) {
  const auto start = Clock::now();
  StartClone(1);
  ASSERT_TRUE(recorder_.WaitForResult(absl::Seconds(20)));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(recorder_.result()->outcome, TaskOutcome::kError);
  EXPECT_EQ(recorder_.result()->error_message, "timed out after 1 s");
  EXPECT_EQ(recorder_.events().back().type(), "error");
  EXPECT_EQ(recorder_.events().back().text(), "timed out after 1 s");
}

}  // namespace
}  // namespace buildd::runner
