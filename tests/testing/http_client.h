#ifndef BUILDD_TESTS_TESTING_HTTP_CLIENT_H_
#define BUILDD_TESTS_TESTING_HTTP_CLIENT_H_

// A small synchronous HTTP/1.1 client (Boost.Beast) for tests: one-shot
// requests, keep-alive connections and a Server-Sent Events reader, all with
// timeouts, over plain HTTP or, for "https://" URLs, TLS. Not thread-safe:
// use one object per thread.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace buildd::testing {

using Headers = std::vector<std::pair<std::string, std::string>>;

// For "https://" URLs: the server's certificate must chain to `ca_file` (PEM;
// empty: the system's store) and name the URL's host.
struct TlsClientOptions {
  std::string ca_file;
};

struct HttpResult {
  // 0 when the request failed before a response arrived; see `error`.
  int status = 0;
  std::string error;
  Headers headers;
  std::string body;

  // The first header called `name` (case-insensitive), or "".
  std::string Header(absl::string_view name) const;
};

// One request on a fresh connection. `url_or_host_port` is
// "http://host:port" or "host:port" (plain HTTP; for HTTPS open an
// HttpConnection); `path` includes any query. A
// "Transfer-Encoding: chunked" header sends `body` chunked; otherwise a
// Content-Length is set.
HttpResult Request(const std::string& method, const std::string& url_or_host_port,
                   const std::string& path, const Headers& headers = {},
                   const std::string& body = "", absl::Duration timeout = absl::Seconds(10));

// A keep-alive connection carrying requests one after the other.
class HttpConnection {
 public:
  static absl::StatusOr<std::unique_ptr<HttpConnection>> Open(
      const std::string& url_or_host_port, absl::Duration timeout = absl::Seconds(10),
      const TlsClientOptions& tls = {});
  ~HttpConnection();

  HttpResult Request(const std::string& method, const std::string& path,
                     const Headers& headers = {}, const std::string& body = "",
                     absl::Duration timeout = absl::Seconds(10));
  // False once the server closed the connection or a request failed.
  bool open() const;
  // Over TLS, the certificate the server presented (PEM); else "".
  std::string PeerCertificate() const;

 private:
  struct Impl;
  explicit HttpConnection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One item of an event stream.
struct SseItem {
  enum class Kind {
    kEvent,    // A dispatched message: id / event / data.
    kComment,  // A line starting with ':' (heartbeats).
    kRetry,    // A block holding only `retry:`.
  };
  Kind kind = Kind::kEvent;
  std::string id;
  std::string event;  // "" when the message named none.
  std::string data;   // Data lines joined with '\n'.
  std::string comment;
  int retry_ms = -1;
};

// Reads a text/event-stream response as it arrives.
class SseStream {
 public:
  // Sends `GET path` (plus `headers`) and reads the response head. When the
  // status is not 200 the whole body is read into body().
  static absl::StatusOr<std::unique_ptr<SseStream>> Open(
      const std::string& url_or_host_port, const std::string& path, const Headers& headers = {},
      absl::Duration timeout = absl::Seconds(10), const TlsClientOptions& tls = {});
  ~SseStream();

  // The same for `method` with `body` (POST /execute answers with a stream).
  static absl::StatusOr<std::unique_ptr<SseStream>> OpenRequest(
      const std::string& method, const std::string& url_or_host_port, const std::string& path,
      const Headers& headers, const std::string& body, absl::Duration timeout = absl::Seconds(10),
      const TlsClientOptions& tls = {});

  int status() const;
  std::string Header(absl::string_view name) const;
  const std::string& body() const;

  // The next item. DEADLINE_EXCEEDED when none arrives within `timeout`
  // (the stream stays usable); OUT_OF_RANGE once the server ended it.
  absl::StatusOr<SseItem> Next(absl::Duration timeout);
  // The next kEvent item, skipping comments and retry blocks.
  absl::StatusOr<SseItem> NextEvent(absl::Duration timeout);
  // Closes the connection, as a browser tab going away.
  void Close();

 private:
  struct Impl;
  explicit SseStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_HTTP_CLIENT_H_
