#include "gateway/http_message.h"

#include <google/protobuf/stubs/common.h>

#include <algorithm>
#include <sstream>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace buildd::gateway {

namespace http = boost::beast::http;

std::string HttpRequest::Query(absl::string_view name) const {
  std::string value;
  for (const auto& [k, v] : query) {
    if (k == name) value = v;
  }
  return value;
}

std::string HttpRequest::Param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? "" : it->second;
}

std::string HttpRequest::Header(http::field field) const {
  auto it = headers.find(field);
  return it == headers.end() ? "" : std::string(it->value());
}

std::string HttpRequest::Header(absl::string_view name) const {
  auto it = headers.find(boost::beast::string_view(name.data(), name.size()));
  return it == headers.end() ? "" : std::string(it->value());
}

HttpResponse JsonResponse(unsigned status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool PercentDecode(absl::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return google::protobuf::internal::IsStructurallyValidUTF8(out->data(),
                                                             static_cast<int>(out->size()));
}

bool ParseQueryString(absl::string_view query, QueryParams* out) {
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = part.find('=');
    std::string key, value;
    if (!PercentDecode(part.substr(0, eq), true, &key)) return false;
    if (eq != absl::string_view::npos && !PercentDecode(part.substr(eq + 1), true, &value)) {
      return false;
    }
    out->emplace_back(std::move(key), std::move(value));
  }
  return true;
}

std::string CookieValue(absl::string_view cookie_header, absl::string_view name) {
  for (absl::string_view part : absl::StrSplit(cookie_header, ';')) {
    part = absl::StripAsciiWhitespace(part);
    const size_t eq = part.find('=');
    if (eq == absl::string_view::npos) continue;
    if (absl::StripAsciiWhitespace(part.substr(0, eq)) != name) continue;
    absl::string_view value = absl::StripAsciiWhitespace(part.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return std::string(value);
  }
  return "";
}

bool IsWellFormedKey(absl::string_view key) {
  if (key.empty() || key.size() > 512) return false;
  for (char c : key) {
    // Printable ASCII without space, quote, comma, semicolon or backslash:
    // valid in gRPC metadata and as a cookie value.
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\') return false;
  }
  return true;
}

Credential CredentialFromHeaders(const http::fields& headers) {
  Credential credential;
  auto auth = headers.find(http::field::authorization);
  if (auth != headers.end()) {
    absl::string_view value =
        absl::StripAsciiWhitespace(absl::string_view(auth->value().data(), auth->value().size()));
    if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
      credential.error = "the Authorization header must be \"Bearer <key>\"";
      return credential;
    }
    absl::string_view key = absl::StripAsciiWhitespace(value.substr(7));
    if (!IsWellFormedKey(key)) {
      credential.error = "malformed API key in the Authorization header";
      return credential;
    }
    credential.api_key = std::string(key);
    return credential;
  }
  auto [begin, end] = headers.equal_range(http::field::cookie);
  for (auto it = begin; it != end; ++it) {
    std::string key =
        CookieValue(absl::string_view(it->value().data(), it->value().size()), kSessionCookie);
    if (key.empty()) continue;
    if (!IsWellFormedKey(key)) {
      credential.error = "malformed API key in the session cookie";
      return credential;
    }
    credential.api_key = std::move(key);
    credential.from_cookie = true;
    return credential;
  }
  return credential;
}

absl::Status CheckCookieRequest(const HttpRequest& request,
                                const std::vector<std::string>& allowed_origins) {
  if (!request.key_from_cookie) return absl::OkStatus();
  if (request.method == http::verb::get || request.method == http::verb::head ||
      request.method == http::verb::options) {
    return absl::OkStatus();
  }
  const std::string origin = request.Header(http::field::origin);
  const std::string host = request.Header(http::field::host);
  const bool own = !host.empty() && (origin == "http://" + host || origin == "https://" + host);
  if (!own && std::find(allowed_origins.begin(), allowed_origins.end(), origin) == allowed_origins.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "a request signed in by the session cookie must come from the dashboard's own origin, not ",
        origin.empty() ? "one without an Origin header" : origin,
        " (other clients send Authorization: Bearer <key>)"));
  }
  const std::string type = absl::AsciiStrToLower(request.Header(http::field::content_type));
  if (!request.body.empty() && !absl::StartsWith(type, "application/json")) {
    return absl::PermissionDeniedError(
        "a request signed in by the session cookie must send its body as application/json");
  }
  return absl::OkStatus();
}

std::string SerializeClosingResponse(HttpResponse response, unsigned version,
                                     const std::string& request_id) {
  http::response<http::string_body> res{static_cast<http::status>(response.status), version};
  res.set(http::field::server, "buildd-gateway");
  res.set(http::field::content_type, response.content_type);
  if (!request_id.empty()) res.set("X-Request-Id", request_id);
  for (auto& [name, value] : response.headers) res.insert(name, value);
  res.body() = std::move(response.body);
  res.keep_alive(false);
  res.prepare_payload();
  std::ostringstream out;
  out << res;
  return out.str();
}

}  // namespace buildd::gateway
