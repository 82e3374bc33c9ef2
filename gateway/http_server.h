#ifndef BUILDD_GATEWAY_HTTP_SERVER_H_
#define BUILDD_GATEWAY_HTTP_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/router.h"

namespace buildd::gateway {

struct HttpServerOptions {
  // "host:port"; port 0 picks a free one (see port()).
  std::string listen = "127.0.0.1:8080";
  // Threads running the io context. Handlers never block them.
  int threads = 4;
  // Larger bodies are refused with 413 before they are read.
  size_t max_body_bytes = 1 << 20;
  // How long a keep-alive connection may sit between requests.
  absl::Duration idle_timeout = absl::Seconds(60);
  // How long a request's header and body may take to arrive.
  absl::Duration read_timeout = absl::Seconds(30);
  // Origins besides the gateway's own whose pages may make cookie-signed
  // requests (see CheckCookieRequest), e.g. behind a proxy that rewrites Host.
  std::vector<std::string> allowed_origins;
};

// HTTP/1.1 server (Boost.Beast) dispatching through a Router. Each
// connection runs on its own strand; keep-alive between requests. Adds an
// X-Request-Id to every response and logs one line per request (method,
// path, status, ms, request id; never credentials). Routes with Auth::kRequired
// answer 401 themselves when the request carries no credential.
class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                           std::shared_ptr<const Router> router);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& host() const { return host_; }
  int port() const { return port_; }

  // Stops accepting, asks every connection to finish (streams end, idle
  // keep-alive connections close, requests in flight complete), waits up to
  // `grace` for them, then stops the io threads. Idempotent.
  void Stop(absl::Duration grace = absl::Seconds(15));

 private:
  struct Impl;
  HttpServer() = default;
  std::unique_ptr<Impl> impl_;
  std::string host_;
  int port_ = 0;
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_HTTP_SERVER_H_
