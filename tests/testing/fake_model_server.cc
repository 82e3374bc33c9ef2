#include "tests/testing/fake_model_server.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace buildd::testing {

namespace protobuf = google::protobuf;

namespace {

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

}  // namespace

std::string JsonQuote(absl::string_view s) {
  protobuf::Value value;
  value.set_string_value(std::string(s));
  std::string out;
  (void)protobuf::util::MessageToJsonString(value, &out);
  return out;
}

std::string StringField(const protobuf::Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  return it != object.fields().end() && it->second.has_string_value() ? it->second.string_value()
                                                                      : "";
}

std::string SseEvent(absl::string_view type, absl::string_view data) {
  return absl::StrCat("event: ", type, "\ndata: ", data, "\n\n");
}

std::vector<std::string> EventNames(const std::string& body) {
  std::vector<std::string> names;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (absl::ConsumePrefix(&line, "event: ")) names.emplace_back(line);
  }
  return names;
}

int TokenCount(absl::string_view text) { return static_cast<int>(text.size() / 4) + 1; }

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

FakeBlock FakeBlock::CustomToolUse(std::string name, std::string input) {
  FakeBlock block;
  block.kind = Kind::kCustomToolUse;
  block.name = std::move(name);
  block.text = std::move(input);
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

FakeModelServer::FakeModelServer(std::unique_ptr<FakeModelApi> api)
    : api_(std::move(api)),
      server_([this](const HttpExchange& exchange) { return Answer(exchange); }) {}

FakeModelServer::~FakeModelServer() {
  // Opens the gates; the server then closes its connections and joins them.
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

std::string FakeModelServer::base_url() const { return server_.base_url(); }

void FakeModelServer::Script(std::string key, std::vector<FakeTurn> turns) {
  absl::MutexLock lock(&mu_);
  scripts_.emplace_back(std::move(key), std::move(turns));
}

void FakeModelServer::Release(const std::string& gate) {
  absl::MutexLock lock(&mu_);
  released_gates_.insert(gate);
}

bool FakeModelServer::WaitForGate(const std::string& gate, absl::Duration timeout) {
  auto reached = [this, &gate]()
                     ABSL_SHARED_LOCKS_REQUIRED(mu_) { return reached_gates_.contains(gate); };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

std::vector<FakeModelServer::Request> FakeModelServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

HttpAnswer FakeModelServer::Answer(const HttpExchange& exchange) {
  Request request;
  request.method = exchange.method;
  request.path = exchange.path;
  request.body = exchange.body;
  request.session_id = exchange.Header(absl::AsciiStrToLower(api_->SessionHeader()));
  request.api_key = exchange.Header(absl::AsciiStrToLower(api_->KeyHeader()));

  FakeModelApi::Reply reply;
  if (api_->AsksForTurn(request.method, request.path)) {
    // An unparsable body matches no script and gets the default answer.
    protobuf::Struct json;
    (void)protobuf::util::JsonStringToMessage(exchange.body, &json);
    const FakeTurn turn = TurnFor(json, &request);
    int id;
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(std::move(request));
      id = ++next_id_;
    }
    if (!turn.gate.empty() && !WaitAtGate(turn.gate)) {
      // Stopped while held: the turn never comes.
      return HttpAnswer{503, {}, R"({"error":"the fake model server stopped"})"};
    }
    reply = api_->Answer(turn, json, exchange.body.size(), id);
  } else {
    reply = api_->Other(request.method, request.path, exchange.body);
    absl::MutexLock lock(&mu_);
    requests_.push_back(std::move(request));
  }
  HttpAnswer answer;
  answer.status = reply.status;
  answer.headers.emplace_back("Content-Type", reply.content_type);
  if (reply.content_type == "text/event-stream") answer.headers.emplace_back("Cache-Control", "no-cache");
  answer.body = std::move(reply.body);
  return answer;
}

FakeTurn FakeModelServer::TurnFor(const protobuf::Struct& body, Request* request) {
  request->assistant_messages = api_->ModelTurns(body);
  const protobuf::Value* conversation = api_->Conversation(body);
  absl::MutexLock lock(&mu_);
  for (const auto& [key, turns] : scripts_) {
    if (conversation == nullptr || !Contains(*conversation, key)) continue;
    request->key = key;
    const size_t index = request->assistant_messages;
    return index < turns.size() ? turns[index] : FakeTurn::Reply({FakeBlock::Text("Done.")});
  }
  return FakeTurn::Reply({FakeBlock::Text("ok")});
}

bool FakeModelServer::WaitAtGate(const std::string& gate) {
  auto open = [this, &gate]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || released_gates_.contains(gate);
  };
  absl::MutexLock lock(&mu_);
  reached_gates_.insert(gate);
  mu_.Await(absl::Condition(&open));
  return released_gates_.contains(gate);
}

std::ostream& operator<<(std::ostream& os, const FakeModelServer::Request& request) {
  return os << request.method << " " << request.path << " key=" << request.key
            << " assistant_messages=" << request.assistant_messages
            << " session_id=" << request.session_id;
}

}  // namespace buildd::testing
