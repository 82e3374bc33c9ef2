#include "services/runner/agent_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

namespace buildd::runner {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Types(const std::vector<pb::Event>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.type());
  return out;
}

std::vector<pb::Event> Feed(AgentStreamParser& parser, const std::vector<std::string>& lines) {
  std::vector<pb::Event> out;
  for (const auto& line : lines) {
    for (auto& e : parser.Parse(line)) out.push_back(std::move(e));
  }
  return out;
}

const google::protobuf::Value& Data(const pb::Event& e, const std::string& key) {
  return e.data().fields().at(key);
}

// Lines in the shape `claude -p … --output-format stream-json --verbose`
// prints: init, an assistant turn with text and a Write tool call, the tool
// result, the closing text and the result with its cost.
const std::vector<std::string> kClaudeRun = {
    R"({"type":"system","subtype":"init","cwd":"/w","session_id":"5b1c6c2e-0d1f-4bbd-9d38-3c6e1e2f7a10","tools":["Bash","Edit","Read","Write"],"model":"claude-sonnet-4-5","permissionMode":"acceptEdits","apiKeySource":"ANTHROPIC_API_KEY"})",
    R"({"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"I'll create the file."},{"type":"tool_use","id":"toolu_01","name":"Write","input":{"file_path":"/w/hello.txt","content":"hi\n"}}],"stop_reason":"tool_use","usage":{"input_tokens":12,"output_tokens":30}},"parent_tool_use_id":null,"session_id":"5b1c6c2e-0d1f-4bbd-9d38-3c6e1e2f7a10"})",
    R"({"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_01","type":"tool_result","content":"File created successfully at: /w/hello.txt"}]},"parent_tool_use_id":null,"session_id":"5b1c6c2e-0d1f-4bbd-9d38-3c6e1e2f7a10"})",
    R"({"type":"assistant","message":{"id":"msg_2","type":"message","role":"assistant","content":[{"type":"text","text":"Done."}],"stop_reason":"end_turn"},"session_id":"5b1c6c2e-0d1f-4bbd-9d38-3c6e1e2f7a10"})",
    R"({"type":"result","subtype":"success","is_error":false,"duration_ms":2140,"duration_api_ms":1900,"num_turns":2,"result":"Done.","session_id":"5b1c6c2e-0d1f-4bbd-9d38-3c6e1e2f7a10","total_cost_usd":0.01234,"usage":{"input_tokens":40,"output_tokens":52}})",
};

TEST(ClaudeStreamParserTest, TurnsARunIntoTypedEvents) {
  ClaudeStreamParser parser;
  std::vector<pb::Event> events = Feed(parser, kClaudeRun);
  EXPECT_THAT(Types(events), ElementsAre("session", "assistant_message", "tool_use", "tool_result",
                                         "assistant_message", "result"));
  EXPECT_EQ(events[0].text(), "5b1c6c2e-0d1f-4bbd-9d38-3c6e1e2f7a10");
  EXPECT_EQ(Data(events[0], "model").string_value(), "claude-sonnet-4-5");
  EXPECT_EQ(events[1].text(), "I'll create the file.");
  EXPECT_EQ(Data(events[2], "name").string_value(), "Write");
  EXPECT_EQ(Data(events[2], "input").struct_value().fields().at("file_path").string_value(),
            "/w/hello.txt");
  EXPECT_EQ(Data(events[3], "toolUseId").string_value(), "toolu_01");
  EXPECT_EQ(events[3].text(), "File created successfully at: /w/hello.txt");
  EXPECT_EQ(events[5].text(), "Done.");
  EXPECT_EQ(events[5].exit_code(), 0);
  EXPECT_DOUBLE_EQ(Data(events[5], "costUsd").number_value(), 0.01234);
  EXPECT_EQ(Data(events[5], "numTurns").number_value(), 2);

  const AgentSummary& s = parser.summary();
  EXPECT_EQ(s.session_id, "5b1c6c2e-0d1f-4bbd-9d38-3c6e1e2f7a10");
  EXPECT_TRUE(s.finished);
  EXPECT_FALSE(s.is_error);
  ASSERT_TRUE(s.total_cost_usd.has_value());
  EXPECT_DOUBLE_EQ(*s.total_cost_usd, 0.01234);
}

TEST(ClaudeStreamParserTest, ErrorResultIsAnError) {
  ClaudeStreamParser parser;
  auto events = parser.Parse(
      R"({"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":5,"session_id":"s","total_cost_usd":0.5})");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].exit_code(), 1);
  EXPECT_TRUE(parser.summary().is_error);
}

TEST(ClaudeStreamParserTest, GarbageBecomesOutputAndParsingGoesOn) {
  ClaudeStreamParser parser;
  auto events = Feed(parser, {"Segmentation fault (core dumped)", "{not json", kClaudeRun[0], ""});
  EXPECT_THAT(Types(events), ElementsAre("output", "output", "session"));
  EXPECT_EQ(events[0].text(), "Segmentation fault (core dumped)");
  EXPECT_EQ(events[0].stream(), "stdout");
  EXPECT_FALSE(parser.summary().finished);
}

TEST(ClaudeStreamParserTest, ToolResultBlocksAreJoined) {
  ClaudeStreamParser parser;
  auto events = parser.Parse(
      R"({"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","is_error":true,"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]},"session_id":"s"})");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text(), "a\nb");
  EXPECT_TRUE(Data(events[0], "isError").bool_value());
}

// Lines as `codex exec --json` (codex-cli 0.169.0) printed them against
// FakeOpenAI: a text, an apply_patch call (file_change), an exec_command call
// (command_execution), the closing text and the turn's usage.
const std::vector<std::string> kCodexRun = {
    R"({"type":"thread.started","thread_id":"01a20106-8906-7cc2-bdbe-cbc67ea6c41b"})",
    R"({"type":"turn.started"})",
    R"({"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"I will add the file."}})",
    R"({"type":"item.started","item":{"id":"item_1","type":"file_change","changes":[{"path":"/tmp/repo/patched.txt","kind":"add"}],"status":"in_progress"}})",
    R"({"type":"item.completed","item":{"id":"item_1","type":"file_change","changes":[{"path":"/tmp/repo/patched.txt","kind":"add"}],"status":"completed"}})",
    R"({"type":"item.started","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -c ls","aggregated_output":"","exit_code":null,"status":"in_progress"}})",
    R"({"type":"item.completed","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -c ls","aggregated_output":"README.md\npatched.txt\n","exit_code":0,"status":"completed"}})",
    R"({"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Added patched.txt."}})",
    R"({"type":"turn.completed","usage":{"input_tokens":29433,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":30,"reasoning_output_tokens":0}})",
};

TEST(CodexStreamParserTest, TurnsARunIntoTheSameEventTypes) {
  CodexStreamParser parser;
  std::vector<pb::Event> events = Feed(parser, kCodexRun);
  EXPECT_THAT(Types(events), ElementsAre("session", "assistant_message", "tool_use", "tool_result",
                                         "tool_use", "tool_result", "assistant_message", "result"));
  EXPECT_EQ(events[0].text(), "01a20106-8906-7cc2-bdbe-cbc67ea6c41b");
  EXPECT_EQ(events[1].text(), "I will add the file.");
  EXPECT_EQ(Data(events[2], "name").string_value(), "file_change");
  EXPECT_EQ(Data(events[2], "id").string_value(), "item_1");
  EXPECT_EQ(Data(events[3], "toolUseId").string_value(), "item_1");
  EXPECT_EQ(Data(events[3], "changes").list_value().values_size(), 1);
  EXPECT_EQ(Data(events[4], "name").string_value(), "shell");
  EXPECT_EQ(Data(events[4], "command").string_value(), "/bin/bash -c ls");
  EXPECT_EQ(events[5].text(), "README.md\npatched.txt\n");
  EXPECT_EQ(events[5].exit_code(), 0);
  EXPECT_EQ(events[6].text(), "Added patched.txt.");
  EXPECT_EQ(events[7].text(), "Added patched.txt.");
  EXPECT_EQ(Data(events[7], "usage").struct_value().fields().at("output_tokens").number_value(), 30);
  EXPECT_EQ(parser.summary().session_id, "01a20106-8906-7cc2-bdbe-cbc67ea6c41b");
  EXPECT_TRUE(parser.summary().finished);
  EXPECT_FALSE(parser.summary().is_error);
}

TEST(CodexStreamParserTest, NoticesAreWarningsNotErrors) {
  // The CLI's advice about a run that goes on, as it printed it.
  CodexStreamParser parser;
  auto events = Feed(
      parser,
      {R"({"type":"thread.started","thread_id":"01a200f9-ca43-7e63-927d-8bdbc62349c7"})",
       R"({"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `gpt-fake` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."}})",
       R"({"type":"turn.started"})",
       R"({"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Hello."}})",
       R"({"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":10,"reasoning_output_tokens":0}})"});
  EXPECT_THAT(Types(events), ElementsAre("session", "warning", "assistant_message", "result"));
  EXPECT_THAT(events[1].text(), ::testing::HasSubstr("Model metadata for `gpt-fake` not found"));
  EXPECT_FALSE(parser.summary().is_error);
}

TEST(CodexStreamParserTest, RetriesAreWarningsAndAFailedTurnIsTheErrorResult) {
  // As the CLI printed them when every answer broke off before
  // response.completed.
  CodexStreamParser parser;
  auto events = Feed(
      parser,
      {R"({"type":"thread.started","thread_id":"01a200f9-ca43-7e63-927d-8bdbc62349c7"})",
       R"({"type":"turn.started"})",
       R"json({"type":"error","message":"Reconnecting... 1/5 (stream disconnected before completion: stream closed before response.completed)"})json",
       R"({"type":"error","message":"stream disconnected before completion: stream closed before response.completed"})",
       R"({"type":"turn.failed","error":{"message":"stream disconnected before completion: stream closed before response.completed"}})"});
  EXPECT_THAT(Types(events), ElementsAre("session", "warning", "warning", "result"));
  EXPECT_EQ(events[1].text(),
            "Reconnecting... 1/5 (stream disconnected before completion: stream closed before "
            "response.completed)");
  EXPECT_EQ(events[3].text(),
            "stream disconnected before completion: stream closed before response.completed");
  EXPECT_EQ(events[3].exit_code(), 1);
  EXPECT_TRUE(parser.summary().finished);
  EXPECT_TRUE(parser.summary().is_error);
}

TEST(CodexStreamParserTest, AFailedOrDeclinedCommandIsAnErrorResult) {
  // The statuses of codex-rs/exec/src/exec_events.rs's CommandExecutionStatus.
  CodexStreamParser parser;
  auto events = Feed(
      parser,
      {R"({"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -c false","aggregated_output":"","exit_code":1,"status":"failed"}})",
       R"({"type":"item.completed","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -c 'git push'","aggregated_output":"","exit_code":null,"status":"declined"}})"});
  ASSERT_THAT(Types(events), ElementsAre("tool_result", "tool_result"));
  EXPECT_EQ(events[0].exit_code(), 1);
  EXPECT_TRUE(Data(events[0], "isError").bool_value());
  EXPECT_TRUE(Data(events[1], "isError").bool_value());
}

TEST(CodexStreamParserTest, AnExitCodeOutOfRangeIsClamped) {
  CodexStreamParser parser;
  auto events = Feed(
      parser,
      {R"({"type":"item.completed","item":{"id":"i","type":"command_execution","exit_code":1e10}})",
       R"({"type":"item.completed","item":{"id":"j","type":"command_execution","exit_code":-1e10}})"});
  ASSERT_THAT(Types(events), ElementsAre("tool_result", "tool_result"));
  EXPECT_EQ(events[0].exit_code(), std::numeric_limits<int>::max());
  EXPECT_EQ(events[1].exit_code(), std::numeric_limits<int>::min());
}

}  // namespace
}  // namespace buildd::runner
