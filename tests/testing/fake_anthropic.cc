#include "tests/testing/fake_anthropic.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace buildd::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace protobuf = google::protobuf;
using tcp = asio::ip::tcp;

namespace {

// Requests carry the whole conversation, tool schemas and system prompt.
constexpr uint64_t kBodyLimit = 64 << 20;

// `s` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view s) {
  google::protobuf::Value value;
  value.set_string_value(std::string(s));
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(value, &out);
  return out;
}

// True when some string inside `value` contains `needle`.
bool Contains(const protobuf::Value& value, absl::string_view needle) {
  switch (value.kind_case()) {
    case protobuf::Value::kStringValue:
      return absl::StrContains(value.string_value(), needle);
    case protobuf::Value::kListValue:
      for (const auto& item : value.list_value().values()) {
        if (Contains(item, needle)) return true;
      }
      return false;
    case protobuf::Value::kStructValue:
      for (const auto& [name, field] : value.struct_value().fields()) {
        if (absl::StrContains(name, needle) || Contains(field, needle)) return true;
      }
      return false;
    default:
      return false;
  }
}

std::string StringField(const protobuf::Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  return it != object.fields().end() && it->second.has_string_value() ? it->second.string_value()
                                                                      : "";
}

// A rough token count, enough for the CLI's usage and cost figures.
int TokenCount(absl::string_view text) { return static_cast<int>(text.size() / 4) + 1; }

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

// The parts of an answer shared by its streamed and its plain form.
struct Answer {
  std::string id;
  std::string model;
  int input_tokens = 0;
  int output_tokens = 0;
  std::vector<std::string> tool_ids;  // per block; "" for text

  std::string StopReason(const FakeTurn& turn) const {
    for (const FakeBlock& block : turn.blocks) {
      if (block.kind == FakeBlock::Kind::kToolUse) return "tool_use";
    }
    return "end_turn";
  }
};

std::string SseEvent(absl::string_view type, absl::string_view data) {
  return absl::StrCat("event: ", type, "\ndata: ", data, "\n\n");
}

std::string StreamBody(const FakeTurn& turn, const Answer& answer) {
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
                           JsonQuote(block.input_json), "}");
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

std::string MessageBody(const FakeTurn& turn, const Answer& answer) {
  std::vector<std::string> content;
  for (size_t i = 0; i < turn.blocks.size(); ++i) {
    const FakeBlock& block = turn.blocks[i];
    if (block.kind == FakeBlock::Kind::kText) {
      content.push_back(absl::StrCat(R"({"type":"text","text":)", JsonQuote(block.text), "}"));
    } else {
      content.push_back(absl::StrCat(R"({"type":"tool_use","id":)", JsonQuote(answer.tool_ids[i]),
                                     R"(,"name":)", JsonQuote(block.name), R"(,"input":)",
                                     block.input_json, "}"));
    }
  }
  return absl::StrCat(R"({"id":)", JsonQuote(answer.id),
                      R"(,"type":"message","role":"assistant","model":)", JsonQuote(answer.model),
                      R"(,"content":[)", absl::StrJoin(content, ","), R"(],"stop_reason":")",
                      answer.StopReason(turn), R"(","stop_sequence":null,)",
                      R"("usage":{"input_tokens":)", answer.input_tokens, R"(,"output_tokens":)",
                      answer.output_tokens, "}}");
}

// Puts the answer to a POST /v1/messages with body `json` (of `body_bytes`)
// into `response`: the API's error body, server-sent events when the request
// asked for a stream, else one JSON message. `id` is unique per answer.
void FillAnswer(const FakeTurn& turn, const protobuf::Struct& json, size_t body_bytes, int id,
                http::response<http::string_body>* response) {
  if (turn.http_status != 200) {
    response->result(turn.http_status);
    response->body() =
        absl::StrCat(R"({"type":"error","error":{"type":")", ErrorType(turn.http_status),
                     R"(","message":)", JsonQuote(turn.error_message), "}}");
    return;
  }
  Answer answer;
  answer.id = absl::StrCat("msg_fake_", id);
  answer.model = StringField(json, "model");
  answer.input_tokens = static_cast<int>(body_bytes / 4);
  for (size_t i = 0; i < turn.blocks.size(); ++i) {
    const FakeBlock& block = turn.blocks[i];
    const bool tool = block.kind == FakeBlock::Kind::kToolUse;
    answer.tool_ids.push_back(tool ? absl::StrCat("toolu_fake_", id, "_", i) : "");
    answer.output_tokens += TokenCount(tool ? block.input_json : block.text);
  }
  auto stream = json.fields().find("stream");
  if (stream != json.fields().end() && stream->second.bool_value()) {
    response->set(http::field::content_type, "text/event-stream");
    response->set(http::field::cache_control, "no-cache");
    response->body() = StreamBody(turn, answer);
  } else {
    response->body() = MessageBody(turn, answer);
  }
}

}  // namespace

FakeBlock FakeBlock::Text(std::string text) {
  FakeBlock block;
  block.kind = Kind::kText;
  block.text = std::move(text);
  return block;
}

FakeBlock FakeBlock::ToolUse(std::string name, std::string input_json) {
  FakeBlock block;
  block.kind = Kind::kToolUse;
  block.name = std::move(name);
  block.input_json = std::move(input_json);
  return block;
}

FakeTurn FakeTurn::Reply(std::vector<FakeBlock> blocks) {
  FakeTurn turn;
  turn.blocks = std::move(blocks);
  return turn;
}

FakeTurn FakeTurn::Error(int http_status, std::string message) {
  FakeTurn turn;
  turn.http_status = http_status;
  turn.error_message = std::move(message);
  return turn;
}

FakeTurn FakeTurn::HeldAt(std::string gate) && {
  this->gate = std::move(gate);
  return std::move(*this);
}

struct FakeAnthropic::Net {
  asio::io_context io;
  tcp::acceptor acceptor{io};
};

struct FakeAnthropic::Connection {
  explicit Connection(tcp::socket s) : socket(std::move(s)) {}
  // Owned here, not by the serving thread, so that the destructor can shut
  // it down while the thread is blocked reading from it.
  tcp::socket socket;
  std::thread thread;
};

FakeAnthropic::FakeAnthropic() : net_(std::make_unique<Net>()) {
  beast::error_code ec;
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  net_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) net_->acceptor.bind(endpoint, ec);
  if (!ec) net_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "FakeAnthropic: cannot listen on 127.0.0.1: %s\n", ec.message().c_str());
    std::abort();
  }
  port_ = net_->acceptor.local_endpoint().port();
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeAnthropic::~FakeAnthropic() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // Wakes the serving threads that block in a read; shutdown(2) on a
    // socket another thread reads from is safe, unlike asio's close().
    for (const auto& connection : connections_) {
      ::shutdown(connection->socket.native_handle(), SHUT_RDWR);
    }
  }
  // The accept loop sees stopping_ once one more connection arrives.
  {
    tcp::socket wake(net_->io);
    beast::error_code ec;
    wake.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
  }
  accept_thread_.join();
  // No connection is added after the accept loop ended.
  std::vector<std::unique_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (const auto& connection : connections) connection->thread.join();
}

std::string FakeAnthropic::base_url() const { return absl::StrCat("http://127.0.0.1:", port_); }

void FakeAnthropic::Script(std::string key, std::vector<FakeTurn> turns) {
  absl::MutexLock lock(&mu_);
  scripts_.emplace_back(std::move(key), std::move(turns));
}

void FakeAnthropic::Release(const std::string& gate) {
  absl::MutexLock lock(&mu_);
  released_gates_.insert(gate);
}

bool FakeAnthropic::WaitForGate(const std::string& gate, absl::Duration timeout) {
  auto reached = [this, &gate]()
                     ABSL_SHARED_LOCKS_REQUIRED(mu_) { return reached_gates_.contains(gate); };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

std::vector<FakeAnthropic::Request> FakeAnthropic::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

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

void FakeAnthropic::AcceptLoop() {
  for (;;) {
    tcp::socket socket(net_->io);
    beast::error_code ec;
    net_->acceptor.accept(socket, ec);
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (ec) continue;
    auto connection = std::make_unique<Connection>(std::move(socket));
    Connection* raw = connection.get();
    connection->thread = std::thread([this, raw] { Serve(raw); });
    connections_.push_back(std::move(connection));
  }
}

void FakeAnthropic::Serve(Connection* connection) {
  tcp::socket& socket = connection->socket;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    beast::error_code ec;
    http::read(socket, buffer, parser, ec);
    if (ec) return;
    http::request<http::string_body> message = parser.release();

    Request request;
    request.method = std::string(message.method_string());
    const absl::string_view target(message.target().data(), message.target().size());
    request.path = std::string(target.substr(0, target.find('?')));
    request.body = message.body();
    if (auto it = message.find("X-Api-Key"); it != message.end()) {
      request.api_key = std::string(it->value());
    }
    if (auto it = message.find("X-Claude-Code-Session-Id"); it != message.end()) {
      request.session_id = std::string(it->value());
    }
    const bool post = message.method() == http::verb::post;

    http::response<http::string_body> response(http::status::ok, message.version());
    response.set(http::field::content_type, "application/json");
    if (post && request.path == "/v1/messages") {
      // An unparsable body matches no script and gets the default answer.
      protobuf::Struct json;
      (void)protobuf::util::JsonStringToMessage(message.body(), &json);
      const FakeTurn turn = TurnFor(json, &request);
      int id;
      {
        absl::MutexLock lock(&mu_);
        requests_.push_back(std::move(request));
        id = ++next_id_;
      }
      if (!turn.gate.empty()) WaitAtGate(turn.gate);
      FillAnswer(turn, json, message.body().size(), id, &response);
    } else {
      if (post && request.path == "/v1/messages/count_tokens") {
        response.body() = absl::StrCat(R"({"input_tokens":)", TokenCount(message.body()), "}");
      } else {
        response.body() = "{}";
      }
      absl::MutexLock lock(&mu_);
      requests_.push_back(std::move(request));
    }
    response.keep_alive(message.keep_alive());
    response.prepare_payload();
    http::write(socket, response, ec);
    if (ec || !message.keep_alive()) return;
  }
}

FakeTurn FakeAnthropic::TurnFor(const protobuf::Struct& body, Request* request) {
  const protobuf::Value no_messages;
  auto it = body.fields().find("messages");
  const protobuf::Value& messages = it != body.fields().end() ? it->second : no_messages;
  for (const auto& message : messages.list_value().values()) {
    if (StringField(message.struct_value(), "role") == "assistant") {
      ++request->assistant_messages;
    }
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [key, turns] : scripts_) {
    if (!Contains(messages, key)) continue;
    request->key = key;
    const size_t index = request->assistant_messages;
    return index < turns.size() ? turns[index] : FakeTurn::Reply({FakeBlock::Text("Done.")});
  }
  return FakeTurn::Reply({FakeBlock::Text("ok")});
}

void FakeAnthropic::WaitAtGate(const std::string& gate) {
  auto open = [this, &gate]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || released_gates_.contains(gate);
  };
  absl::MutexLock lock(&mu_);
  reached_gates_.insert(gate);
  mu_.Await(absl::Condition(&open));
}

std::ostream& operator<<(std::ostream& os, const FakeAnthropic::Request& request) {
  return os << request.method << " " << request.path << " key=" << request.key
            << " assistant_messages=" << request.assistant_messages
            << " session_id=" << request.session_id;
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
