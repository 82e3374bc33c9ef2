#include "tests/testing/loopback_http_server.h"

#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace buildd::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct LoopbackHttpServer::Net {
  asio::io_context io;
  tcp::acceptor acceptor{io};
};

struct LoopbackHttpServer::Connection {
  explicit Connection(tcp::socket s) : socket(std::move(s)) {}
  // Owned here, so that the destructor can shut it down while its thread
  // is blocked reading from it.
  tcp::socket socket;
  std::thread thread;
};

LoopbackHttpServer::LoopbackHttpServer(Handler handler)
    : handler_(std::move(handler)), net_(std::make_unique<Net>()) {
  beast::error_code ec;
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  net_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) net_->acceptor.bind(endpoint, ec);
  if (!ec) net_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "LoopbackHttpServer: cannot listen on 127.0.0.1: %s\n",
                 ec.message().c_str());
    std::abort();
  }
  port_ = net_->acceptor.local_endpoint().port();
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

LoopbackHttpServer::~LoopbackHttpServer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // shutdown(2) on a socket another thread reads from is safe, unlike
    // asio's close().
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
  std::vector<std::unique_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (const auto& connection : connections) connection->thread.join();
}

std::string LoopbackHttpServer::base_url() const { return absl::StrCat("http://127.0.0.1:", port_); }

void LoopbackHttpServer::AcceptLoop() {
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

void LoopbackHttpServer::Serve(Connection* connection) {
  tcp::socket& socket = connection->socket;
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(256 << 20);
    beast::error_code ec;
    http::read(socket, buffer, parser, ec);
    if (ec) return;
    http::request<http::string_body> message = parser.release();

    HttpExchange exchange;
    exchange.method = std::string(message.method_string());
    exchange.target = std::string(message.target());
    const size_t q = exchange.target.find('?');
    exchange.path = exchange.target.substr(0, q);
    if (q != std::string::npos) exchange.query = exchange.target.substr(q + 1);
    for (const auto& field : message) {
      exchange.headers[absl::AsciiStrToLower(std::string(field.name_string()))] =
          std::string(field.value());
    }
    exchange.body = std::move(message.body());

    const HttpAnswer answer = handler_(exchange);
    http::response<http::string_body> response{static_cast<http::status>(answer.status),
                                               message.version()};
    bool typed = false;
    for (const auto& [name, value] : answer.headers) {
      response.set(name, value);
      if (absl::AsciiStrToLower(name) == "content-type") typed = true;
    }
    if (!typed) response.set(http::field::content_type, "application/json; charset=utf-8");
    response.body() = answer.body;
    response.keep_alive(message.keep_alive());
    response.prepare_payload();
    http::write(socket, response, ec);
    if (ec || !response.keep_alive()) return;
  }
}

}  // namespace buildd::testing
