// The gateway's request targets: Router::Find over the gateway's own route
// table (BuildRouter) for each method, the query string parser with the
// query parameters the list routes and GET /api/events take, and the
// credential from the Authorization and Cookie headers.
//
// Besides not crashing: a match names a route of that method with every
// parameter its pattern captures, and no allowed method when it matched;
// a trailing '/' changes nothing; any text, percent-encoded into a path
// segment or a query parameter, decodes to itself, and bytes that are not
// UTF-8 are refused; a query that parses fills messages the services can
// read (or is refused with a JSON error); a credential taken is a
// well-formed key.

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "buildd/v1/accounts.pb.h"
#include "buildd/v1/broker.pb.h"
#include "common/status.h"
#include "gateway/http_errors.h"
#include "gateway/http_message.h"
#include "gateway/json_codec.h"
#include "gateway/rest_api.h"
#include "gateway/router.h"
#include "gateway/sse.h"
#include "tests/fuzz/fuzz_check.h"

namespace buildd::gateway {
namespace {

namespace http = boost::beast::http;
namespace pb = ::buildd::v1;
using buildd::fuzz::Printable;

constexpr http::verb kMethods[] = {http::verb::get, http::verb::post, http::verb::delete_,
                                   http::verb::put};

std::string PercentEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

void CheckMatch(const Router& router, http::verb method, const std::string& path) {
  const Router::Match match = router.Find(method, path);
  if (match.route != nullptr) {
    BUILDD_FUZZ_CHECK(match.route->method == method, Printable(path));
    BUILDD_FUZZ_CHECK(match.allowed.empty(), Printable(path));
    std::set<std::string> names;
    for (absl::string_view segment : absl::StrSplit(match.route->pattern, '/')) {
      if (absl::StartsWith(segment, ":")) names.insert(std::string(segment.substr(1)));
    }
    BUILDD_FUZZ_CHECK(match.params.size() == names.size(), Printable(path));
    for (const auto& [name, value] : match.params) {
      BUILDD_FUZZ_CHECK(names.count(name) == 1, name, " in ", Printable(path));
      BUILDD_FUZZ_CHECK(!value.empty(), "empty ", name, " in ", Printable(path));
    }
  } else {
    for (http::verb allowed : match.allowed) {
      BUILDD_FUZZ_CHECK(allowed != method, Printable(path));
    }
  }
  if (!path.empty() && path.back() != '/') {
    const Router::Match slash = router.Find(method, path + "/");
    BUILDD_FUZZ_CHECK(slash.route == match.route && slash.params == match.params &&
                          slash.allowed == match.allowed,
                      "a trailing '/' changes the match of ", Printable(path));
  }
}

// A router of the shapes of the gateway's patterns.
const Router& Shapes() {
  static const Router* router = [] {
    auto* r = new Router;
    auto ignore = [](const HttpRequest&, Reply) {};
    r->Get("/api/tasks/:id", ignore);
    r->Post("/api/workers/:id/input", ignore);
    r->Delete("/api/accounts/:id/keys/:keyId", ignore);
    return r;
  }();
  return *router;
}

void CheckParamsDecode(const std::string& bytes) {
  if (bytes.empty()) return;
  const std::string encoded = PercentEncode(bytes);
  std::string decoded;
  if (!buildd::fuzz::IsUtf8(bytes)) {
    // Not text: refused wherever it comes.
    BUILDD_FUZZ_CHECK(!PercentDecode(encoded, true, &decoded), Printable(bytes));
    BUILDD_FUZZ_CHECK(Shapes().Find(http::verb::get, "/api/tasks/" + encoded).route == nullptr,
                      Printable(bytes));
    QueryParams query;
    BUILDD_FUZZ_CHECK(!ParseQueryString("a=" + encoded, &query), Printable(bytes));
    return;
  }
  BUILDD_FUZZ_CHECK(PercentDecode(encoded, true, &decoded) && decoded == bytes, Printable(bytes));

  Router::Match match = Shapes().Find(http::verb::get, "/api/tasks/" + encoded);
  BUILDD_FUZZ_CHECK(match.route != nullptr && match.params["id"] == bytes, Printable(bytes));
  match = Shapes().Find(http::verb::post, "/api/workers/" + encoded + "/input/");
  BUILDD_FUZZ_CHECK(match.route != nullptr && match.params["id"] == bytes, Printable(bytes));
  const std::string other = bytes + "x";
  match = Shapes().Find(http::verb::delete_,
                        "/api/accounts/" + encoded + "/keys/" + PercentEncode(other));
  BUILDD_FUZZ_CHECK(
      match.route != nullptr && match.params["id"] == bytes && match.params["keyId"] == other,
      Printable(bytes));

  QueryParams query;
  BUILDD_FUZZ_CHECK(ParseQueryString("a=" + encoded + "&&" + encoded + "=b&" + encoded, &query),
                    Printable(bytes));
  const QueryParams want = {{"a", bytes}, {bytes, "b"}, {bytes, ""}};
  BUILDD_FUZZ_CHECK(query == want, Printable(bytes));
}

// What the services receive must parse on their side: proto3 strings are
// UTF-8.
void CheckReadable(const google::protobuf::Message& message, const std::string& query) {
  std::unique_ptr<google::protobuf::Message> again(message.New());
  BUILDD_FUZZ_CHECK(again->ParseFromString(message.SerializeAsString()),
                    message.GetDescriptor()->name(), " from ", Printable(query),
                    " cannot be read by the service");
}

void CheckRefusal(const std::string& message, const std::string& query) {
  const HttpResponse response = ErrorResponse(absl::InvalidArgumentError(message));
  google::protobuf::Struct parsed;
  BUILDD_FUZZ_CHECK(google::protobuf::util::JsonStringToMessage(response.body, &parsed).ok(),
                    "the error body for ", Printable(query),
                    " is not JSON: ", Printable(response.body));
}

// Adds the message of a refusal to `refusals`, whose error bodies are
// checked once each (most queries are refused alike by every message).
template <typename T>
void CheckQueryMessage(const absl::StatusOr<T>& message, const std::string& query,
                       std::set<std::string>* refusals) {
  if (message.ok()) {
    CheckReadable(*message, query);
    return;
  }
  BUILDD_FUZZ_CHECK(message.status().code() == absl::StatusCode::kInvalidArgument,
                    message.status().ToString());
  refusals->emplace(message.status().message());
}

template <typename T>
absl::StatusOr<T> FromQuery(const QueryParams& params) {
  T message;
  BUILDD_RETURN_IF_ERROR(QueryToMessage(params, &message));
  return message;
}

void CheckQuery(const std::string& query) {
  HttpRequest request;
  if (!ParseQueryString(query, &request.query)) return;
  std::set<std::string> refusals;
  CheckQueryMessage(FromQuery<pb::ListAccountsRequest>(request.query), query, &refusals);
  CheckQueryMessage(FromQuery<pb::ListWorkspacesRequest>(request.query), query, &refusals);
  CheckQueryMessage(FromQuery<pb::ListTasksRequest>(request.query), query, &refusals);
  CheckQueryMessage(FromQuery<pb::ListWorkersRequest>(request.query), query, &refusals);
  CheckQueryMessage(SubscribeRequestFromHttp(request), query, &refusals);
  for (const std::string& refusal : refusals) CheckRefusal(refusal, query);
}

void CheckCredential(const std::string& value) {
  http::fields bearer;
  bearer.set(http::field::authorization, "Bearer " + value);
  http::fields cookie;
  cookie.set(http::field::cookie, value);
  for (const http::fields* headers : {&bearer, &cookie}) {
    const Credential credential = CredentialFromHeaders(*headers);
    BUILDD_FUZZ_CHECK(credential.api_key.empty() || IsWellFormedKey(credential.api_key),
                      Printable(credential.api_key));
    BUILDD_FUZZ_CHECK(credential.api_key.empty() || credential.error.empty(), Printable(value));
  }
}

}  // namespace
}  // namespace buildd::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = buildd::gateway;
  // Handlers are never called here: the routes need no clients.
  static const std::shared_ptr<gw::Router> router = gw::BuildRouter(nullptr, nullptr, {});
  const std::string target(reinterpret_cast<const char*>(data), size);
  const size_t question = target.find('?');
  const std::string path = target.substr(0, question);
  for (auto method : gw::kMethods) gw::CheckMatch(*router, method, path);
  if (question != std::string::npos) gw::CheckQuery(target.substr(question + 1));
  gw::CheckParamsDecode(target);
  gw::CheckCredential(target);
  return 0;
}
