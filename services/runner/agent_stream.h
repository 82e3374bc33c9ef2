#ifndef BUILDD_SERVICES_RUNNER_AGENT_STREAM_H_
#define BUILDD_SERVICES_RUNNER_AGENT_STREAM_H_

#include <optional>
#include <string>
#include <vector>

#include <google/protobuf/struct.pb.h>

#include "buildd/v1/common.pb.h"

namespace buildd::runner {

namespace pb = ::buildd::v1;

// What a coding agent's run amounts to, gathered from its machine output.
struct AgentSummary {
  std::string session_id;
  std::string model;
  std::optional<double> total_cost_usd;
  bool finished = false;  // a final result line was seen
  bool is_error = false;
  std::string result_text;
  // The plan a planning pass offered (Claude: ExitPlanMode's input.plan).
  std::string plan;
};

// Turns the machine output of a coding-agent CLI, one line at a time, into
// typed events:
//   session         text = session id, data.model, data.tools
//   assistant_message  text
//   tool_use        data.name, data.id, data.input
//   tool_result     data.toolUseId, text, data.isError
//   result          text, exit_code (1 on error), data.costUsd, data.usage,
//                   data.numTurns, data.durationMs
//   warning         text: the agent's notice about a run that goes on (a
//                   task's "error" event is the runner's alone: it ends it)
// A line that is not JSON becomes an `output` event on stdout, so garbage is
// shown, never dropped, and never stops the parse. Not thread-safe.
class AgentStreamParser {
 public:
  virtual ~AgentStreamParser() = default;
  std::vector<pb::Event> Parse(const std::string& line);
  const AgentSummary& summary() const { return summary_; }

 protected:
  // The events of one line that is a JSON object.
  virtual std::vector<pb::Event> ParseMessage(const google::protobuf::Struct& msg) = 0;

  AgentSummary summary_;
};

// `claude -p … --output-format stream-json --verbose`: lines of type system
// (subtype init), assistant and user (message.content blocks: text,
// tool_use, tool_result) and result (total_cost_usd, usage, is_error).
class ClaudeStreamParser final : public AgentStreamParser {
 protected:
  std::vector<pb::Event> ParseMessage(const google::protobuf::Struct& msg) override;
};

// `codex exec --json` (codex-rs/exec/src/exec_events.rs): thread.started
// (thread_id), turn.started, item.started / item.updated / item.completed
// (agent_message, reasoning, command_execution, file_change, mcp_tool_call,
// web_search, todo_list, error), turn.completed (usage), turn.failed, and
// error. Error items and error lines are warnings: the CLI goes on after
// them (retrying, or with fallback settings), and a turn that fails ends
// with turn.failed.
class CodexStreamParser final : public AgentStreamParser {
 protected:
  std::vector<pb::Event> ParseMessage(const google::protobuf::Struct& msg) override;
};

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_AGENT_STREAM_H_
