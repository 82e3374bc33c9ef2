#include "tests/testing/http_client.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <deque>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace buildd::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Target {
  std::string host;
  std::string port;
  bool https = false;
};

absl::StatusOr<Target> ParseUrl(absl::string_view url) {
  Target target;
  if (absl::StartsWith(url, "https://")) {
    target.https = true;
    url.remove_prefix(8);
  } else if (absl::StartsWith(url, "http://")) {
    url.remove_prefix(7);
  }
  url = url.substr(0, url.find('/'));
  const size_t colon = url.rfind(':');
  if (colon == absl::string_view::npos || colon + 1 == url.size()) {
    return absl::InvalidArgumentError(absl::StrCat("no port in ", url));
  }
  target.host = std::string(url.substr(0, colon));
  target.port = std::string(url.substr(colon + 1));
  return target;
}

// Runs `io` until `*done` or `deadline`. Returns false on the deadline.
bool RunUntil(asio::io_context& io, const bool* done, Clock::time_point deadline) {
  while (!*done) {
    io.restart();
    if (io.run_one_until(deadline) == 0 && !*done && Clock::now() >= deadline) return false;
  }
  return true;
}

// Starts one operation with a handler that keeps its error, and runs `io`
// until nothing is left to do (timeouts of the tcp_stream included).
template <typename Start>
beast::error_code RunToCompletion(asio::io_context& io, Start start) {
  beast::error_code result;
  start([&result](beast::error_code ec, auto&&...) { result = ec; });
  io.restart();
  io.run();
  return result;
}

// A client connection, plain or TLS, run on its owner's io_context.
class ClientStream {
 public:
  explicit ClientStream(asio::io_context& io) : io_(io), tcp_(io) {}

  beast::tcp_stream& tcp() { return tcp_; }

  // Calls `f` with the stream to read and write: TLS when connected so.
  template <typename F>
  void Visit(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(tcp_);
    }
  }

  // Connects, and for an https target verifies the server's certificate
  // and name in the handshake, by `deadline`.
  absl::Status Connect(const Target& target, const TlsClientOptions& options,
                       Clock::time_point deadline) {
    const std::string name = absl::StrCat(target.host, ":", target.port);
    tcp::resolver resolver(io_);
    beast::error_code ec;
    auto endpoints = resolver.resolve(target.host, target.port, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("resolve ", name, ": ", ec.message()));
    tcp_.expires_at(deadline);
    ec = RunToCompletion(io_, [&](auto handler) { tcp_.async_connect(endpoints, handler); });
    if (ec) return absl::UnavailableError(absl::StrCat("connect ", name, ": ", ec.message()));
    if (target.https) {
      context_ = std::make_unique<ssl::context>(ssl::context::tls_client);
      if (options.ca_file.empty()) {
        context_->set_default_verify_paths(ec);
      } else {
        context_->load_verify_file(options.ca_file, ec);
      }
      if (ec) return absl::InvalidArgumentError(absl::StrCat("CA file: ", ec.message()));
      context_->set_verify_mode(ssl::verify_peer);
      tls_.emplace(tcp_, *context_);
      tls_->set_verify_callback(ssl::host_name_verification(target.host));
      asio::ip::make_address(target.host, ec);
      if (ec) SSL_set_tlsext_host_name(tls_->native_handle(), target.host.c_str());
      ec = RunToCompletion(
          io_, [&](auto handler) { tls_->async_handshake(ssl::stream_base::client, handler); });
      if (ec) {
        return absl::UnavailableError(
            absl::StrCat("TLS handshake with ", name, ": ", ec.message()));
      }
    }
    tcp_.expires_never();
    return absl::OkStatus();
  }

  std::string PeerCertificate() {
    if (!tls_) return "";
    X509* cert = SSL_get1_peer_certificate(tls_->native_handle());
    if (cert == nullptr) return "";
    BIO* out = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(out, cert);
    char* data = nullptr;
    const long size = BIO_get_mem_data(out, &data);
    std::string pem(data, static_cast<size_t>(size));
    BIO_free(out);
    X509_free(cert);
    return pem;
  }

  // Ends the TCP connection (no TLS close_notify).
  void Close() {
    beast::error_code ignored;
    tcp_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp_.close();
  }

 private:
  asio::io_context& io_;
  beast::tcp_stream tcp_;
  std::unique_ptr<ssl::context> context_;
  std::optional<beast::ssl_stream<beast::tcp_stream&>> tls_;
};

http::request<http::string_body> MakeRequest(const std::string& method, const std::string& host,
                                             const std::string& path, const Headers& headers,
                                             const std::string& body) {
  http::request<http::string_body> request;
  const http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    request.method_string(method);
  } else {
    request.method(verb);
  }
  request.target(path);
  request.version(11);
  request.set(http::field::host, host);
  request.set(http::field::user_agent, "buildd-test");
  bool chunked = false;
  for (const auto& [name, value] : headers) {
    if (absl::EqualsIgnoreCase(name, "Transfer-Encoding") &&
        absl::EqualsIgnoreCase(value, "chunked")) {
      chunked = true;
      continue;
    }
    request.insert(name, value);
  }
  request.body() = body;
  if (chunked) {
    request.chunked(true);
  } else {
    request.prepare_payload();
  }
  return request;
}

template <class Fields>
Headers CopyHeaders(const Fields& fields) {
  Headers out;
  for (const auto& field : fields) {
    out.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  return out;
}

std::string FindHeader(const Headers& headers, absl::string_view name) {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) return v;
  }
  return "";
}

}  // namespace

std::string HttpResult::Header(absl::string_view name) const { return FindHeader(headers, name); }

// ---------------------------------------------------------------------------

struct HttpConnection::Impl {
  asio::io_context io;
  ClientStream stream{io};
  beast::flat_buffer buffer;
  std::string host;
  bool open = false;
};

HttpConnection::HttpConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpConnection::~HttpConnection() { impl_->stream.Close(); }

bool HttpConnection::open() const { return impl_->open; }

std::string HttpConnection::PeerCertificate() const { return impl_->stream.PeerCertificate(); }

absl::StatusOr<std::unique_ptr<HttpConnection>> HttpConnection::Open(
    const std::string& url_or_host_port, absl::Duration timeout, const TlsClientOptions& tls) {
  absl::StatusOr<Target> target = ParseUrl(url_or_host_port);
  if (!target.ok()) return target.status();
  auto impl = std::make_unique<Impl>();
  impl->host = absl::StrCat(target->host, ":", target->port);
  absl::Status connected =
      impl->stream.Connect(*target, tls, Clock::now() + absl::ToChronoMilliseconds(timeout));
  if (!connected.ok()) return connected;
  impl->open = true;
  return std::unique_ptr<HttpConnection>(new HttpConnection(std::move(impl)));
}

HttpResult HttpConnection::Request(const std::string& method, const std::string& path,
                                   const Headers& headers, const std::string& body,
                                   absl::Duration timeout) {
  HttpResult result;
  Impl& impl = *impl_;
  if (!impl.open) {
    result.error = "connection is closed";
    return result;
  }
  http::request<http::string_body> request = MakeRequest(method, impl.host, path, headers, body);
  impl.stream.tcp().expires_after(absl::ToChronoMilliseconds(timeout));
  const beast::error_code write_error = RunToCompletion(impl.io, [&](auto handler) {
    impl.stream.Visit([&](auto& s) { http::async_write(s, request, handler); });
  });
  // A server refusing a body may answer before reading all of it: read the
  // answer even when the write failed.
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  impl.stream.tcp().expires_after(absl::ToChronoMilliseconds(timeout));
  const beast::error_code read_error = RunToCompletion(impl.io, [&](auto handler) {
    impl.stream.Visit([&](auto& s) { http::async_read(s, impl.buffer, parser, handler); });
  });
  if (read_error) {
    impl.open = false;
    result.error =
        absl::StrCat("read: ", read_error.message(),
                     write_error ? absl::StrCat("; write: ", write_error.message()) : "");
    return result;
  }
  const auto& response = parser.get();
  result.status = response.result_int();
  result.headers = CopyHeaders(response);
  result.body = response.body();
  if (!response.keep_alive()) impl.open = false;
  return result;
}

HttpResult Request(const std::string& method, const std::string& url_or_host_port,
                   const std::string& path, const Headers& headers, const std::string& body,
                   absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<HttpConnection>> connection =
      HttpConnection::Open(url_or_host_port, timeout);
  if (!connection.ok()) {
    HttpResult result;
    result.error = connection.status().ToString();
    return result;
  }
  return (*connection)->Request(method, path, headers, body, timeout);
}

// ---------------------------------------------------------------------------

struct SseStream::Impl {
  asio::io_context io;
  ClientStream stream{io};
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  char chunk[8192];

  int status = 0;
  Headers headers;
  std::string body;  // Only for a non-200 answer.

  bool reading = false;
  bool ended = false;
  bool parse_events = false;
  std::string end_reason;
  std::string text;  // Received, not yet a complete line.
  std::deque<SseItem> items;
  SseItem block;
  bool block_has_message = false;
  bool block_has_data = false;

  void StartRead() {
    reading = true;
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    stream.Visit([this](auto& s) {
      http::async_read_some(s, buffer, parser,
                            [this](beast::error_code ec, std::size_t) { OnRead(ec); });
    });
  }

  void OnRead(beast::error_code ec) {
    reading = false;
    if (ec == http::error::need_buffer) ec = {};
    const size_t n = sizeof chunk - parser.get().body().size;
    text.append(chunk, n);
    if (parse_events) ParseLines();
    if (ec) {
      ended = true;
      end_reason = ec.message();
    } else if (parser.is_done()) {
      ended = true;
      end_reason = "end of response";
    }
  }

  void ParseLines() {
    size_t start = 0;
    while (true) {
      const size_t newline = text.find('\n', start);
      if (newline == std::string::npos) break;
      absl::string_view line(text.data() + start, newline - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      HandleLine(line);
      start = newline + 1;
    }
    text.erase(0, start);
  }

  void HandleLine(absl::string_view line) {
    if (line.empty()) {
      if (block_has_message) {
        block.kind = SseItem::Kind::kEvent;
        items.push_back(block);
      } else if (block.retry_ms >= 0) {
        block.kind = SseItem::Kind::kRetry;
        items.push_back(block);
      }
      block = SseItem();
      block_has_message = false;
      block_has_data = false;
      return;
    }
    if (line[0] == ':') {
      SseItem comment;
      comment.kind = SseItem::Kind::kComment;
      absl::string_view text = line.substr(1);
      if (!text.empty() && text[0] == ' ') text.remove_prefix(1);
      comment.comment = std::string(text);
      items.push_back(std::move(comment));
      return;
    }
    const size_t colon = line.find(':');
    const absl::string_view field = line.substr(0, colon);
    absl::string_view value = colon == absl::string_view::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    if (field == "id") {
      block.id = std::string(value);
      block_has_message = true;
    } else if (field == "event") {
      block.event = std::string(value);
      block_has_message = true;
    } else if (field == "data") {
      if (block_has_data) block.data += '\n';
      absl::StrAppend(&block.data, value);
      block_has_data = true;
      block_has_message = true;
    } else if (field == "retry") {
      int ms = -1;
      if (absl::SimpleAtoi(value, &ms)) block.retry_ms = ms;
    }
  }

  void Close() {
    stream.Close();
    // Let a pending read finish (aborted) while this object is alive.
    io.restart();
    io.run();
    ended = true;
    if (end_reason.empty()) end_reason = "closed";
  }
};

SseStream::SseStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SseStream::~SseStream() { impl_->Close(); }

int SseStream::status() const { return impl_->status; }
std::string SseStream::Header(absl::string_view name) const {
  return FindHeader(impl_->headers, name);
}
const std::string& SseStream::body() const { return impl_->body; }

absl::StatusOr<std::unique_ptr<SseStream>> SseStream::Open(const std::string& url_or_host_port,
                                                           const std::string& path,
                                                           const Headers& headers,
                                                           absl::Duration timeout,
                                                           const TlsClientOptions& tls) {
  return OpenRequest("GET", url_or_host_port, path, headers, "", timeout, tls);
}

absl::StatusOr<std::unique_ptr<SseStream>> SseStream::OpenRequest(
    const std::string& method, const std::string& url_or_host_port, const std::string& path,
    const Headers& headers, const std::string& body, absl::Duration timeout,
    const TlsClientOptions& tls) {
  absl::StatusOr<Target> target = ParseUrl(url_or_host_port);
  if (!target.ok()) return target.status();
  // Declared before the stream: an operation still pending when it returns
  // early completes (aborted) in the stream's destructor and sets them.
  bool done = false;
  beast::error_code ec;
  auto impl = std::make_unique<Impl>();
  std::unique_ptr<SseStream> stream(new SseStream(std::move(impl)));
  Impl& s = *stream->impl_;
  const Clock::time_point deadline = Clock::now() + absl::ToChronoMilliseconds(timeout);
  const std::string host = absl::StrCat(target->host, ":", target->port);
  absl::Status connected = s.stream.Connect(*target, tls, deadline);
  if (!connected.ok()) return connected;

  Headers all = headers;
  all.emplace_back("Accept", "text/event-stream");
  http::request<http::string_body> request = MakeRequest(method, host, path, all, body);
  s.stream.Visit([&](auto& out) {
    http::async_write(out, request, [&](beast::error_code e, std::size_t) {
      ec = e;
      done = true;
    });
  });
  if (!RunUntil(s.io, &done, deadline)) return absl::DeadlineExceededError("write timed out");
  if (ec) return absl::UnavailableError(absl::StrCat("write: ", ec.message()));

  done = false;
  s.stream.Visit([&](auto& in) {
    http::async_read_header(in, s.buffer, s.parser, [&](beast::error_code e, std::size_t) {
      ec = e;
      done = true;
    });
  });
  if (!RunUntil(s.io, &done, deadline)) {
    return absl::DeadlineExceededError("no response head in time");
  }
  if (ec) return absl::UnavailableError(absl::StrCat("read head: ", ec.message()));
  s.status = s.parser.get().result_int();
  s.headers = CopyHeaders(s.parser.get());

  if (s.status != 200) {
    while (!s.ended) {
      if (!s.reading) s.StartRead();
      if (!RunUntil(s.io, &s.ended, deadline)) {
        return absl::DeadlineExceededError("error body not complete in time");
      }
    }
    s.body = std::move(s.text);
    s.text.clear();
    return stream;
  }
  s.parse_events = true;
  return stream;
}

absl::StatusOr<SseItem> SseStream::Next(absl::Duration timeout) {
  Impl& s = *impl_;
  const Clock::time_point deadline = Clock::now() + absl::ToChronoMilliseconds(timeout);
  while (true) {
    if (!s.items.empty()) {
      SseItem item = std::move(s.items.front());
      s.items.pop_front();
      return item;
    }
    if (s.ended) return absl::OutOfRangeError(absl::StrCat("stream ended: ", s.end_reason));
    if (!s.reading) s.StartRead();
    s.io.restart();
    if (s.io.run_one_until(deadline) == 0 && Clock::now() >= deadline && s.items.empty()) {
      return absl::DeadlineExceededError("no event in time");
    }
  }
}

absl::StatusOr<SseItem> SseStream::NextEvent(absl::Duration timeout) {
  const Clock::time_point deadline = Clock::now() + absl::ToChronoMilliseconds(timeout);
  while (true) {
    const auto left = deadline - Clock::now();
    absl::StatusOr<SseItem> item =
        Next(absl::FromChrono(std::chrono::duration_cast<std::chrono::microseconds>(left)));
    if (!item.ok() || item->kind == SseItem::Kind::kEvent) return item;
  }
}

void SseStream::Close() { impl_->Close(); }

}  // namespace buildd::testing
