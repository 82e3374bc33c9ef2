// The real Codex CLI (the pinned test install, see TestCodexCli) against
// FakeOpenAI, started the way the runner starts it (AgentCommand) and read
// the way the runner reads it (CodexStreamParser): what the runner relies on
// when it drives the CLI.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/runner/agent_provider.h"
#include "services/runner/agent_stream.h"
#include "services/runner/process_group.h"
#include "tests/testing/files.h"
#include "tests/testing/fake_openai.h"
#include "tests/testing/matchers.h"
#include "tests/testing/process.h"

namespace buildd::runner {
namespace {

namespace fs = std::filesystem;
using ::buildd::testing::ReadFile;
using ::buildd::testing::CodexAddFile;
using ::buildd::testing::CodexShell;
using ::buildd::testing::FakeBlock;
using ::buildd::testing::FakeOpenAI;
using ::buildd::testing::FakeTurn;
using ::buildd::testing::IsOk;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

// A CLI run takes about a second; this bounds one that hangs.
constexpr auto kRunTimeout = std::chrono::seconds(60);

std::vector<std::string> Types(const std::vector<pb::Event>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.type());
  return out;
}

const google::protobuf::Value& Data(const pb::Event& e, const std::string& key) {
  static const google::protobuf::Value kNone;
  auto it = e.data().fields().find(key);
  return it == e.data().fields().end() ? kNone : it->second;
}

// What a run of the CLI amounted to.
struct CodexRun {
  CommandResult process;
  std::vector<pb::Event> events;
  AgentSummary summary;

  std::string Describe() const {
    return absl::StrCat(process.status.Describe(), "\nstdout:\n", process.stdout_text,
                        "\nstderr:\n", process.stderr_text);
  }
};

class CodexCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    settings_.codex_path = buildd::testing::TestCodexCli();
    dir_ = buildd::testing::MakeTempDir("buildd-codex-");
    ASSERT_FALSE(dir_.empty());
    repo_ = dir_ + "/repo";
    settings_.codex_home = dir_ + "/codex";
    auto init = RunCommand(absl::StrCat("git init -q -b main ", repo_), std::chrono::seconds(30));
    ASSERT_TRUE(init.ok() && init->status.success());
    ASSERT_THAT(fake_.WriteCodexConfig(settings_.codex_home), IsOk());
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs the CLI as the runner would for `prompt` (continuing `session_id`
  // when not empty), talking to fake_ only.
  CodexRun Codex(const std::string& prompt, const std::string& session_id = "",
                 const ProviderOptions& options = {}) {
    AgentRun run;
    run.prompt = prompt;
    run.session_id = session_id;
    // Codex's own workspace-write sandbox cannot write as root once
    // bubblewrap is installed; the runner turns it off in favour of its own
    // sandbox (see TaskExecutor), and so does this test.
    ProviderOptions unsandboxed = options;
    if (unsandboxed.sandbox == "workspace-write") unsandboxed.sandbox = "danger-full-access";
    SpawnOptions spawn = AgentCommand("codex", settings_, unsandboxed, run, repo_);
    for (const auto& variable : fake_.CodexEnv()) spawn.env.push_back(variable);
    // Settings of the test's own environment would take precedence.
    spawn.unset_env = {"OPENAI_BASE_URL", "CODEX_API_KEY"};
    CodexRun out;
    auto result = RunCommand(spawn, kRunTimeout);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return out;
    EXPECT_FALSE(result->timed_out);
    out.process = *std::move(result);
    CodexStreamParser parser;
    for (absl::string_view line : absl::StrSplit(out.process.stdout_text, '\n')) {
      for (pb::Event& e : parser.Parse(std::string(line))) out.events.push_back(std::move(e));
    }
    out.summary = parser.summary();
    return out;
  }

  // The requests that asked for a turn (POST /v1/responses).
  std::vector<FakeOpenAI::Request> TurnRequests() const {
    std::vector<FakeOpenAI::Request> out;
    for (auto& request : fake_.requests()) {
      if (request.method == "POST" && request.path == "/v1/responses") out.push_back(request);
    }
    return out;
  }

  FakeOpenAI fake_;
  ProviderSettings settings_;
  std::string dir_;
  std::string repo_;
};

TEST_F(CodexCliTest, EditsWithApplyPatchAndShellCommandsAndEndsWithAResult) {
  fake_.Script("key-write-1",
               {FakeTurn::Reply({FakeBlock::Text("I will write the files."),
                                 CodexAddFile("hello.txt", "hello from codex\n")}),
                FakeTurn::Reply({CodexShell("printf 'two\\n' > two.txt")}),
                FakeTurn::Reply({FakeBlock::Text("Wrote them.")})});

  const CodexRun run = Codex("key-write-1 write the files");

  EXPECT_TRUE(run.process.status.success()) << run.Describe();
  EXPECT_EQ(ReadFile(repo_ + "/hello.txt"), "hello from codex\n");
  EXPECT_EQ(ReadFile(repo_ + "/two.txt"), "two\n");
  ASSERT_THAT(Types(run.events),
              ElementsAre("session", "assistant_message", "tool_use", "tool_result", "tool_use",
                          "tool_result", "assistant_message", "result"))
      << run.Describe();
  const std::string thread_id = run.events[0].text();
  EXPECT_EQ(run.summary.session_id, thread_id);
  EXPECT_EQ(run.events[1].text(), "I will write the files.");
  // apply_patch: a file_change item with absolute paths.
  EXPECT_EQ(Data(run.events[2], "name").string_value(), "file_change");
  const auto& changes = Data(run.events[3], "changes").list_value();
  ASSERT_EQ(changes.values_size(), 1) << run.Describe();
  EXPECT_EQ(changes.values(0).struct_value().fields().at("path").string_value(),
            repo_ + "/hello.txt");
  EXPECT_EQ(changes.values(0).struct_value().fields().at("kind").string_value(), "add");
  EXPECT_FALSE(Data(run.events[3], "isError").bool_value());
  // exec_command: a command_execution item, run by bash.
  EXPECT_EQ(Data(run.events[4], "name").string_value(), "shell");
  EXPECT_THAT(Data(run.events[4], "command").string_value(), HasSubstr("printf"));
  EXPECT_EQ(run.events[5].exit_code(), 0);
  EXPECT_EQ(run.events[6].text(), "Wrote them.");
  EXPECT_EQ(run.events[7].text(), "Wrote them.");
  EXPECT_EQ(run.events[7].exit_code(), 0);
  EXPECT_GT(Data(run.events[7], "usage").struct_value().fields().at("input_tokens").number_value(),
            0);
  EXPECT_TRUE(run.summary.finished);
  EXPECT_FALSE(run.summary.is_error);

  // One conversation of three turns under the thread id, which names the
  // transcript in CODEX_HOME.
  const auto requests = TurnRequests();
  ASSERT_THAT(requests, SizeIs(3));
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].key, "key-write-1");
    EXPECT_EQ(requests[i].session_id, thread_id);
    EXPECT_EQ(requests[i].assistant_messages, static_cast<int>(i));
    EXPECT_EQ(requests[i].api_key, "Bearer sk-fake-openai-key-for-tests");
  }
  EXPECT_THAT(requests[0].body, HasSubstr(R"("model":"gpt-5.5")"));
  auto transcript = ReadSessionSnapshot("codex", settings_, thread_id, "/");
  ASSERT_THAT(transcript, IsOk());
  EXPECT_THAT(*transcript, HasSubstr("Wrote them."));
}

TEST_F(CodexCliTest, AnUnknownModelIsAWarningAndTheRunGoesOn) {
  fake_.Script("key-model-1", {FakeTurn::Reply({FakeBlock::Text("Fine.")})});
  ProviderOptions options;
  options.model = "buildd-unknown-model";

  const CodexRun run = Codex("key-model-1 hello", "", options);

  EXPECT_TRUE(run.process.status.success()) << run.Describe();
  EXPECT_THAT(Types(run.events), ElementsAre("session", "warning", "assistant_message", "result"))
      << run.Describe();
  EXPECT_THAT(run.events[1].text(), HasSubstr("Model metadata for `buildd-unknown-model`"));
  EXPECT_FALSE(run.summary.is_error);
  const auto requests = TurnRequests();
  ASSERT_THAT(requests, SizeIs(1));
  EXPECT_THAT(requests[0].body, HasSubstr(R"("model":"buildd-unknown-model")"));
}

TEST_F(CodexCliTest, AClientErrorFailsTheTurnWithTheReasonAndExitCodeOne) {
  fake_.Script("key-error-1", {FakeTurn::Error(400, "scripted refusal")});

  const CodexRun run = Codex("key-error-1 do something");

  EXPECT_EQ(run.process.status.exit_code, 1) << run.Describe();
  ASSERT_FALSE(run.events.empty()) << run.Describe();
  EXPECT_EQ(run.events.front().type(), "session");
  EXPECT_EQ(run.events.back().type(), "result") << run.Describe();
  EXPECT_THAT(run.events.back().text(), HasSubstr("scripted refusal"));
  EXPECT_EQ(run.events.back().exit_code(), 1);
  EXPECT_THAT(Types(run.events), Not(Contains("error")));
  EXPECT_TRUE(run.summary.finished);
  EXPECT_TRUE(run.summary.is_error);
  EXPECT_THAT(TurnRequests(), SizeIs(1)) << "no retries (request_max_retries = 0)";
}

TEST_F(CodexCliTest, ResumesASessionRestoredIntoAnotherCodexHome) {
  fake_.Script("key-resume-1", {FakeTurn::Reply({CodexAddFile("one.txt", "one\n")}),
                                FakeTurn::Reply({FakeBlock::Text("First part done.")}),
                                FakeTurn::Reply({CodexShell("printf 'two\\n' > two.txt")}),
                                FakeTurn::Reply({FakeBlock::Text("Second part done.")})});
  const CodexRun first = Codex("key-resume-1 part one");
  ASSERT_TRUE(first.process.status.success()) << first.Describe();
  const std::string thread_id = first.summary.session_id;
  auto transcript = ReadSessionSnapshot("codex", settings_, thread_id, "/");
  ASSERT_THAT(transcript, IsOk());

  // Another runner: an empty CODEX_HOME that gets the transcript.
  settings_.codex_home = dir_ + "/codex-2";
  ASSERT_THAT(fake_.WriteCodexConfig(settings_.codex_home), IsOk());
  ASSERT_THAT(RestoreSessionSnapshot("codex", settings_, thread_id, *transcript, repo_), IsOk());
  std::vector<std::string> restored;
  for (const auto& entry : fs::recursive_directory_iterator(settings_.codex_home + "/sessions")) {
    if (entry.is_regular_file()) {
      restored.push_back(fs::relative(entry.path(), settings_.codex_home).string());
    }
  }
  ASSERT_THAT(restored, SizeIs(1));
  // sessions/YYYY/MM/DD/rollout-YYYY-MM-DDTHH-MM-SS-<id>.jsonl
  const std::vector<std::string> parts = absl::StrSplit(restored[0], '/');
  ASSERT_THAT(parts, SizeIs(5)) << restored[0];
  EXPECT_TRUE(absl::StartsWith(parts[4], absl::StrCat("rollout-", parts[1], "-", parts[2], "-",
                                                      parts[3], "T")))
      << restored[0];
  EXPECT_TRUE(absl::EndsWith(parts[4], absl::StrCat("-", thread_id, ".jsonl"))) << restored[0];
  EXPECT_EQ(parts[4].size(), std::string("rollout-2026-01-02T03-04-05-.jsonl").size() +
                                 thread_id.size())
      << restored[0];

  const CodexRun second = Codex("now part two", thread_id);

  EXPECT_TRUE(second.process.status.success()) << second.Describe();
  ASSERT_FALSE(second.events.empty());
  EXPECT_EQ(second.events.front().type(), "session");
  EXPECT_EQ(second.summary.session_id, thread_id);
  EXPECT_EQ(second.events.back().text(), "Second part done.");
  EXPECT_EQ(ReadFile(repo_ + "/two.txt"), "two\n");
  const auto requests = TurnRequests();
  ASSERT_THAT(requests, SizeIs(4));
  EXPECT_EQ(requests[2].assistant_messages, 2) << "the history came along";
  EXPECT_EQ(requests[2].session_id, thread_id);
  EXPECT_THAT(requests[2].body, HasSubstr("now part two"));
  // The CLI went on writing the restored transcript.
  auto continued = ReadSessionSnapshot("codex", settings_, thread_id, "/");
  ASSERT_THAT(continued, IsOk());
  EXPECT_THAT(*continued, HasSubstr("Second part done."));
}

}  // namespace
}  // namespace buildd::runner
