#include "services/runner/agent_provider.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/testing/matchers.h"

namespace buildd::runner {
namespace {

namespace fs = std::filesystem;
using ::buildd::testing::IsOk;
using ::buildd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

google::protobuf::Struct Options(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

std::map<std::string, std::string> EnvOf(const SpawnOptions& spawn) {
  return std::map<std::string, std::string>(spawn.env.begin(), spawn.env.end());
}

// Runs the command AgentCommand built with a script standing in for the
// CLI; returns the arguments it received, one per line.
std::string ArgumentsOf(SpawnOptions spawn) {
  const fs::path script =
      fs::temp_directory_path() / ("buildd-print-args-" + std::to_string(getpid()));
  std::ofstream(script) << "#!/bin/sh\nprintf '%s\\n' \"$@\"\n";
  fs::permissions(script, fs::perms::owner_all);
  for (auto& [key, value] : spawn.env) {
    if (key == "BUILDD_AGENT_BIN") value = script.string();
  }
  spawn.working_dir = "/";
  auto result = RunCommand(spawn, std::chrono::seconds(10));
  fs::remove(script);
  EXPECT_TRUE(result.ok());
  return result.ok() ? result->stdout_text + "\n" : "";
}

TEST(ProviderOptionsTest, DefaultsWorkAsRootAndTaskOptionsOverrideThem) {
  auto defaults = ParseProviderOptions(Options("{}"));
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->permission_mode, "acceptEdits");
  EXPECT_THAT(defaults->allowed_tools, HasSubstr("Write"));
  auto options = ParseProviderOptions(Options(
      R"({"model":"claude-sonnet-4-5","permissionMode":"plan","allowedTools":["Read","Grep"],)"
      R"("disallowedTools":"Bash,WebFetch","maxTurns":12,"sandbox":"read-only"})"));
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->model, "claude-sonnet-4-5");
  EXPECT_EQ(options->permission_mode, "plan");
  EXPECT_EQ(options->allowed_tools, "Read Grep");
  EXPECT_EQ(options->disallowed_tools, "Bash WebFetch");
  EXPECT_EQ(options->max_turns, 12);
  EXPECT_EQ(options->sandbox, "read-only");
}

TEST(ProviderOptionsTest, BadOptionsNameTheField) {
  for (const auto& [json, field] : std::map<std::string, std::string>{
           {R"({"maxTurns":"many"})", "providerOptions.maxTurns"},
           {R"({"maxTurns":0})", "providerOptions.maxTurns"},
           {R"({"permissionMode":"yolo"})", "providerOptions.permissionMode"},
           {R"({"allowedTools":[1]})", "providerOptions.allowedTools"},
           {R"({"sandbox":"none"})", "providerOptions.sandbox"},
           {R"({"model":"a b; rm -rf /"})", "providerOptions.model"},
           {R"({"temperature":1})", "providerOptions.temperature"}}) {
    EXPECT_THAT(ParseProviderOptions(Options(json)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)))
        << json;
  }
}

TEST(AgentCommandTest, ClaudeGetsItsFlagsAndTheValuesOnlyThroughTheEnvironment) {
  ProviderSettings settings;
  settings.claude_path = "/opt/claude";
  settings.claude_config_dir = "/var/claude";
  auto options = ParseProviderOptions(Options(R"({"model":"m-1","maxTurns":3})"));
  ASSERT_TRUE(options.ok());
  AgentRun run;
  run.prompt = "--help; $(touch /tmp/pwned) `id`";
  run.session_id = "0f1e2d3c-aaaa-bbbb-cccc-000000000001";
  const SpawnOptions spawn = AgentCommand("claude", settings, *options, run, "/work/tree");
  EXPECT_EQ(spawn.working_dir, "/work/tree");
  EXPECT_THAT(spawn.command, Not(HasSubstr("pwned")));
  EXPECT_THAT(spawn.command, Not(HasSubstr("m-1")));
  const auto env = EnvOf(spawn);
  EXPECT_EQ(env.at("BUILDD_AGENT_BIN"), "/opt/claude");
  EXPECT_EQ(env.at("CLAUDE_CONFIG_DIR"), "/var/claude");
  EXPECT_EQ(env.at("BUILDD_AGENT_PROMPT"), run.prompt);

  const std::string args = ArgumentsOf(spawn);
  EXPECT_THAT(args, HasSubstr("-p\n--output-format\nstream-json\n--verbose\n"));
  EXPECT_THAT(args, HasSubstr("--permission-mode\nacceptEdits\n"));
  EXPECT_THAT(args, HasSubstr("--model\nm-1\n"));
  EXPECT_THAT(args, HasSubstr("--max-turns\n3\n"));
  EXPECT_THAT(args, HasSubstr("--resume\n0f1e2d3c-aaaa-bbbb-cccc-000000000001\n"));
  // The prompt comes last, after "--", as one argument, untouched.
  EXPECT_THAT(args, HasSubstr("--\n--help; $(touch /tmp/pwned) `id`\n"));
  EXPECT_FALSE(fs::exists("/tmp/pwned"));

  run.plan = true;
  EXPECT_THAT(ArgumentsOf(AgentCommand("claude", settings, *options, run, "/")),
              HasSubstr("--permission-mode\nplan\n"));
}

TEST(AgentCommandTest, CodexExecJsonAndResume) {
  ProviderSettings settings;
  auto options = ParseProviderOptions(Options(R"({"model":"gpt-5-codex"})"));
  ASSERT_TRUE(options.ok());
  AgentRun run;
  run.prompt = "fix it";
  std::string args = ArgumentsOf(AgentCommand("codex", settings, *options, run, "/"));
  EXPECT_THAT(args, HasSubstr("exec\n--json\n--skip-git-repo-check\n-c\nsandbox_mode=\"workspace-write\"\n"));
  EXPECT_THAT(args, HasSubstr("-m\ngpt-5-codex\n"));
  EXPECT_THAT(args, Not(HasSubstr("resume")));
  run.session_id = "thread-1";
  args = ArgumentsOf(AgentCommand("codex", settings, *options, run, "/"));
  EXPECT_THAT(args, HasSubstr("resume\nthread-1\n--\nfix it\n"));

  // The CLI keeps its sessions where the runner looks for them.
  EXPECT_FALSE(EnvOf(AgentCommand("codex", settings, *options, run, "/")).contains("CODEX_HOME"));
  settings.codex_home = "/var/lib/runner/codex";
  EXPECT_EQ(EnvOf(AgentCommand("codex", settings, *options, run, "/"))["CODEX_HOME"],
            "/var/lib/runner/codex");
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("buildd-snapshot-" + std::to_string(getpid()));
    fs::remove_all(root_);
    settings_.claude_config_dir = (root_ / "a").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path root_;
  ProviderSettings settings_;
};

TEST_F(SnapshotTest, ATranscriptTakenOnOneRunnerIsFoundWhereTheOtherLooks) {
  EXPECT_EQ(ClaudeProjectDirName("/tmp/a.b/wt_1"), "-tmp-a-b-wt-1");
  const std::string id = "5b4f0c8e-1d2a-4f3b-9c1d-2e3f4a5b6c7d";
  fs::create_directories(root_ / "a/projects/-x");
  std::ofstream(root_ / "a/projects/-x" / (id + ".jsonl")) << "{\"type\":\"user\"}\n";
  auto transcript = ReadSessionSnapshot("claude", settings_, id, "/x");
  ASSERT_TRUE(transcript.ok()) << transcript.status();
  EXPECT_EQ(*transcript, "{\"type\":\"user\"}\n");

  ProviderSettings other;
  other.claude_config_dir = (root_ / "b").string();
  ASSERT_TRUE(RestoreSessionSnapshot("claude", other, id, *transcript, "/work/tree-2").ok());
  std::ifstream in(root_ / "b/projects/-work-tree-2" / (id + ".jsonl"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), *transcript);

  EXPECT_THAT(ReadSessionSnapshot("claude", other, "missing-id", "/work/tree-2"),
              StatusIs(absl::StatusCode::kNotFound));
  // Where the session ran decides which copy is its transcript.
  EXPECT_THAT(ReadSessionSnapshot("claude", settings_, id, "/elsewhere"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(RestoreSessionSnapshot("claude", other, "../../etc/passwd", "x", "/w"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(SnapshotTest, ACodexTranscriptIsRestoredUnderTheNameCodexGivesItsOwn) {
  // Codex resumes only from sessions/…/rollout-<YYYY-MM-DDTHH-MM-SS>-<id>.jsonl.
  const std::string id = "01a200fa-f466-7723-bd65-c4d913b01ef2";
  const std::string transcript = absl::StrCat(
      R"({"timestamp":"2026-11-22T01:59:36.417Z","type":"session_meta","payload":{"id":")", id,
      "\"}}\n", R"({"timestamp":"2026-11-22T01:59:37.002Z","type":"response_item"})", "\n");
  ProviderSettings other;
  other.codex_home = (root_ / "codex").string();
  ASSERT_THAT(RestoreSessionSnapshot("codex", other, id, transcript, "/w"), IsOk());
  EXPECT_TRUE(fs::exists(root_ / "codex/sessions/2026/11/22" /
                         absl::StrCat("rollout-2026-11-22T01-59-36-", id, ".jsonl")));
  auto restored = ReadSessionSnapshot("codex", other, id, "/");
  ASSERT_THAT(restored, IsOk());
  EXPECT_EQ(*restored, transcript);
  // A copy already there is kept.
  ASSERT_THAT(RestoreSessionSnapshot("codex", other, id, "newer", "/w"), IsOk());
  EXPECT_EQ(*ReadSessionSnapshot("codex", other, id, "/"), transcript);

  // A transcript that does not say when it began is named after now.
  const std::string undated = "01a200fa-0000-7000-8000-000000000002";
  ASSERT_THAT(RestoreSessionSnapshot("codex", other, undated, "{}\n", "/w"), IsOk());
  std::vector<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(root_ / "codex/sessions")) {
    const std::string name = entry.path().filename().string();
    if (absl::EndsWith(name, undated + ".jsonl")) names.push_back(name);
  }
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0].size(), std::string("rollout-2026-11-22T01-59-36-.jsonl").size() + undated.size());
  EXPECT_TRUE(absl::StartsWith(names[0], "rollout-20")) << names[0];
}

TEST_F(SnapshotTest, TheStateDirIsMadeWhenMissing) {
  // Codex refuses to start with a CODEX_HOME that does not exist.
  ProviderSettings settings;
  settings.codex_home = (root_ / "new/codex").string();
  ASSERT_THAT(EnsureStateDir("codex", settings), IsOk());
  EXPECT_TRUE(fs::is_directory(settings.codex_home));
  ASSERT_THAT(EnsureStateDir("codex", settings), IsOk());
  EXPECT_THAT(EnsureStateDir("codex", ProviderSettings{}), IsOk()) << "none configured";
  std::ofstream(root_ / "file") << "x";
  settings.codex_home = (root_ / "file/codex").string();
  EXPECT_THAT(EnsureStateDir("codex", settings), StatusIs(absl::StatusCode::kInternal));
}

}  // namespace
}  // namespace buildd::runner
