#include "tests/testing/http_client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace buildd::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct HostPort {
  std::string host;
  std::string port;
};

absl::StatusOr<HostPort> ParseHostPort(absl::string_view url) {
  if (absl::StartsWith(url, "http://")) url.remove_prefix(7);
  url = url.substr(0, url.find('/'));
  const size_t colon = url.rfind(':');
  if (colon == absl::string_view::npos || colon + 1 == url.size()) {
    return absl::InvalidArgumentError(absl::StrCat("no port in ", url));
  }
  return HostPort{std::string(url.substr(0, colon)), std::string(url.substr(colon + 1))};
}

// Runs `io` until `*done` or `deadline`. Returns false on the deadline.
bool RunUntil(asio::io_context& io, const bool* done, Clock::time_point deadline) {
  while (!*done) {
    io.restart();
    if (io.run_one_until(deadline) == 0 && !*done && Clock::now() >= deadline) return false;
  }
  return true;
}

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
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  std::string host;
  bool open = false;

  // Runs one operation of `stream` to completion (its timeout included).
  template <typename Start>
  beast::error_code Run(Start start) {
    beast::error_code result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io.restart();
    io.run();
    return result;
  }
};

HttpConnection::HttpConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpConnection::~HttpConnection() {
  beast::error_code ignored;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->stream.close();
}

bool HttpConnection::open() const { return impl_->open; }

absl::StatusOr<std::unique_ptr<HttpConnection>> HttpConnection::Open(
    const std::string& url_or_host_port, absl::Duration timeout) {
  absl::StatusOr<HostPort> target = ParseHostPort(url_or_host_port);
  if (!target.ok()) return target.status();
  auto impl = std::make_unique<Impl>();
  impl->host = absl::StrCat(target->host, ":", target->port);
  tcp::resolver resolver(impl->io);
  beast::error_code ec;
  auto endpoints = resolver.resolve(target->host, target->port, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("resolve ", impl->host, ": ", ec.message()));
  impl->stream.expires_after(absl::ToChronoMilliseconds(timeout));
  ec = impl->Run([&](auto handler) { impl->stream.async_connect(endpoints, handler); });
  if (ec) return absl::UnavailableError(absl::StrCat("connect ", impl->host, ": ", ec.message()));
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
  impl.stream.expires_after(absl::ToChronoMilliseconds(timeout));
  const beast::error_code write_error =
      impl.Run([&](auto handler) { http::async_write(impl.stream, request, handler); });
  // A server refusing a body may answer before reading all of it: read the
  // answer even when the write failed.
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  impl.stream.expires_after(absl::ToChronoMilliseconds(timeout));
  const beast::error_code read_error =
      impl.Run([&](auto handler) { http::async_read(impl.stream, impl.buffer, parser, handler); });
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
  tcp::socket socket{io};
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
    http::async_read_some(socket, buffer, parser, [this](beast::error_code ec, std::size_t) {
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
    });
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
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
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
                                                           absl::Duration timeout) {
  absl::StatusOr<HostPort> target = ParseHostPort(url_or_host_port);
  if (!target.ok()) return target.status();
  auto impl = std::make_unique<Impl>();
  std::unique_ptr<SseStream> stream(new SseStream(std::move(impl)));
  Impl& s = *stream->impl_;
  const Clock::time_point deadline = Clock::now() + absl::ToChronoMilliseconds(timeout);
  const std::string host = absl::StrCat(target->host, ":", target->port);

  tcp::resolver resolver(s.io);
  beast::error_code ec;
  auto endpoints = resolver.resolve(target->host, target->port, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", ec.message()));

  bool done = false;
  asio::async_connect(s.socket, endpoints, [&](beast::error_code e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  if (!RunUntil(s.io, &done, deadline)) return absl::DeadlineExceededError("connect timed out");
  if (ec) return absl::UnavailableError(absl::StrCat("connect ", host, ": ", ec.message()));

  Headers all = headers;
  all.emplace_back("Accept", "text/event-stream");
  http::request<http::string_body> request = MakeRequest("GET", host, path, all, "");
  done = false;
  http::async_write(s.socket, request, [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!RunUntil(s.io, &done, deadline)) return absl::DeadlineExceededError("write timed out");
  if (ec) return absl::UnavailableError(absl::StrCat("write: ", ec.message()));

  done = false;
  http::async_read_header(s.socket, s.buffer, s.parser, [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
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
