#include "tests/testing/fake_openai.h"

#include <google/protobuf/struct.pb.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace buildd::testing {

namespace protobuf = google::protobuf;

namespace {

// The provider's name in config.toml and the variable that holds its key:
// the one an account's OpenAI key reaches its runners' tasks in.
constexpr char kProvider[] = "buildd_fake";
constexpr char kKeyVariable[] = "OPENAI_API_KEY";
// A model in the pinned CLI's catalog, so that it offers the tools it would
// use for real (apply_patch among them). For a model it does not know, the
// CLI warns and offers fewer.
constexpr char kModel[] = "gpt-5.5";

// True for the input items the model wrote: assistant messages, tool calls
// and reasoning, as opposed to user and developer messages and tool outputs.
bool IsModelOutput(const protobuf::Struct& item) {
  const std::string type = StringField(item, "type");
  if (type == "message") return StringField(item, "role") == "assistant";
  return !type.empty() && !absl::EndsWith(type, "_output");
}

// One output item of an answer, finished or (`done` false) just begun: an
// assistant message, a function call or a custom tool call.
std::string OutputItem(const FakeBlock& block, const std::string& id, bool done) {
  const std::string head = absl::StrCat(R"({"id":)", JsonQuote(id), R"(,"status":")",
                                        done ? "completed" : "in_progress", R"(",)");
  switch (block.kind) {
    case FakeBlock::Kind::kText:
      return absl::StrCat(head, R"("type":"message","role":"assistant","content":[)",
                          done ? absl::StrCat(R"({"type":"output_text","text":)",
                                              JsonQuote(block.text), R"(,"annotations":[]})")
                               : "",
                          "]}");
    case FakeBlock::Kind::kToolUse:
      return absl::StrCat(head, R"("type":"function_call","call_id":)",
                          JsonQuote(absl::StrCat("call_", id)), R"(,"name":)",
                          JsonQuote(block.name), R"(,"arguments":)",
                          JsonQuote(done ? block.input_json : ""), "}");
    case FakeBlock::Kind::kCustomToolUse:
      return absl::StrCat(head, R"("type":"custom_tool_call","call_id":)",
                          JsonQuote(absl::StrCat("call_", id)), R"(,"name":)",
                          JsonQuote(block.name), R"(,"input":)",
                          JsonQuote(done ? block.text : ""), "}");
  }
  return "{}";
}

// The streamed event that carries `block`'s text or input.
std::string DeltaEvent(const FakeBlock& block, const std::string& item_id, size_t index) {
  const char* type = block.kind == FakeBlock::Kind::kText ? "response.output_text.delta"
                     : block.kind == FakeBlock::Kind::kToolUse
                         ? "response.function_call_arguments.delta"
                         : "response.custom_tool_call_input.delta";
  return SseEvent(
      type, absl::StrCat(R"({"type":")", type, R"(","item_id":)", JsonQuote(item_id),
                         R"(,"output_index":)", index,
                         block.kind == FakeBlock::Kind::kText ? R"(,"content_index":0)" : "",
                         R"(,"delta":)",
                         JsonQuote(block.kind == FakeBlock::Kind::kToolUse ? block.input_json
                                                                           : block.text),
                         "}"));
}

// The response object; without `items` it is one that has just begun.
std::string ResponseObject(const std::string& id, const std::string& model,
                           const std::vector<std::string>* items, int input_tokens,
                           int output_tokens) {
  std::string out = absl::StrCat(R"({"id":)", JsonQuote(id), R"(,"object":"response",)",
                                 R"("created_at":0,"status":")",
                                 items != nullptr ? "completed" : "in_progress",
                                 R"(","model":)", JsonQuote(model), R"(,"output":[)");
  if (items != nullptr) absl::StrAppend(&out, absl::StrJoin(*items, ","));
  out += "]";
  if (items != nullptr) {
    absl::StrAppend(&out, R"(,"usage":{"input_tokens":)", input_tokens,
                    R"(,"input_tokens_details":{"cached_tokens":0},"output_tokens":)",
                    output_tokens, R"(,"output_tokens_details":{"reasoning_tokens":0},)",
                    R"("total_tokens":)", input_tokens + output_tokens, "}");
  }
  return out + "}";
}

// The Responses API (see FakeOpenAI).
class ResponsesApi final : public FakeModelApi {
 public:
  bool AsksForTurn(absl::string_view method, absl::string_view path) const override {
    return method == "POST" && path == "/v1/responses";
  }

  const protobuf::Value* Conversation(const protobuf::Struct& body) const override {
    auto it = body.fields().find("input");
    return it != body.fields().end() ? &it->second : nullptr;
  }

  int ModelTurns(const protobuf::Struct& body) const override {
    const protobuf::Value* input = Conversation(body);
    if (input == nullptr) return 0;
    int turns = 0;
    bool in_turn = false;
    for (const auto& item : input->list_value().values()) {
      const bool model = IsModelOutput(item.struct_value());
      if (model && !in_turn) ++turns;
      in_turn = model;
    }
    return turns;
  }

  std::string SessionHeader() const override { return "session-id"; }
  std::string KeyHeader() const override { return "Authorization"; }

  Reply Answer(const FakeTurn& turn, const protobuf::Struct& body, size_t body_bytes,
               int id) const override {
    Reply reply;
    if (turn.http_status != 200) {
      reply.status = turn.http_status;
      reply.body = absl::StrCat(
          R"({"error":{"message":)", JsonQuote(turn.error_message), R"(,"type":")",
          turn.http_status >= 500 ? "server_error" : "invalid_request_error",
          R"(","param":null,"code":null}})");
      return reply;
    }
    const std::string response_id = absl::StrCat("resp_fake_", id);
    const std::string model = StringField(body, "model");
    const int input_tokens = static_cast<int>(body_bytes / 4);
    int output_tokens = 0;
    std::vector<std::string> items;
    std::string events = SseEvent(
        "response.created",
        absl::StrCat(R"({"type":"response.created","response":)",
                     ResponseObject(response_id, model, nullptr, 0, 0), "}"));
    for (size_t i = 0; i < turn.blocks.size(); ++i) {
      const FakeBlock& block = turn.blocks[i];
      const bool text = block.kind == FakeBlock::Kind::kText;
      const std::string item_id = absl::StrCat(text ? "msg_fake_" : "fc_fake_", id, "_", i);
      output_tokens += TokenCount(block.kind == FakeBlock::Kind::kToolUse ? block.input_json
                                                                          : block.text);
      items.push_back(OutputItem(block, item_id, true));
      absl::StrAppend(
          &events,
          SseEvent("response.output_item.added",
                   absl::StrCat(R"({"type":"response.output_item.added","output_index":)", i,
                                R"(,"item":)", OutputItem(block, item_id, false), "}")),
          DeltaEvent(block, item_id, i),
          SseEvent("response.output_item.done",
                   absl::StrCat(R"({"type":"response.output_item.done","output_index":)", i,
                                R"(,"item":)", items.back(), "}")));
    }
    const std::string done =
        ResponseObject(response_id, model, &items, input_tokens, output_tokens);
    auto stream = body.fields().find("stream");
    if (stream != body.fields().end() && stream->second.bool_value()) {
      reply.content_type = "text/event-stream";
      reply.body = absl::StrCat(
          events, SseEvent("response.completed",
                           absl::StrCat(R"({"type":"response.completed","response":)", done, "}")));
    } else {
      reply.body = done;
    }
    return reply;
  }

  Reply Other(absl::string_view method, absl::string_view path,
              const std::string& /*body*/) const override {
    Reply reply;
    reply.body = method == "GET" && path == "/v1/models" ? R"({"object":"list","data":[]})" : "{}";
    return reply;
  }
};

}  // namespace

FakeOpenAI::FakeOpenAI() : FakeModelServer(std::make_unique<ResponsesApi>()) {}

absl::Status FakeOpenAI::WriteCodexConfig(const std::string& codex_home) const {
  std::error_code ec;
  std::filesystem::create_directories(codex_home, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", codex_home, ": ", ec.message()));
  const std::string path = codex_home + "/config.toml";
  std::ofstream out(path, std::ios::trunc);
  out << "# Written by FakeOpenAI: the model is a test's script on loopback.\n"
      << "model = \"" << kModel << "\"\n"
      << "model_provider = \"" << kProvider << "\"\n"
      << "\n"
      << "[model_providers." << kProvider << "]\n"
      << "name = \"buildd test fake\"\n"
      << "base_url = \"" << base_url() << "/v1\"\n"
      << "env_key = \"" << kKeyVariable << "\"\n"
      << "wire_api = \"responses\"\n"
      << "# A scripted error is meant, not a glitch to retry.\n"
      << "request_max_retries = 0\n"
      << "stream_max_retries = 0\n"
      << "\n"
      << "# Otherwise the CLI reaches out to chatgpt.com and github.com.\n"
      << "[analytics]\n"
      << "enabled = false\n"
      << "\n"
      << "[features]\n"
      << "plugins = false\n";
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> FakeOpenAI::CodexEnv() const {
  return {
      {kKeyVariable, "sk-fake-openai-key-for-tests"},
      // A proxy from the test's environment must not see loopback traffic.
      {"NO_PROXY", "127.0.0.1,localhost"},
  };
}

FakeBlock CodexShell(const std::string& command) {
  return FakeBlock::ToolUse("exec_command",
                            absl::StrCat(R"({"cmd":)", JsonQuote(command), R"(,"login":false})"));
}

FakeBlock CodexApplyPatch(std::string patch) {
  return FakeBlock::CustomToolUse("apply_patch", std::move(patch));
}

FakeBlock CodexAddFile(const std::string& path, const std::string& content) {
  std::string patch = absl::StrCat("*** Begin Patch\n*** Add File: ", path, "\n");
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    absl::StrAppend(&patch, "+", line, "\n");
  }
  // Content that ends in a newline has no line after it.
  if (absl::EndsWith(content, "\n")) patch.resize(patch.size() - 2);
  return CodexApplyPatch(absl::StrCat(patch, "*** End Patch\n"));
}

std::string TestCodexCli() {
  const char* cli = std::getenv("BUILDD_TEST_CODEX");
  if (cli == nullptr || *cli == '\0') {
    std::fprintf(stderr,
                 "BUILDD_TEST_CODEX is not set: run the tests with `./buildd test`, which "
                 "installs the Codex CLI for them and sets it\n");
    std::abort();
  }
  return cli;
}

}  // namespace buildd::testing
