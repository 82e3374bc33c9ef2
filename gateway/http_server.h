#ifndef BUILDD_GATEWAY_HTTP_SERVER_H_
#define BUILDD_GATEWAY_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/router.h"

namespace buildd::gateway {

// HTTPS: PEM files of the certificate chain (leaf first) and its key.
struct TlsFiles {
  std::string cert_file;
  std::string key_file;
  // Either is set: the server speaks HTTPS only (then both must be).
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

struct HttpServerOptions {
  // "host:port"; port 0 picks a free one (see port()).
  std::string listen = "127.0.0.1:8080";
  // Threads running the io context. Handlers never block them.
  int threads = 4;
  // Larger bodies are refused with 413 before they are read.
  size_t max_body_bytes = 1 << 20;
  // Open connections at most (event streams included); see HttpServer.
  // Lowered at start to what the open-file limit leaves room for.
  int max_connections = 4096;
  // How long a request header may take, whole, however slowly it arrives:
  // from the connection (the TLS handshake included) for the first request,
  // from its first byte for later ones.
  absl::Duration header_timeout = absl::Seconds(10);
  // How long a keep-alive connection may sit between requests.
  absl::Duration idle_timeout = absl::Seconds(60);
  // How long a request's body may take to arrive after its header.
  absl::Duration read_timeout = absl::Seconds(30);
  // Origins besides the gateway's own whose pages may make cookie-signed
  // requests (see CheckCookieRequest), e.g. behind a proxy that rewrites Host.
  std::vector<std::string> allowed_origins;
  // A client address whose credentials are refused (401) this many times
  // within the window gets 429 for the window, without the services being
  // asked (see AuthLimiter).
  int max_auth_failures = 20;
  absl::Duration auth_failure_window = absl::Seconds(10);
  // Set: HTTPS only, the certificate reloaded when its files change
  // (TlsContextSource). Empty: plain HTTP.
  TlsFiles tls;
};

// The connection cap for `requested` under an open-file limit of
// `max_open_files` (RLIMIT_NOFILE): the cap keeps max(32, limit / 8)
// descriptors for the rest of the process (gRPC channels, the answers to
// connections over the cap, logs). At least 1.
int ConnectionCapForFileLimit(int requested, uint64_t max_open_files);

// HTTP/1.1 server (Boost.Beast) dispatching through a Router, over plain TCP
// or, with options.tls, TLS only. Each connection runs on its own strand;
// keep-alive between requests. Adds an X-Request-Id to every response and
// logs one line per request (method, path, status, ms, request id; never
// credentials). Routes with Auth::kRequired answer 401 themselves when the
// request carries no credential.
//
// Under load: a connection beyond max_connections is accepted and answered
// at once with a 503 (Connection: close, Retry-After: 1) without reading its
// request, so that a client learns the server is full instead of waiting in
// the backlog; over TLS it is closed without a word (a handshake per refusal
// would cost what the cap saves). Refusals are logged at most once a second.
// A failed accept (out of file descriptors) is retried after a backoff
// (AcceptBackoff), never in a loop. Slow and idle clients are closed at
// header_timeout and idle_timeout.
class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                           std::shared_ptr<const Router> router);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& host() const { return host_; }
  int port() const { return port_; }
  // "https" with TLS, else "http".
  const char* scheme() const;

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
