// The real Claude Code CLI (the pinned test install, see TestClaudeCli)
// against FakeAnthropic: what the runner relies on when it drives the CLI.

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/runner/process_group.h"
#include "tests/testing/files.h"
#include "tests/testing/fake_anthropic.h"
#include "tests/testing/process.h"

namespace buildd::runner {
namespace {

using ::buildd::testing::ReadFile;
using ::buildd::testing::FakeAnthropic;
using ::buildd::testing::FakeBlock;
using ::buildd::testing::FakeTurn;
using ::testing::Each;
using ::testing::Field;
using ::testing::SizeIs;
using Clock = std::chrono::steady_clock;
namespace protobuf = google::protobuf;

// A CLI run takes about 2 s; this bounds one that hangs.
constexpr auto kRunTimeout = std::chrono::seconds(60);

std::string ShellQuote(const std::string& arg) {
  std::string out = "'";
  for (const char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// A stream-json line as an object; empty when it is not JSON.
protobuf::Struct ParseLine(const std::string& line) {
  protobuf::Struct out;
  if (!protobuf::util::JsonStringToMessage(line, &out).ok()) out.Clear();
  return out;
}

std::string StringField(const protobuf::Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  return it != object.fields().end() ? it->second.string_value() : "";
}

bool HasField(const protobuf::Struct& object, const std::string& name) {
  return object.fields().contains(name);
}

bool BoolField(const protobuf::Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  return it != object.fields().end() && it->second.bool_value();
}

// What a run of the CLI printed, line by line.
struct Output {
  std::vector<std::string> stdout_lines;
  std::vector<std::string> stderr_lines;

  ProcessGroup::LineFn Sink() {
    return [this](OutputStream stream, std::string line) {
      (stream == OutputStream::kStdout ? stdout_lines : stderr_lines).push_back(std::move(line));
    };
  }
  std::string Describe() const {
    return absl::StrCat("stdout:\n", absl::StrJoin(stdout_lines, "\n"), "\nstderr:\n",
                        absl::StrJoin(stderr_lines, "\n"));
  }
};

class ClaudeCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cli_ = buildd::testing::TestClaudeCli();
    dir_ = buildd::testing::MakeTempDir("buildd-claude-");
    ASSERT_FALSE(dir_.empty());
    repo_ = dir_ + "/repo";
    auto init = RunCommand(absl::StrCat("git init -q -b main ", ShellQuote(repo_), " && mkdir ",
                                        ShellQuote(dir_), "/config"),
                           std::chrono::seconds(30));
    ASSERT_TRUE(init.ok() && init->status.success());
  }

  void TearDown() override {
    (void)RunCommand(absl::StrCat("rm -rf ", ShellQuote(dir_)), std::chrono::seconds(30));
  }

  // `claude -p <prompt>` in the repository, talking to fake_ only.
  SpawnOptions Claude(const std::string& prompt) {
    SpawnOptions options;
    options.command = absl::StrJoin(
        {ShellQuote(cli_), std::string("-p"), ShellQuote(prompt), std::string("--output-format"),
         std::string("stream-json"), std::string("--verbose"), std::string("--permission-mode"),
         std::string("acceptEdits"), std::string("--allowedTools"), std::string("Write")},
        " ");
    options.working_dir = repo_;
    options.env = fake_.ClaudeEnv();
    options.env.emplace_back("CLAUDE_CONFIG_DIR", dir_ + "/config");
    // Credentials of the test's own environment would take precedence.
    options.unset_env = {"ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
                         "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"};
    return options;
  }

  // Pumps `group` until it exited and closed its output, or kRunTimeout.
  static std::optional<ExitStatus> RunToEnd(ProcessGroup& group, Output& output) {
    const auto deadline = Clock::now() + kRunTimeout;
    while (!(group.output_closed() && group.PollExit().has_value())) {
      if (Clock::now() >= deadline) return std::nullopt;
      group.Pump(std::chrono::milliseconds(100), -1, output.Sink());
    }
    group.FlushLines(output.Sink());
    return group.PollExit();
  }

  // The requests that carried a conversation (POST /v1/messages).
  std::vector<FakeAnthropic::Request> ConversationRequests() const {
    std::vector<FakeAnthropic::Request> out;
    for (auto& request : fake_.requests()) {
      if (request.method == "POST" && request.path == "/v1/messages") out.push_back(request);
    }
    return out;
  }

  FakeAnthropic fake_;
  std::string cli_;
  std::string dir_;
  std::string repo_;
};

TEST_F(ClaudeCliTest, WritesTheScriptedFileAndEndsWithAResult) {
  fake_.Script("key-write-1",
               {FakeTurn::Reply({FakeBlock::Text("Writing it."),
                                 FakeBlock::ToolUse(
                                     "Write", absl::StrCat(R"({"file_path":")", repo_,
                                                           R"(/hello.txt","content":"hi\n"})"))}),
                FakeTurn::Reply({FakeBlock::Text("Wrote hello.txt.")})});

  auto run = RunCommand(Claude("key-write-1 write the file"), kRunTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_FALSE(run->timed_out);
  EXPECT_TRUE(run->status.success()) << run->status.Describe() << "\n" << run->stderr_text;
  EXPECT_EQ(ReadFile(repo_ + "/hello.txt"), "hi\n");

  std::vector<std::string> lines = absl::StrSplit(run->stdout_text, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u) << run->stdout_text;
  const protobuf::Struct init = ParseLine(lines.front());
  const protobuf::Struct result = ParseLine(lines.back());
  EXPECT_EQ(StringField(init, "type"), "system") << lines.front();
  EXPECT_EQ(StringField(init, "subtype"), "init") << lines.front();
  const std::string session_id = StringField(init, "session_id");
  ASSERT_FALSE(session_id.empty()) << lines.front();
  EXPECT_EQ(StringField(result, "type"), "result") << lines.back();
  EXPECT_EQ(StringField(result, "session_id"), session_id) << lines.back();
  EXPECT_TRUE(HasField(result, "total_cost_usd")) << lines.back();
  EXPECT_FALSE(BoolField(result, "is_error")) << lines.back();
  EXPECT_EQ(StringField(result, "result"), "Wrote hello.txt.");

  const auto requests = ConversationRequests();
  ASSERT_THAT(requests, SizeIs(2));
  EXPECT_THAT(requests, Each(Field(&FakeAnthropic::Request::session_id, session_id)));
  EXPECT_THAT(requests, Each(Field(&FakeAnthropic::Request::key, "key-write-1")));
  EXPECT_EQ(requests[0].assistant_messages, 0);
  EXPECT_EQ(requests[1].assistant_messages, 1);
}

TEST_F(ClaudeCliTest, AGatedTurnHoldsTheCliUntilReleased) {
  fake_.Script("key-gate-1", {FakeTurn::Reply({FakeBlock::Text("Released.")}).HeldAt("g")});

  auto group = ProcessGroup::Spawn(Claude("key-gate-1 say something"));
  ASSERT_TRUE(group.ok()) << group.status();
  Output output;
  ASSERT_TRUE(fake_.WaitForGate("g", absl::Seconds(60)));
  EXPECT_FALSE((*group)->PollExit().has_value()) << "the CLI exited while its turn was held";

  fake_.Release("g");
  const auto status = RunToEnd(**group, output);
  ASSERT_TRUE(status.has_value()) << "the CLI still runs after the release\n" << output.Describe();
  EXPECT_TRUE(status->success()) << status->Describe() << "\n" << output.Describe();
  ASSERT_FALSE(output.stdout_lines.empty());
  const protobuf::Struct result = ParseLine(output.stdout_lines.back());
  EXPECT_EQ(StringField(result, "type"), "result") << output.Describe();
  EXPECT_EQ(StringField(result, "result"), "Released.");
}

TEST_F(ClaudeCliTest, AClientErrorEndsTheRunWithAnErrorResultAndExitCodeOne) {
  // A 4xx, not a 5xx or 429: those the CLI retries with backoff.
  fake_.Script("key-error-1", {FakeTurn::Error(400, "scripted refusal")});

  const auto started = Clock::now();
  auto run = RunCommand(Claude("key-error-1 do something"), kRunTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_FALSE(run->timed_out);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(20));
  EXPECT_EQ(run->status.exit_code, 1) << run->stdout_text << "\n" << run->stderr_text;
  EXPECT_EQ(run->status.signal, 0);

  std::vector<std::string> lines = absl::StrSplit(run->stdout_text, '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty()) << run->stderr_text;
  const protobuf::Struct result = ParseLine(lines.back());
  EXPECT_EQ(StringField(result, "type"), "result") << lines.back();
  EXPECT_TRUE(BoolField(result, "is_error")) << lines.back();
  EXPECT_EQ(StringField(result, "result"), "API Error: 400 scripted refusal");
  EXPECT_EQ(StringField(result, "terminal_reason"), "api_error") << lines.back();

  // Before it gives up, the CLI (2.1.330) retries a 400 at once, then without
  // the thinking display option, then all three again with its deferred
  // tools declared in full: six requests, none with a reply in its history.
  const auto requests = ConversationRequests();
  EXPECT_THAT(requests, SizeIs(6));
  EXPECT_THAT(requests, Each(Field(&FakeAnthropic::Request::assistant_messages, 0)));
}

}  // namespace
}  // namespace buildd::runner
