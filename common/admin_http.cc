#include "common/admin_http.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/accept_backoff.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace buildd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
// A client has this long from its connection to the end of its response.
constexpr auto kRequestTimeout = std::chrono::seconds(10);
}  // namespace

struct AdminHttpServer::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io};
  AcceptBackoff backoff{"admin http"};
  std::function<bool()> healthy;
  std::thread thread;

  void Accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) {
        retry.expires_after(backoff.Failed(ec));
        retry.async_wait([this](boost::system::error_code ec) {
          if (!ec) Accept();
        });
        return;
      }
      backoff.Succeeded();
      auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
      auto buffer = std::make_shared<beast::flat_buffer>();
      auto request = std::make_shared<http::request<http::string_body>>();
      stream->expires_after(kRequestTimeout);
      http::async_read(*stream, *buffer, *request,
                       [this, stream, buffer, request](boost::system::error_code ec, size_t) {
                         if (!ec) Respond(stream, *request);
                       });
      Accept();
    });
  }

  void Respond(std::shared_ptr<beast::tcp_stream> stream,
               const http::request<http::string_body>& req) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req.version());
    res->keep_alive(false);
    if (req.target() == "/metrics") {
      res->result(http::status::ok);
      res->set(http::field::content_type, "text/plain; version=0.0.4");
      res->body() = Metrics::Global().Render();
    } else if (req.target() == "/health" || req.target() == "/healthz") {
      const bool ok = !healthy || healthy();
      res->result(ok ? http::status::ok : http::status::service_unavailable);
      res->set(http::field::content_type, "application/json");
      res->body() = ok ? R"({"status":"ok"})" : R"({"status":"unavailable"})";
    } else {
      res->result(http::status::not_found);
      res->set(http::field::content_type, "application/json");
      res->body() = R"({"error":{"code":"NOT_FOUND","message":"no such path"}})";
    }
    res->prepare_payload();
    http::async_write(*stream, *res, [stream, res](boost::system::error_code, size_t) {
      boost::system::error_code ignored;
      stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }
};

absl::StatusOr<std::unique_ptr<AdminHttpServer>> AdminHttpServer::Start(
    const std::string& address, std::function<bool()> healthy) {
  std::unique_ptr<AdminHttpServer> server(new AdminHttpServer);
  server->impl_ = std::make_unique<Impl>();
  Impl& impl = *server->impl_;
  impl.healthy = std::move(healthy);
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("bad listen address: ", address));
  }
  std::string host = address.substr(0, colon);
  if (host.empty()) host = "0.0.0.0";
  boost::system::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(host, ec), static_cast<uint16_t>(port));
  if (ec) return absl::InvalidArgumentError(absl::StrCat("bad listen host: ", host));
  impl.acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl.acceptor.bind(endpoint, ec);
  if (!ec) impl.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", ec.message()));
  server->port_ = impl.acceptor.local_endpoint().port();
  impl.Accept();
  impl.thread = std::thread([&impl] { impl.io.run(); });
  return server;
}

AdminHttpServer::~AdminHttpServer() {
  if (impl_) {
    impl_->io.stop();
    if (impl_->thread.joinable()) impl_->thread.join();
  }
}

absl::StatusOr<std::unique_ptr<AdminHttpServer>> MaybeStartMetrics(const std::string& address,
                                                                   std::function<bool()> healthy) {
  if (address.empty()) return nullptr;
  auto server = AdminHttpServer::Start(ListenAddress(address, "127.0.0.1"), std::move(healthy));
  if (server.ok()) Log()->info("metrics on http port {}", (*server)->port());
  return server;
}

}  // namespace buildd
