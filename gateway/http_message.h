#ifndef BUILDD_GATEWAY_HTTP_MESSAGE_H_
#define BUILDD_GATEWAY_HTTP_MESSAGE_H_

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace buildd::gateway {

// Decoded query parameters, in request order.
using QueryParams = std::vector<std::pair<std::string, std::string>>;

// The name of the session cookie the dashboard signs in with.
inline constexpr char kSessionCookie[] = "buildd_session";

// One HTTP request as handlers see it: the body is complete and the
// credential already extracted.
struct HttpRequest {
  boost::beast::http::verb method = boost::beast::http::verb::unknown;
  std::string path;  // Without the query string, not decoded.
  QueryParams query;
  std::map<std::string, std::string> params;  // Path parameters, decoded.
  boost::beast::http::fields headers;
  std::string body;
  // Random; echoed as X-Request-Id, logged and forwarded as x-request-id.
  std::string request_id;
  // From `Authorization: Bearer <key>`, else the session cookie; "" if neither.
  std::string api_key;
  bool key_from_cookie = false;
  // It came over HTTPS.
  bool secure = false;
  // For handlers that answer by themselves (streams): call on answering 401,
  // so that the client's address counts the refused credential.
  std::function<void()> on_refused;
  unsigned version = 11;

  // The last value of query parameter `name`, or "" when absent.
  std::string Query(absl::string_view name) const;
  // The path parameter `name`, or "".
  std::string Param(const std::string& name) const;
  std::string Header(boost::beast::http::field field) const;
  std::string Header(absl::string_view name) const;
};

// A complete response to an ordinary (non-streaming) request.
struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

HttpResponse JsonResponse(unsigned status, std::string body);

// `response` as the bytes of a whole HTTP/1.x message that closes the
// connection, for answers written in one piece (a refusal, a stream's
// error). `request_id` "" sends no X-Request-Id.
std::string SerializeClosingResponse(HttpResponse response, unsigned version,
                                     const std::string& request_id);

// Percent-decoding; with `plus_is_space` ('+' → ' ') for query strings.
// Returns false on a malformed escape, and when the result is not UTF-8:
// what is decoded goes into protobuf string fields, which must be.
bool PercentDecode(absl::string_view in, bool plus_is_space, std::string* out);

// Splits "a=1&b=two" into decoded pairs. Returns false when a part does not
// decode (see PercentDecode).
bool ParseQueryString(absl::string_view query, QueryParams* out);

// The value of cookie `name` in a Cookie header, or "".
std::string CookieValue(absl::string_view cookie_header, absl::string_view name);

// Where the credential of a request comes from.
struct Credential {
  std::string api_key;  // "" when none was given or it was malformed.
  // Set when an Authorization header was present but is not `Bearer <key>`.
  std::string error;
  // The key came from the session cookie (which a browser sends by itself).
  bool from_cookie = false;
};

// `Authorization: Bearer <key>` wins; without that header, the session cookie.
// A key must be printable ASCII without spaces (it travels as gRPC metadata).
Credential CredentialFromHeaders(const boost::beast::http::fields& headers);

// True for a string usable as an API key in metadata and in a cookie.
bool IsWellFormedKey(absl::string_view key);

// A browser sends the session cookie with requests that other pages make
// (another port of the same host is the same site), so a request that
// changes something and is signed in by cookie must come from the
// gateway's own origin (its Origin header names the Host it was sent to, or
// one of `allowed_origins`) and carry a JSON body: PermissionDenied
// otherwise. Requests with an Authorization header and safe methods pass.
absl::Status CheckCookieRequest(const HttpRequest& request,
                                const std::vector<std::string>& allowed_origins);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_HTTP_MESSAGE_H_
