#include "tests/testing/fake_anthropic.h"

#include <google/protobuf/struct.pb.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace buildd::testing {

namespace protobuf = google::protobuf;

namespace {

// The API's error type for an HTTP status.
const char* ErrorType(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

// A tool block's input object.
std::string ToolInput(const FakeBlock& block) {
  return block.kind == FakeBlock::Kind::kCustomToolUse
             ? absl::StrCat(R"({"input":)", JsonQuote(block.text), "}")
             : block.input_json;
}

// The parts of an answer shared by its streamed and its plain form.
struct Message {
  std::string id;
  std::string model;
  int input_tokens = 0;
  int output_tokens = 0;
  std::vector<std::string> tool_ids;  // per block; "" for text

  std::string StopReason(const FakeTurn& turn) const {
    for (const FakeBlock& block : turn.blocks) {
      if (block.kind != FakeBlock::Kind::kText) return "tool_use";
    }
    return "end_turn";
  }
};

std::string StreamBody(const FakeTurn& turn, const Message& answer) {
  std::string out = SseEvent(
      "message_start",
      absl::StrCat(R"({"type":"message_start","message":{"id":)", JsonQuote(answer.id),
                   R"(,"type":"message","role":"assistant","model":)", JsonQuote(answer.model),
                   R"(,"content":[],"stop_reason":null,"stop_sequence":null,)",
                   R"("usage":{"input_tokens":)", answer.input_tokens,
                   R"(,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,)",
                   R"("output_tokens":1}}})"));
  for (size_t i = 0; i < turn.blocks.size(); ++i) {
    const FakeBlock& block = turn.blocks[i];
    std::string start, delta;
    if (block.kind == FakeBlock::Kind::kText) {
      start = R"({"type":"text","text":""})";
      delta = absl::StrCat(R"({"type":"text_delta","text":)", JsonQuote(block.text), "}");
    } else {
      start = absl::StrCat(R"({"type":"tool_use","id":)", JsonQuote(answer.tool_ids[i]),
                           R"(,"name":)", JsonQuote(block.name), R"(,"input":{}})");
      delta = absl::StrCat(R"({"type":"input_json_delta","partial_json":)",
                           JsonQuote(ToolInput(block)), "}");
    }
    absl::StrAppend(
        &out,
        SseEvent("content_block_start", absl::StrCat(R"({"type":"content_block_start","index":)", i,
                                                     R"(,"content_block":)", start, "}")),
        SseEvent("content_block_delta", absl::StrCat(R"({"type":"content_block_delta","index":)", i,
                                                     R"(,"delta":)", delta, "}")),
        SseEvent("content_block_stop",
                 absl::StrCat(R"({"type":"content_block_stop","index":)", i, "}")));
  }
  absl::StrAppend(
      &out,
      SseEvent("message_delta",
               absl::StrCat(R"({"type":"message_delta","delta":{"stop_reason":")",
                            answer.StopReason(turn), R"(","stop_sequence":null},)",
                            R"("usage":{"output_tokens":)", answer.output_tokens, "}}")),
      SseEvent("message_stop", R"({"type":"message_stop"})"));
  return out;
}

std::string MessageBody(const FakeTurn& turn, const Message& answer) {
  std::vector<std::string> content;
  for (size_t i = 0; i < turn.blocks.size(); ++i) {
    const FakeBlock& block = turn.blocks[i];
    if (block.kind == FakeBlock::Kind::kText) {
      content.push_back(absl::StrCat(R"({"type":"text","text":)", JsonQuote(block.text), "}"));
    } else {
      content.push_back(absl::StrCat(R"({"type":"tool_use","id":)", JsonQuote(answer.tool_ids[i]),
                                     R"(,"name":)", JsonQuote(block.name), R"(,"input":)",
                                     ToolInput(block), "}"));
    }
  }
  return absl::StrCat(R"({"id":)", JsonQuote(answer.id),
                      R"(,"type":"message","role":"assistant","model":)", JsonQuote(answer.model),
                      R"(,"content":[)", absl::StrJoin(content, ","), R"(],"stop_reason":")",
                      answer.StopReason(turn), R"(","stop_sequence":null,)",
                      R"("usage":{"input_tokens":)", answer.input_tokens, R"(,"output_tokens":)",
                      answer.output_tokens, "}}");
}

// The Messages API (see FakeAnthropic).
class AnthropicApi final : public FakeModelApi {
 public:
  bool AsksForTurn(absl::string_view method, absl::string_view path) const override {
    return method == "POST" && path == "/v1/messages";
  }

  const protobuf::Value* Conversation(const protobuf::Struct& body) const override {
    auto it = body.fields().find("messages");
    return it != body.fields().end() ? &it->second : nullptr;
  }

  int ModelTurns(const protobuf::Struct& body) const override {
    const protobuf::Value* messages = Conversation(body);
    if (messages == nullptr) return 0;
    int turns = 0;
    for (const auto& message : messages->list_value().values()) {
      if (StringField(message.struct_value(), "role") == "assistant") ++turns;
    }
    return turns;
  }

  std::string SessionHeader() const override { return "X-Claude-Code-Session-Id"; }
  std::string KeyHeader() const override { return "X-Api-Key"; }

  // The API's error body, server-sent events when the request asked for a
  // stream, else one JSON message.
  Reply Answer(const FakeTurn& turn, const protobuf::Struct& body, size_t body_bytes,
               int id) const override {
    Reply reply;
    if (turn.http_status != 200) {
      reply.status = turn.http_status;
      reply.body =
          absl::StrCat(R"({"type":"error","error":{"type":")", ErrorType(turn.http_status),
                       R"(","message":)", JsonQuote(turn.error_message), "}}");
      return reply;
    }
    Message answer;
    answer.id = absl::StrCat("msg_fake_", id);
    answer.model = StringField(body, "model");
    answer.input_tokens = static_cast<int>(body_bytes / 4);
    for (size_t i = 0; i < turn.blocks.size(); ++i) {
      const FakeBlock& block = turn.blocks[i];
      const bool tool = block.kind != FakeBlock::Kind::kText;
      answer.tool_ids.push_back(tool ? absl::StrCat("toolu_fake_", id, "_", i) : "");
      answer.output_tokens += TokenCount(tool ? ToolInput(block) : block.text);
    }
    auto stream = body.fields().find("stream");
    if (stream != body.fields().end() && stream->second.bool_value()) {
      reply.content_type = "text/event-stream";
      reply.body = StreamBody(turn, answer);
    } else {
      reply.body = MessageBody(turn, answer);
    }
    return reply;
  }

  Reply Other(absl::string_view method, absl::string_view path,
              const std::string& body) const override {
    Reply reply;
    if (method == "POST" && path == "/v1/messages/count_tokens") {
      reply.body = absl::StrCat(R"({"input_tokens":)", TokenCount(body), "}");
    } else {
      reply.body = "{}";
    }
    return reply;
  }
};

}  // namespace

FakeAnthropic::FakeAnthropic() : FakeModelServer(std::make_unique<AnthropicApi>()) {}

std::vector<std::pair<std::string, std::string>> FakeAnthropic::ClaudeEnv() const {
  return {
      {"ANTHROPIC_BASE_URL", base_url()},
      {"ANTHROPIC_API_KEY", "sk-ant-api03-fake-key-for-tests"},
      {"DISABLE_TELEMETRY", "1"},
      {"DISABLE_ERROR_REPORTING", "1"},
      {"DISABLE_AUTOUPDATER", "1"},
      {"DISABLE_NON_ESSENTIAL_MODEL_CALLS", "1"},
      {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"},
      // A proxy from the test's environment must not see loopback traffic.
      {"NO_PROXY", "127.0.0.1,localhost"},
  };
}

std::string TestClaudeCli() {
  const char* cli = std::getenv("BUILDD_TEST_CLAUDE");
  if (cli == nullptr || *cli == '\0') {
    std::fprintf(stderr,
                 "BUILDD_TEST_CLAUDE is not set: run the tests with `./buildd test`, which "
                 "installs the Claude Code CLI for them and sets it\n");
    std::abort();
  }
  return cli;
}

}  // namespace buildd::testing
