#include "tests/testing/fake_github.h"

#include <sodium.h>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace buildd::testing {

std::string GitHubSignature(const std::string& body, const std::string& secret) {
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  crypto_auth_hmacsha256_final(&state, mac);
  char hex[sizeof mac * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
  return absl::StrCat("sha256=", hex);
}
namespace {

HttpAnswer Error(int status, const std::string& message) {
  google::protobuf::Struct body;
  (*body.mutable_fields())["message"].set_string_value(message);
  (*body.mutable_fields())["documentation_url"].set_string_value("https://docs.github.com/rest");
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(body, &json);
  return HttpAnswer{status, {}, json};
}

bool IsString(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it != s.fields().end() && it->second.kind_case() == google::protobuf::Value::kStringValue;
}

bool Has(const google::protobuf::Struct& s, const std::string& key) {
  return s.fields().count(key) > 0;
}

}  // namespace

FakeGitHub::FakeGitHub()
    : server_(std::make_unique<LoopbackHttpServer>(
          [this](const HttpExchange& exchange) { return Handle(exchange); })) {}

void FakeGitHub::AddRepo(const std::string& repo, const std::string& token) {
  absl::MutexLock lock(&mu_);
  tokens_[repo] = token;
}

void FakeGitHub::FailNext(const std::string& suffix, int status, int times) {
  absl::MutexLock lock(&mu_);
  std::deque<int> statuses(static_cast<size_t>(times), status);
  failures_.emplace_back(suffix, std::move(statuses));
}

std::vector<FakeGitHub::Call> FakeGitHub::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

std::vector<FakeGitHub::Call> FakeGitHub::CallsTo(const std::string& suffix) const {
  std::vector<Call> out;
  for (Call& c : calls()) {
    if (absl::EndsWith(c.path, suffix)) out.push_back(std::move(c));
  }
  return out;
}

bool FakeGitHub::WaitForCalls(const std::string& suffix, size_t n, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  const auto enough = [&] {
    size_t seen = 0;
    for (const Call& c : calls_) seen += absl::EndsWith(c.path, suffix) ? 1 : 0;
    return seen >= n;
  };
  absl::MutexLock lock(&mu_);
  while (!enough()) {
    if (absl::Now() >= deadline) return false;
    mu_.AwaitWithDeadline(absl::Condition(&enough), deadline);
  }
  return true;
}

HttpAnswer FakeGitHub::Handle(const HttpExchange& exchange) {
  Call call;
  call.method = exchange.method;
  call.path = exchange.path;
  call.headers = exchange.headers;
  call.body = exchange.body;
  absl::MutexLock lock(&mu_);
  HttpAnswer answer = Answer(exchange, call);
  call.status = answer.status;
  calls_.push_back(std::move(call));
  return answer;
}

HttpAnswer FakeGitHub::Answer(const HttpExchange& exchange, Call& call) {
  // What GitHub checks of every request.
  if (exchange.Header("user-agent").empty()) {
    return Error(403, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header");
  }
  const std::string version = exchange.Header("x-github-api-version");
  if (!version.empty() && version != "2022-11-28") {
    return Error(400, absl::StrCat("API version ", version, " is not supported."));
  }
  if (exchange.Header("accept") != "application/vnd.github+json") {
    return Error(415, "Unsupported 'Accept' header: expected application/vnd.github+json");
  }
  // /repos/{owner}/{repo}/{what}
  std::vector<std::string> parts = absl::StrSplit(exchange.path, '/');
  if (parts.size() != 5 || !parts[0].empty() || parts[1] != "repos") return Error(404, "Not Found");
  const std::string repo = absl::StrCat(parts[2], "/", parts[3]);
  const std::string& what = parts[4];
  auto known = tokens_.find(repo);
  const std::string auth = exchange.Header("authorization");
  if (!absl::StartsWith(auth, "Bearer ") && !absl::StartsWith(auth, "token ")) {
    // Anonymous callers see no private repository.
    return Error(known == tokens_.end() ? 404 : 401, known == tokens_.end() ? "Not Found" : "Requires authentication");
  }
  const std::string token = auth.substr(auth.find(' ') + 1);
  if (known == tokens_.end()) return Error(404, "Not Found");
  if (token != known->second) return Error(401, "Bad credentials");
  if (exchange.method != "POST") return Error(404, "Not Found");
  for (auto& [suffix, statuses] : failures_) {
    if (!statuses.empty() && absl::EndsWith(exchange.path, suffix)) {
      const int status = statuses.front();
      statuses.pop_front();
      return Error(status, status >= 500 ? "Server Error" : "Failed on purpose");
    }
  }
  if (!google::protobuf::util::JsonStringToMessage(exchange.body, &call.json).ok()) {
    return Error(400, "Problems parsing JSON");
  }
  const google::protobuf::Struct& body = call.json;
  if (what == "dispatches") {
    // https://docs.github.com/rest/repos/repos#create-a-repository-dispatch-event
    if (!IsString(body, "event_type") || body.fields().at("event_type").string_value().empty() ||
        body.fields().at("event_type").string_value().size() > 100) {
      return Error(422, "Invalid request.\n\n\"event_type\" wasn't supplied.");
    }
    if (Has(body, "client_payload") &&
        (body.fields().at("client_payload").kind_case() != google::protobuf::Value::kStructValue ||
         body.fields().at("client_payload").struct_value().fields_size() > 10)) {
      return Error(422, "Invalid request.\n\nFor 'properties/client_payload', it is not an object with at most 10 properties.");
    }
    return HttpAnswer{204, {}, ""};
  }
  if (what == "pulls") {
    // https://docs.github.com/rest/pulls/pulls#create-a-pull-request
    for (const char* field : {"head", "base"}) {
      if (!IsString(body, field)) return Error(422, absl::StrCat("Invalid request.\n\n\"", field, "\" wasn't supplied."));
    }
    if (!IsString(body, "title") && !Has(body, "issue")) {
      return Error(422, "Invalid request.\n\n\"title\" wasn't supplied.");
    }
    if (Has(body, "body") && !IsString(body, "body")) return Error(422, "Invalid request.\n\n\"body\" is not a string.");
    if (Has(body, "draft") &&
        body.fields().at("draft").kind_case() != google::protobuf::Value::kBoolValue) {
      return Error(422, "Invalid request.\n\n\"draft\" is not a boolean.");
    }
    const int number = next_pull_++;
    google::protobuf::Struct pull;
    auto& f = *pull.mutable_fields();
    f["number"].set_number_value(number);
    f["html_url"].set_string_value(absl::StrCat("https://github.com/", repo, "/pull/", number));
    f["url"].set_string_value(absl::StrCat(api_url(), "/repos/", repo, "/pulls/", number));
    f["state"].set_string_value("open");
    f["title"] = body.fields().at("title");
    f["draft"].set_bool_value(Has(body, "draft") && body.fields().at("draft").bool_value());
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(pull, &json);
    return HttpAnswer{201, {}, json};
  }
  return Error(404, "Not Found");
}

}  // namespace buildd::testing
