#include "services/runner/process_group.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace buildd::runner {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using Clock = std::chrono::steady_clock;

struct Captured {
  std::vector<std::string> out;
  std::vector<std::string> err;
  ProcessGroup::LineFn Sink() {
    return [this](OutputStream stream, std::string line) {
      (stream == OutputStream::kStdout ? out : err).push_back(std::move(line));
    };
  }
};

std::unique_ptr<ProcessGroup> SpawnOrDie(const std::string& command, SpawnOptions options = {}) {
  options.command = command;
  auto group = ProcessGroup::Spawn(options);
  EXPECT_TRUE(group.ok()) << group.status();
  return group.ok() ? std::move(group).value() : nullptr;
}

// Pumps until the leader exited and the output closed, or 10 s passed.
ExitStatus RunToEnd(ProcessGroup& group, Captured& captured) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!(group.output_closed() && group.PollExit().has_value()) && Clock::now() < deadline) {
    group.Pump(milliseconds(50), -1, captured.Sink());
  }
  group.FlushLines(captured.Sink());
  EXPECT_TRUE(group.PollExit().has_value()) << "process still running";
  return group.PollExit().value_or(ExitStatus{-1, 0});
}

// Pumps until `done()` or `timeout`.
template <typename Done>
bool PumpUntil(ProcessGroup& group, Captured& captured, Done done,
               milliseconds timeout = milliseconds(10000)) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    group.Pump(milliseconds(20), -1, captured.Sink());
  }
  return true;
}

// True while `pid` exists and is not a zombie.
bool ProcessAlive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  if (!std::getline(stat, content)) return false;
  const size_t paren = content.rfind(')');
  return paren != std::string::npos && paren + 2 < content.size() && content[paren + 2] != 'Z';
}

TEST(LineSplitterTest, SplitsOnNewlineAndKeepsPartialUntilFlush) {
  LineSplitter splitter;
  std::vector<std::string> lines;
  const auto emit = [&](std::string line) { lines.push_back(std::move(line)); };
  splitter.Feed("a\nb", emit);
  splitter.Feed("c\n\nd", emit);
  EXPECT_THAT(lines, ElementsAre("a", "bc", ""));
  splitter.Flush(emit);
  EXPECT_THAT(lines, ElementsAre("a", "bc", "", "d"));
}

TEST(LineSplitterTest, CutsLongLineIntoMaxSizeChunks) {
  LineSplitter splitter(4);
  std::vector<std::string> lines;
  const auto emit = [&](std::string line) { lines.push_back(std::move(line)); };
  splitter.Feed("abcdefghij\n", emit);
  splitter.Feed("wxyz\n", emit);  // exactly the maximum: one line, no empty chunk
  EXPECT_THAT(lines, ElementsAre("abcd", "efgh", "ij", "wxyz"));
}

TEST(LineSplitterTest, ChunkDoesNotSplitAUtf8Character) {
  LineSplitter splitter(4);
  std::vector<std::string> lines;
  const auto emit = [&](std::string line) { lines.push_back(std::move(line)); };
  splitter.Feed("abc\xC3\xA9z\n", emit);  // "abcéz": é would straddle byte 4
  EXPECT_THAT(lines, ElementsAre("abc", "\xC3\xA9z"));
}

TEST(LineSplitterTest, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_EQ(SanitizeUtf8("ok \xFF\xC3"), "ok \xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("caf\xC3\xA9 \xF0\x9F\x99\x82"), "caf\xC3\xA9 \xF0\x9F\x99\x82");
}

TEST(ProcessGroupTest, SeparatesStdoutAndStderrLines) {
  auto group = SpawnOrDie("echo one; echo two >&2; echo three");
  Captured captured;
  const ExitStatus status = RunToEnd(*group, captured);
  EXPECT_TRUE(status.success());
  EXPECT_THAT(captured.out, ElementsAre("one", "three"));
  EXPECT_THAT(captured.err, ElementsAre("two"));
}

TEST(ProcessGroupTest, LastLineWithoutNewlineStillCounts) {
  auto group = SpawnOrDie("printf 'first\\nlast'; printf 'err-tail' >&2");
  Captured captured;
  RunToEnd(*group, captured);
  EXPECT_THAT(captured.out, ElementsAre("first", "last"));
  EXPECT_THAT(captured.err, ElementsAre("err-tail"));
}

TEST(ProcessGroupTest, LineOver64KiBIsCutIntoChunks) {
  auto group = SpawnOrDie("head -c 150000 /dev/zero | tr '\\0' x; echo; echo next");
  Captured captured;
  RunToEnd(*group, captured);
  ASSERT_EQ(captured.out.size(), 4u);
  EXPECT_EQ(captured.out[0].size(), 65536u);
  EXPECT_EQ(captured.out[1].size(), 65536u);
  EXPECT_EQ(captured.out[2].size(), 150000u - 2 * 65536u);
  EXPECT_EQ(captured.out[3], "next");
}

TEST(ProcessGroupTest, ReportsExitCode) {
  auto group = SpawnOrDie("exit 3");
  Captured captured;
  const ExitStatus status = RunToEnd(*group, captured);
  EXPECT_EQ(status.exit_code, 3);
  EXPECT_EQ(status.signal, 0);
  EXPECT_EQ(status.Describe(), "exit code 3");
}

TEST(ProcessGroupTest, ReportsDeathBySignalAs128PlusSignal) {
  auto group = SpawnOrDie("kill -9 $$");
  Captured captured;
  const ExitStatus status = RunToEnd(*group, captured);
  EXPECT_EQ(status.signal, 9);
  EXPECT_EQ(status.exit_code, 137);
  EXPECT_EQ(status.Describe(), "killed by signal 9");
}

TEST(ProcessGroupTest, StdinIsDevNull) {
  auto group = SpawnOrDie("cat; echo after-cat");
  Captured captured;
  const ExitStatus status = RunToEnd(*group, captured);
  EXPECT_TRUE(status.success());
  EXPECT_THAT(captured.out, ElementsAre("after-cat"));
}

TEST(ProcessGroupTest, RunsInItsOwnProcessGroupAndWorkingDirectory) {
  SpawnOptions options;
  options.working_dir = "/tmp";
  auto group = SpawnOrDie("pwd; cut -d' ' -f5 /proc/$$/stat", options);
  Captured captured;
  RunToEnd(*group, captured);
  ASSERT_EQ(captured.out.size(), 2u);
  EXPECT_EQ(captured.out[0], "/tmp");
  EXPECT_EQ(captured.out[1], std::to_string(group->pid()));
}

TEST(ProcessGroupTest, EnvironmentAddsVariablesAndDropsUnsetOnes) {
  setenv("BUILDD_PG_TEST_SECRET", "hidden", 1);
  setenv("BUILDD_PG_TEST_KEPT", "kept", 1);
  SpawnOptions options;
  options.env = {{"BUILDD_PG_TEST_ADDED", "added"}, {"BUILDD_PG_TEST_KEPT", "replaced"}};
  options.unset_env = {"BUILDD_PG_TEST_SECRET"};
  auto group = SpawnOrDie(
      "echo ${BUILDD_PG_TEST_SECRET:-none} $BUILDD_PG_TEST_ADDED $BUILDD_PG_TEST_KEPT", options);
  Captured captured;
  RunToEnd(*group, captured);
  EXPECT_THAT(captured.out, ElementsAre("none added replaced"));
  unsetenv("BUILDD_PG_TEST_SECRET");
  unsetenv("BUILDD_PG_TEST_KEPT");
}

TEST(ProcessGroupTest, SpawnFailsWhenWorkingDirectoryIsMissing) {
  SpawnOptions options;
  options.command = "true";
  options.working_dir = "/nonexistent/buildd/dir";
  auto group = ProcessGroup::Spawn(options);
  ASSERT_FALSE(group.ok());
  EXPECT_THAT(std::string(group.status().message()), ::testing::HasSubstr("cannot enter"));
}

TEST(ProcessGroupTest, StopAndContinueFreezeTheWholeGroup) {
  // The counter runs in a grandchild: only a group-wide SIGSTOP freezes it.
  auto group = SpawnOrDie("(i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done) & wait");
  Captured captured;
  ASSERT_TRUE(PumpUntil(*group, captured, [&] { return captured.out.size() >= 3; }));

  ASSERT_TRUE(group->Signal(SIGSTOP).ok());
  // Lines already in the pipe may still arrive; after that, nothing.
  group->Pump(milliseconds(100), -1, captured.Sink());
  const size_t frozen = captured.out.size();
  const auto until = Clock::now() + milliseconds(400);
  while (Clock::now() < until) group->Pump(milliseconds(50), -1, captured.Sink());
  EXPECT_EQ(captured.out.size(), frozen) << "output continued while stopped";

  ASSERT_TRUE(group->Signal(SIGCONT).ok());
  EXPECT_TRUE(PumpUntil(*group, captured, [&] { return captured.out.size() >= frozen + 3; }));
  group->Signal(SIGKILL).IgnoreError();
  RunToEnd(*group, captured);
}

TEST(ProcessGroupTest, GroupSignalReachesGrandchildren) {
  auto group = SpawnOrDie("sleep 60 & echo $!; wait");
  Captured captured;
  ASSERT_TRUE(PumpUntil(*group, captured, [&] { return !captured.out.empty(); }));
  const int grandchild = std::stoi(captured.out[0]);
  ASSERT_TRUE(ProcessAlive(grandchild));

  ASSERT_TRUE(group->Signal(SIGTERM).ok());
  // The grandchild holds the stdout pipe: it closing means the grandchild died.
  EXPECT_TRUE(PumpUntil(*group, captured,
                        [&] { return group->output_closed() && group->PollExit().has_value(); }));
  EXPECT_EQ(group->PollExit()->signal, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (ProcessAlive(grandchild) && Clock::now() < deadline) {
    group->Pump(milliseconds(10), -1, captured.Sink());
  }
  EXPECT_FALSE(ProcessAlive(grandchild));
}

TEST(ProcessGroupTest, DestructorKillsARunningGroup) {
  int grandchild = 0;
  {
    auto group = SpawnOrDie("sleep 60 & echo $!; sleep 60");
    Captured captured;
    ASSERT_TRUE(PumpUntil(*group, captured, [&] { return !captured.out.empty(); }));
    grandchild = std::stoi(captured.out[0]);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (ProcessAlive(grandchild) && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_FALSE(ProcessAlive(grandchild));
}

TEST(RunCommandTest, CapturesStdout) {
  auto result = RunCommand("echo hello; echo world; echo noise >&2", std::chrono::seconds(5));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->stdout_text, "hello\nworld");
  EXPECT_TRUE(result->status.success());
  EXPECT_FALSE(result->timed_out);
}

TEST(RunCommandTest, KillsTheCommandAfterTimeout) {
  const auto start = Clock::now();
  auto result = RunCommand("sleep 30", milliseconds(200));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->timed_out);
  EXPECT_EQ(result->status.signal, SIGKILL);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace buildd::runner
