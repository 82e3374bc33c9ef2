#include "services/runner/agent_stream.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <limits>

#include "common/ids.h"

namespace buildd::runner {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

bool ParseJson(const std::string& line, Struct* out) {
  if (line.empty() || line[0] != '{') return false;
  return google::protobuf::util::JsonStringToMessage(line, out).ok();
}

const Value* Field(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? nullptr : &it->second;
}

std::string Str(const Struct& s, const std::string& key) {
  const Value* v = Field(s, key);
  return v != nullptr && v->has_string_value() ? v->string_value() : "";
}

const Struct* Obj(const Struct& s, const std::string& key) {
  const Value* v = Field(s, key);
  return v != nullptr && v->has_struct_value() ? &v->struct_value() : nullptr;
}

pb::Event NewEvent(const std::string& type, const std::string& text = "") {
  pb::Event e;
  e.set_type(type);
  e.set_text(text);
  e.set_created_at(NowRfc3339());
  return e;
}

pb::Event RawOutput(const std::string& line) {
  pb::Event e = NewEvent("output", line);
  e.set_stream("stdout");
  return e;
}

void Put(pb::Event& e, const std::string& key, const Value& v) {
  (*e.mutable_data()->mutable_fields())[key] = v;
}

void PutString(pb::Event& e, const std::string& key, const std::string& s) {
  Value v;
  v.set_string_value(s);
  Put(e, key, v);
}

// A tool result's content: a string, or blocks of {type:text, text}.
std::string ContentText(const Value* content) {
  if (content == nullptr) return "";
  if (content->has_string_value()) return content->string_value();
  std::string out;
  if (content->has_list_value()) {
    for (const Value& block : content->list_value().values()) {
      if (!block.has_struct_value()) continue;
      const std::string text = Str(block.struct_value(), "text");
      if (text.empty()) continue;
      if (!out.empty()) out += "\n";
      out += text;
    }
  }
  return out;
}

}  // namespace

std::vector<pb::Event> AgentStreamParser::Parse(const std::string& line) {
  Struct msg;
  if (ParseJson(line, &msg)) return ParseMessage(msg);
  std::vector<pb::Event> out;
  if (!line.empty()) out.push_back(RawOutput(line));
  return out;
}

std::vector<pb::Event> ClaudeStreamParser::ParseMessage(const Struct& msg) {
  std::vector<pb::Event> out;
  const std::string type = Str(msg, "type");
  if (const std::string sid = Str(msg, "session_id"); !sid.empty()) summary_.session_id = sid;
  if (type == "system") {
    if (Str(msg, "subtype") != "init") return out;
    summary_.model = Str(msg, "model");
    pb::Event e = NewEvent("session", summary_.session_id);
    PutString(e, "model", summary_.model);
    if (const Value* tools = Field(msg, "tools")) Put(e, "tools", *tools);
    out.push_back(std::move(e));
  } else if (type == "assistant" || type == "user") {
    const Struct* message = Obj(msg, "message");
    const Value* content = message != nullptr ? Field(*message, "content") : nullptr;
    if (content == nullptr) return out;
    if (content->has_string_value()) {
      if (type == "assistant") out.push_back(NewEvent("assistant_message", content->string_value()));
      return out;
    }
    if (!content->has_list_value()) return out;
    for (const Value& v : content->list_value().values()) {
      if (!v.has_struct_value()) continue;
      const Struct& block = v.struct_value();
      const std::string kind = Str(block, "type");
      if (kind == "text" && type == "assistant") {
        out.push_back(NewEvent("assistant_message", Str(block, "text")));
      } else if (kind == "tool_use") {
        pb::Event e = NewEvent("tool_use", Str(block, "name"));
        PutString(e, "name", Str(block, "name"));
        PutString(e, "id", Str(block, "id"));
        if (const Value* input = Field(block, "input")) {
          Put(e, "input", *input);
          // Plan mode ends by offering the plan through this tool.
          if (Str(block, "name") == "ExitPlanMode" && input->has_struct_value()) {
            summary_.plan = Str(input->struct_value(), "plan");
          }
        }
        out.push_back(std::move(e));
      } else if (kind == "tool_result") {
        pb::Event e = NewEvent("tool_result", ContentText(Field(block, "content")));
        PutString(e, "toolUseId", Str(block, "tool_use_id"));
        if (const Value* is_error = Field(block, "is_error")) Put(e, "isError", *is_error);
        out.push_back(std::move(e));
      }
    }
  } else if (type == "result") {
    summary_.finished = true;
    const Value* is_error = Field(msg, "is_error");
    summary_.is_error = (is_error != nullptr && is_error->bool_value()) ||
                        (Str(msg, "subtype") != "" && Str(msg, "subtype") != "success");
    summary_.result_text = Str(msg, "result");
    pb::Event e = NewEvent("result", summary_.result_text);
    e.set_exit_code(summary_.is_error ? 1 : 0);
    PutString(e, "subtype", Str(msg, "subtype"));
    if (const Value* cost = Field(msg, "total_cost_usd"); cost != nullptr && cost->has_number_value()) {
      summary_.total_cost_usd = cost->number_value();
      Put(e, "costUsd", *cost);
    }
    for (const auto& [from, to] : {std::pair{"usage", "usage"}, std::pair{"num_turns", "numTurns"},
                                   std::pair{"duration_ms", "durationMs"}}) {
      if (const Value* v = Field(msg, from)) Put(e, to, *v);
    }
    out.push_back(std::move(e));
  }
  // Other types (stream_event, rate-limit notices…) carry nothing we show.
  return out;
}

std::vector<pb::Event> CodexStreamParser::ParseMessage(const Struct& msg) {
  std::vector<pb::Event> out;
  const std::string type = Str(msg, "type");
  if (type == "thread.started") {
    summary_.session_id = Str(msg, "thread_id");
    out.push_back(NewEvent("session", summary_.session_id));
  } else if (type == "item.started" || type == "item.completed") {
    const Struct* item = Obj(msg, "item");
    if (item == nullptr) return out;
    const std::string kind = Str(*item, "type");
    const bool completed = type == "item.completed";
    if (kind == "agent_message" && completed) {
      summary_.result_text = Str(*item, "text");
      out.push_back(NewEvent("assistant_message", summary_.result_text));
    } else if (kind == "command_execution" || kind == "mcp_tool_call" || kind == "web_search" ||
               kind == "file_change") {
      const std::string name = kind == "command_execution" ? "shell"
                               : kind == "mcp_tool_call"   ? Str(*item, "tool")
                                                           : kind;
      pb::Event e = NewEvent(completed ? "tool_result" : "tool_use", name);
      PutString(e, "name", name);
      PutString(e, completed ? "toolUseId" : "id", Str(*item, "id"));
      if (kind == "command_execution") {
        PutString(e, "command", Str(*item, "command"));
        if (completed) {
          e.set_text(Str(*item, "aggregated_output"));
          if (const Value* code = Field(*item, "exit_code"); code != nullptr && code->has_number_value()) {
            // Clamped first: converting a double out of int's range is undefined.
            e.set_exit_code(static_cast<int>(std::clamp(
                code->number_value(), static_cast<double>(std::numeric_limits<int>::min()),
                static_cast<double>(std::numeric_limits<int>::max()))));
          }
        }
      }
      if (const Value* changes = Field(*item, "changes")) Put(e, "changes", *changes);
      if (!completed) {
        Value input;
        *input.mutable_struct_value() = *item;
        Put(e, "input", input);
      }
      const std::string status = Str(*item, "status");
      if (completed && (status == "failed" || status == "declined")) {
        Value t;
        t.set_bool_value(true);
        Put(e, "isError", t);
      }
      out.push_back(std::move(e));
    } else if (kind == "error" && completed) {
      // Advice about a run that goes on ("Model metadata for `m` not
      // found...", configuration and deprecation notices).
      out.push_back(NewEvent("warning", Str(*item, "message")));
    }
    // reasoning and todo_list items are the agent's own notes.
  } else if (type == "turn.completed") {
    summary_.finished = true;
    pb::Event e = NewEvent("result", summary_.result_text);
    if (const Value* usage = Field(msg, "usage")) Put(e, "usage", *usage);
    out.push_back(std::move(e));
  } else if (type == "turn.failed") {
    summary_.finished = true;
    summary_.is_error = true;
    const Struct* error = Obj(msg, "error");
    pb::Event e = NewEvent("result", error != nullptr ? Str(*error, "message") : "turn failed");
    e.set_exit_code(1);
    out.push_back(std::move(e));
  } else if (type == "error") {
    // Not the end: "Reconnecting... 1/5 (...)" while the CLI retries; when
    // it gives up, turn.failed follows with the reason.
    out.push_back(NewEvent("warning", Str(msg, "message")));
  }
  return out;
}

}  // namespace buildd::runner
