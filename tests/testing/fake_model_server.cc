#include "tests/testing/fake_model_server.h"

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
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace buildd::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace protobuf = google::protobuf;
using tcp = asio::ip::tcp;

namespace {

// Requests carry the whole conversation, tool schemas and system prompt.
constexpr uint64_t kBodyLimit = 64 << 20;

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

struct FakeModelServer::Net {
  asio::io_context io;
  tcp::acceptor acceptor{io};
};

struct FakeModelServer::Connection {
  explicit Connection(tcp::socket s) : socket(std::move(s)) {}
  // Owned here, not by the serving thread, so that the destructor can shut
  // it down while the thread is blocked reading from it.
  tcp::socket socket;
  std::thread thread;
};

FakeModelServer::FakeModelServer(std::unique_ptr<FakeModelApi> api)
    : api_(std::move(api)), net_(std::make_unique<Net>()) {
  beast::error_code ec;
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  net_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) net_->acceptor.bind(endpoint, ec);
  if (!ec) net_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "FakeModelServer: cannot listen on 127.0.0.1: %s\n",
                 ec.message().c_str());
    std::abort();
  }
  port_ = net_->acceptor.local_endpoint().port();
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

FakeModelServer::~FakeModelServer() {
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

std::string FakeModelServer::base_url() const { return absl::StrCat("http://127.0.0.1:", port_); }

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

void FakeModelServer::AcceptLoop() {
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

void FakeModelServer::Serve(Connection* connection) {
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
    if (auto it = message.find(api_->SessionHeader()); it != message.end()) {
      request.session_id = std::string(it->value());
    }
    if (auto it = message.find(api_->KeyHeader()); it != message.end()) {
      request.api_key = std::string(it->value());
    }

    FakeModelApi::Reply reply;
    if (api_->AsksForTurn(request.method, request.path)) {
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
      reply = api_->Answer(turn, json, message.body().size(), id);
    } else {
      reply = api_->Other(request.method, request.path, message.body());
      absl::MutexLock lock(&mu_);
      requests_.push_back(std::move(request));
    }

    http::response<http::string_body> response(static_cast<http::status>(reply.status),
                                               message.version());
    response.set(http::field::content_type, reply.content_type);
    if (reply.content_type == "text/event-stream") {
      response.set(http::field::cache_control, "no-cache");
    }
    response.body() = std::move(reply.body);
    response.keep_alive(message.keep_alive());
    response.prepare_payload();
    http::write(socket, response, ec);
    if (ec || !message.keep_alive()) return;
  }
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

void FakeModelServer::WaitAtGate(const std::string& gate) {
  auto open = [this, &gate]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stopping_ || released_gates_.contains(gate);
  };
  absl::MutexLock lock(&mu_);
  reached_gates_.insert(gate);
  mu_.Await(absl::Condition(&open));
}

std::ostream& operator<<(std::ostream& os, const FakeModelServer::Request& request) {
  return os << request.method << " " << request.path << " key=" << request.key
            << " assistant_messages=" << request.assistant_messages
            << " session_id=" << request.session_id;
}

}  // namespace buildd::testing
