#include "gateway/http_server.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/accept_backoff.h"
#include "common/ids.h"
#include "common/logging.h"
#include "gateway/auth_limiter.h"
#include "gateway/http_errors.h"
#include "gateway/http_stream.h"
#include "gateway/tls_context.h"

namespace buildd::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kHeaderLimit = 64 * 1024;
constexpr auto kWriteTimeout = std::chrono::seconds(30);
// After refusing a body we read and drop what the client still sends, so
// that it reads our 413 instead of a connection reset.
constexpr auto kLingerTime = std::chrono::seconds(5);
constexpr size_t kLingerBytes = 64 << 20;
// Between keep-alive requests, how much of the next request one read takes.
constexpr size_t kFirstReadBytes = 4096;
// A connection over the cap gets its 503 and is closed within this, after
// at most this much of its request was read and dropped.
constexpr auto kRefusalTime = std::chrono::seconds(1);
constexpr size_t kRefusalDrainBytes = 64 * 1024;

struct ServerState {
  explicit ServerState(HttpServerOptions o)
      : options(std::move(o)),
        auth_limiter(options.max_auth_failures, absl::ToChronoNanoseconds(options.auth_failure_window)) {}
  HttpServerOptions options;
  AuthLimiter auth_limiter;
  std::shared_ptr<const Router> router;
  std::shared_ptr<ConnectionTracker> tracker = ConnectionTracker::Create();
  std::atomic<bool> stopping{false};
};

// The whole answer to a connection over the cap, as sent.
const std::string& BusyResponse() {
  static const std::string* const kResponse = [] {
    HttpResponse response = ErrorResponse(503, absl::StatusCode::kUnavailable,
                                          "the gateway is at its connection limit; retry later");
    response.headers.emplace_back("Retry-After", "1");
    return new std::string(SerializeClosingResponse(std::move(response), 11, ""));
  }();
  return *kResponse;
}

// Reads and drops what the client still sends until it closes, the stream's
// deadline passes or `limit` bytes came, then calls `done`; so that a client
// still sending reads the answer it was given instead of a connection reset.
// `self` keeps the owner of `stream` and `buffer` alive.
template <typename Stream, typename Self, typename Done>
void DrainThen(Stream& stream, std::vector<char>& buffer, size_t limit, std::shared_ptr<Self> self,
               Done done, size_t drained = 0) {
  stream.async_read_some(
      asio::buffer(buffer), [&stream, &buffer, limit, self = std::move(self),
                             done = std::move(done), drained](beast::error_code ec, std::size_t n) {
        if (ec || drained + n > limit) return done();
        DrainThen(stream, buffer, limit, std::move(self), std::move(done), drained + n);
      });
}

// A connection over the cap: the 503 at once, without reading the request.
class Refusal : public std::enable_shared_from_this<Refusal> {
 public:
  explicit Refusal(tcp::socket socket) : stream_(std::move(socket)) {}

  void Start() {
    stream_.expires_after(kRefusalTime);
    asio::async_write(stream_, asio::buffer(BusyResponse()),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) return self->stream_.close();
                        beast::error_code ignored;
                        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                        self->buffer_.resize(4096);
                        DrainThen(self->stream_, self->buffer_, kRefusalDrainBytes, self,
                                  [self] { self->stream_.close(); });
                      });
  }

 private:
  beast::tcp_stream stream_;
  std::vector<char> buffer_;
};

bool IsDisconnect(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message ||
         ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::operation_aborted || ec == beast::error::timeout ||
         ec == asio::error::broken_pipe;
}

// One client connection: reads requests one after the other, dispatches
// them, writes the responses. Runs on its own strand; outbound replies are
// posted back onto it.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(HttpStream stream, std::shared_ptr<ServerState> state)
      : token_(state->tracker->Track()), state_(std::move(state)), stream_(std::move(stream)) {}

  void Start() {
    std::weak_ptr<HttpSession> weak = weak_from_this();
    auto executor = stream_.get_executor();
    token_->SetCloser([weak, executor] {
      asio::post(executor, [weak] {
        if (auto self = weak.lock()) self->OnServerStopping();
      });
    });
    asio::dispatch(executor, [self = shared_from_this()] {
      // One deadline from the connection to the first request's complete
      // header, the TLS handshake included.
      self->waiting_ = true;
      self->stream_.expires_after(absl::ToChronoMilliseconds(self->state_->options.header_timeout));
      if (!self->stream_.secure()) return self->ReadRequest();
      self->stream_.async_handshake([self](beast::error_code ec) {
        if (ec) {
          // Plain HTTP on the HTTPS port, a scanner, a client gone or slow.
          Log()->debug("https handshake failed: {}", ec.message());
          return self->Close();
        }
        self->ReadRequest();
      });
    });
  }

 private:
  using Clock = std::chrono::steady_clock;

  void ReadRequest() {
    if (closing_ || state_->stopping) return Close();
    parser_.emplace();
    parser_->body_limit(state_->options.max_body_bytes);
    parser_->header_limit(kHeaderLimit);
    waiting_ = true;
    if (requests_ > 0) {
      if (buffer_.size() == 0) return AwaitNextRequest();
      // Pipelined: the next request is already arriving.
      stream_.expires_after(absl::ToChronoMilliseconds(state_->options.header_timeout));
    }
    ReadHeader();
  }

  // Keep-alive: waits up to idle_timeout for the next request's first bytes;
  // from those its header has header_timeout.
  void AwaitNextRequest() {
    stream_.expires_after(absl::ToChronoMilliseconds(state_->options.idle_timeout));
    stream_.async_read_some(buffer_.prepare(kFirstReadBytes),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->buffer_.commit(n);
                              if (ec) return self->Close();
                              self->stream_.expires_after(
                                  absl::ToChronoMilliseconds(self->state_->options.header_timeout));
                              self->ReadHeader();
                            });
  }

  void ReadHeader() {
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&HttpSession::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, std::size_t) {
    waiting_ = false;
    if (IsDisconnect(ec)) return Close();
    ++requests_;
    started_ = Clock::now();
    request_id_ = RandomHex(8);
    const auto& header = parser_->get();
    version_ = header.version() == 10 ? 10 : 11;
    method_ = std::string(header.method_string());
    const absl::string_view target(header.target().data(), header.target().size());
    path_ = std::string(target.substr(0, target.find('?')));
    if (ec == http::error::body_limit) return RefuseTooLarge();
    if (ec) {
      keep_alive_ = false;
      return Write(ErrorResponse(400, absl::StatusCode::kInvalidArgument,
                                 absl::StrCat("malformed HTTP request: ", ec.message())));
    }
    keep_alive_ = header.keep_alive();
    auto expect = header.find(http::field::expect);
    if (expect != header.end() && beast::iequals(expect->value(), "100-continue")) {
      auto interim =
          std::make_shared<http::response<http::empty_body>>(http::status::continue_, version_);
      stream_.expires_after(kWriteTimeout);
      http::async_write(stream_, *interim,
                        [self = shared_from_this(), interim](beast::error_code ec, std::size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    stream_.expires_after(absl::ToChronoMilliseconds(state_->options.read_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::OnBody, shared_from_this()));
  }

  void OnBody(beast::error_code ec, std::size_t) {
    if (ec == http::error::body_limit) return RefuseTooLarge();
    if (IsDisconnect(ec)) return Close();
    if (ec) {
      keep_alive_ = false;
      return Write(ErrorResponse(400, absl::StatusCode::kInvalidArgument,
                                 absl::StrCat("malformed HTTP request: ", ec.message())));
    }
    Dispatch();
  }

  void Dispatch() {
    http::request<http::string_body> message = parser_->release();
    parser_.reset();
    HttpRequest request;
    request.method = message.method();
    request.version = version_;
    request.secure = stream_.secure();
    request.request_id = request_id_;
    const absl::string_view target(message.target().data(), message.target().size());
    const size_t question = target.find('?');
    request.path = std::string(target.substr(0, question));
    if (question != absl::string_view::npos &&
        !ParseQueryString(target.substr(question + 1), &request.query)) {
      return Write(ErrorResponse(400, absl::StatusCode::kInvalidArgument,
                                 "malformed percent-escape in the query string"));
    }
    request.body = std::move(message.body());
    request.headers = std::move(static_cast<http::fields&>(message));

    Router::Match match = state_->router->Find(request.method, request.path);
    if (match.route == nullptr) {
      if (match.allowed.empty()) {
        return Write(ErrorResponse(404, absl::StatusCode::kNotFound,
                                   absl::StrCat("no such path: ", request.path)));
      }
      std::vector<std::string> allowed;
      for (http::verb verb : match.allowed) allowed.emplace_back(http::to_string(verb));
      HttpResponse response =
          ErrorResponse(405, absl::StatusCode::kUnimplemented,
                        absl::StrCat("method ", method_, " is not allowed on ", request.path,
                                     " (allowed: ", absl::StrJoin(allowed, ", "), ")"));
      response.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
      return Write(std::move(response));
    }
    request.params = std::move(match.params);
    Credential credential = CredentialFromHeaders(request.headers);
    request.api_key = std::move(credential.api_key);
    request.key_from_cookie = credential.from_cookie;
    if (absl::Status csrf = CheckCookieRequest(request, state_->options.allowed_origins);
        !csrf.ok()) {
      return Write(ErrorResponse(403, csrf.code(), std::string(csrf.message())));
    }
    // An address that keeps sending refused credentials waits; the
    // dashboard page and /health stay open to it.
    if (match.route->auth == Auth::kRequired || request.method != http::verb::get) {
      const auto wait = state_->auth_limiter.RetryAfter(peer_);
      if (wait > AuthLimiter::Clock::duration::zero()) {
        const auto seconds = std::chrono::ceil<std::chrono::seconds>(wait).count();
        HttpResponse response = ErrorResponse(
            429, absl::StatusCode::kResourceExhausted,
            absl::StrCat("too many refused credentials from this address; retry in ", seconds, " s"));
        response.headers.emplace_back("Retry-After", absl::StrCat(seconds));
        return Write(std::move(response));
      }
    }
    if (match.route->auth == Auth::kRequired && request.api_key.empty()) {
      HttpResponse response = ErrorResponse(
          401, absl::StatusCode::kUnauthenticated,
          credential.error.empty() ? "missing API key: send \"Authorization: Bearer <key>\""
                                   : credential.error);
      response.headers.emplace_back("WWW-Authenticate", "Bearer");
      return Write(std::move(response));
    }
    // From here on a 401 is a credential the services refused (a sign-in's
    // too), and counts against the address.
    counts_refusals_ = true;
    request.on_refused = [state = state_, peer = peer_] { state->auth_limiter.Failed(peer); };

    if (match.route->stream) {
      handed_off_ = true;
      stream_.expires_never();
      match.route->stream(std::move(request), std::move(stream_), std::move(token_));
      return;
    }

    auto replied = std::make_shared<std::atomic<bool>>(false);
    Reply reply = [self = shared_from_this(), replied](HttpResponse response) {
      if (replied->exchange(true)) return;
      auto executor = self->stream_.get_executor();
      asio::post(executor, [self = std::move(self), response = std::move(response)]() mutable {
        self->Write(std::move(response));
      });
    };
    try {
      match.route->unary(request, reply);
    } catch (const std::exception& e) {
      Log()->error("handler failed request_id={}: {}", request_id_, e.what());
      reply(ErrorResponse(500, absl::StatusCode::kInternal, "internal error"));
    }
  }

  void RefuseTooLarge() {
    keep_alive_ = false;
    linger_ = true;
    Write(ErrorResponse(413, absl::StatusCode::kResourceExhausted,
                        absl::StrCat("the request body is larger than ",
                                     state_->options.max_body_bytes, " bytes")));
  }

  void Write(HttpResponse response) {
    if (response.status == 401 && counts_refusals_) state_->auth_limiter.Failed(peer_);
    counts_refusals_ = false;
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version_);
    res->result(response.status);
    res->set(http::field::server, "buildd-gateway");
    res->set(http::field::content_type, response.content_type);
    res->set("X-Request-Id", request_id_);
    for (auto& [name, value] : response.headers) res->insert(name, value);
    res->body() = std::move(response.body);
    res->keep_alive(keep_alive_ && !closing_ && !state_->stopping);
    res->prepare_payload();
    LogRequest(response.status);
    stream_.expires_after(kWriteTimeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
                        if (!ec && self->linger_) return self->Linger();
                        if (ec || !res->keep_alive()) return self->Close();
                        self->ReadRequest();
                      });
  }

  std::string PeerAddress() {
    beast::error_code ec;
    const tcp::endpoint peer = stream_.tcp().socket().remote_endpoint(ec);
    return ec ? std::string() : peer.address().to_string();
  }

  void LogRequest(unsigned status) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
    Log()->info("http method={} path={} status={} ms={} request_id={}", method_, path_, status, ms,
                request_id_);
  }

  void Linger() {
    beast::error_code ignored;
    stream_.tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);
    drain_buffer_.resize(16 * 1024);
    DrainThen(stream_, drain_buffer_, kLingerBytes, shared_from_this(),
              [self = shared_from_this()] { self->Close(); });
  }

  void Close() {
    if (handed_off_) return;
    stream_.Close();
  }

  // On the strand, when the server stops.
  void OnServerStopping() {
    if (handed_off_) return;
    closing_ = true;
    // Waiting for a request: stop waiting. A request in flight finishes
    // and its response says Connection: close.
    if (waiting_) stream_.cancel();
  }

  // Declared first so that it is released last: once the tracker sees no
  // token, nothing of this session (its socket included) is left to touch
  // the io context.
  std::shared_ptr<ConnectionTracker::Token> token_;
  std::shared_ptr<ServerState> state_;
  HttpStream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::vector<char> drain_buffer_;

  Clock::time_point started_ = Clock::now();
  std::string request_id_;
  std::string method_;
  std::string path_;
  unsigned version_ = 11;
  int64_t requests_ = 0;
  bool keep_alive_ = true;
  // Between requests (or before the first): nothing is in flight.
  bool waiting_ = false;
  bool closing_ = false;
  bool linger_ = false;
  bool handed_off_ = false;
  // The client's address, and whether a 401 to the request being answered
  // counts against it (not the gateway's own "missing API key").
  const std::string peer_ = PeerAddress();
  bool counts_refusals_ = false;
};

}  // namespace

int ConnectionCapForFileLimit(int requested, uint64_t max_open_files) {
  const uint64_t reserve = std::max<uint64_t>(32, max_open_files / 8);
  const uint64_t room = max_open_files > reserve ? max_open_files - reserve : 1;
  return static_cast<int>(std::clamp<uint64_t>(room, 1, std::max(requested, 1)));
}

struct HttpServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{asio::make_strand(io)};
  // On the acceptor's strand, as is everything below that Accept touches.
  asio::steady_timer accept_retry{acceptor.get_executor()};
  AcceptBackoff backoff{"http"};
  LogLimiter refusal_log;
  std::shared_ptr<ServerState> state;
  std::unique_ptr<TlsContextSource> tls;
  int max_connections = 1;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  absl::Mutex stop_mu;
  bool stopped ABSL_GUARDED_BY(stop_mu) = false;

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) {
        accept_retry.expires_after(backoff.Failed(ec));
        accept_retry.async_wait([this](beast::error_code ec) {
          if (!ec && acceptor.is_open()) Accept();
        });
        return;
      }
      backoff.Succeeded();
      OnAccepted(std::move(socket));
      Accept();
    });
  }

  void OnAccepted(tcp::socket socket) {
    const size_t open = state->tracker->open();
    if (open >= static_cast<size_t>(max_connections)) return Refuse(std::move(socket));
    beast::tcp_stream tcp(std::move(socket));
    if (tls == nullptr) {
      std::make_shared<HttpSession>(HttpStream(std::move(tcp)), state)->Start();
    } else {
      std::make_shared<HttpSession>(HttpStream(std::move(tcp), tls->Current()), state)->Start();
    }
  }

  void Refuse(tcp::socket socket) {
    if (const int64_t refused = refusal_log.Count(); refused > 0) {
      Log()->warn(
          "http: at the connection limit ({}): refused {} connection(s) since the last line",
          max_connections, refused);
    }
    if (tls != nullptr) {
      beast::error_code ignored;
      socket.close(ignored);
      return;
    }
    std::make_shared<Refusal>(std::move(socket))->Start();
  }

  void Run() {
    while (true) {
      try {
        io.run();
        return;
      } catch (const std::exception& e) {
        Log()->error("http io thread: {}", e.what());
      }
    }
  }
};

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    HttpServerOptions options, std::shared_ptr<const Router> router) {
  std::unique_ptr<HttpServer> server(new HttpServer);
  server->impl_ = std::make_unique<Impl>();
  Impl& impl = *server->impl_;
  const std::string address = options.listen;
  impl.state = std::make_shared<ServerState>(std::move(options));
  impl.state->router = std::move(router);
  const HttpServerOptions& opts = impl.state->options;

  if (opts.tls.enabled()) {
    if (opts.tls.cert_file.empty() || opts.tls.key_file.empty()) {
      return absl::InvalidArgumentError("HTTPS needs both a certificate file and a key file");
    }
    absl::StatusOr<std::unique_ptr<TlsContextSource>> tls =
        TlsContextSource::Create(opts.tls.cert_file, opts.tls.key_file);
    if (!tls.ok()) return tls.status();
    impl.tls = *std::move(tls);
  }

  impl.max_connections = std::max(1, opts.max_connections);
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY) {
    impl.max_connections = ConnectionCapForFileLimit(impl.max_connections, files.rlim_cur);
    if (impl.max_connections < opts.max_connections) {
      Log()->warn(
          "http: max_connections lowered from {} to {}: the open-file limit (RLIMIT_NOFILE) is {} "
          "and {} descriptors are kept for the rest of the process",
          opts.max_connections, impl.max_connections, files.rlim_cur,
          files.rlim_cur - impl.max_connections);
    }
  }

  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad listen address: ", address));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";

  beast::error_code ec;
  tcp::resolver resolver(impl.io);
  auto endpoints = resolver.resolve(host, std::to_string(port), tcp::resolver::passive, ec);
  if (ec || endpoints.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve listen host ", host));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  impl.acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl.acceptor.bind(endpoint, ec);
  if (!ec) impl.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", ec.message()));
  }
  server->host_ = host;
  server->port_ = impl.acceptor.local_endpoint(ec).port();

  impl.work.emplace(impl.io.get_executor());
  impl.Accept();
  const int threads = std::max(1, impl.state->options.threads);
  for (int i = 0; i < threads; ++i) impl.threads.emplace_back([&impl] { impl.Run(); });
  return server;
}

void HttpServer::Stop(absl::Duration grace) {
  if (!impl_) return;
  {
    absl::MutexLock lock(&impl_->stop_mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  Impl& impl = *impl_;
  impl.state->stopping = true;
  asio::post(impl.acceptor.get_executor(), [&impl] {
    beast::error_code ignored;
    impl.acceptor.close(ignored);
    impl.accept_retry.cancel();
  });
  impl.state->tracker->CloseAll();
  if (!impl.state->tracker->WaitUntilIdle(grace)) {
    Log()->warn("http: {} connection(s) still open after {}; stopping anyway",
                impl.state->tracker->open(), absl::FormatDuration(grace));
  }
  impl.work.reset();
  impl.io.stop();
  for (std::thread& thread : impl.threads) thread.join();
  impl.threads.clear();
}

const char* HttpServer::scheme() const { return impl_->tls != nullptr ? "https" : "http"; }


HttpServer::~HttpServer() { Stop(); }

}  // namespace buildd::gateway
