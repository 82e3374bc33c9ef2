#include "services/broker/github_client.h"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace buildd::broker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr char kApiVersion[] = "2022-11-28";
// GitHub's answers to these calls are a few KiB.
constexpr uint64_t kMaxReplyBytes = 1 << 20;

std::string ToJson(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

google::protobuf::Value Text(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  return v;
}

// GitHub's "message" of an error body, cut short; "" when there is none.
std::string MessageOf(const std::string& body) {
  google::protobuf::Struct json;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(body, &json, options).ok()) return "";
  auto it = json.fields().find("message");
  if (it == json.fields().end()) return "";
  std::string message = it->second.string_value().substr(0, 300);
  for (char& c : message) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return message;
}

// An exchange on `stream` (a tcp_stream, or TLS over one) with its own
// deadline: connect, (handshake), write, read. Runs the io_context to the
// end; `done` gets the first error, if any.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  using Request = http::request<http::string_body>;
  using Response = http::response<http::string_body>;

  Exchange(asio::io_context& io, ssl::context* tls, std::string host, Request request,
           std::chrono::milliseconds timeout)
      : resolver_(io), host_(std::move(host)), request_(std::move(request)), timeout_(timeout) {
    if (tls != nullptr) {
      tls_stream_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io, *tls);
    } else {
      plain_stream_ = std::make_unique<beast::tcp_stream>(io);
    }
    parser_.body_limit(kMaxReplyBytes);
  }

  void Start(const std::string& port) {
    Lowest().expires_after(timeout_);
    resolver_.async_resolve(host_, port, [self = shared_from_this()](beast::error_code ec,
                                                                      tcp::resolver::results_type r) {
      if (ec) return self->Fail(ec, "resolve");
      self->Lowest().async_connect(r, [self](beast::error_code ec, const tcp::endpoint&) {
        if (ec) return self->Fail(ec, "connect");
        if (self->tls_stream_ == nullptr) return self->Write();
        // SNI, and the certificate must name the host.
        if (!SSL_set_tlsext_host_name(self->tls_stream_->native_handle(), self->host_.c_str())) {
          return self->Fail(beast::error_code(static_cast<int>(::ERR_get_error()),
                                              asio::error::get_ssl_category()),
                            "TLS");
        }
        self->tls_stream_->set_verify_mode(ssl::verify_peer);
        self->tls_stream_->set_verify_callback(ssl::host_name_verification(self->host_));
        self->tls_stream_->async_handshake(ssl::stream_base::client, [self](beast::error_code ec) {
          if (ec) return self->Fail(ec, "TLS handshake");
          self->Write();
        });
      });
    });
  }

  absl::StatusOr<GitHubReply> Result() const {
    if (!error_.ok()) return error_;
    if (!read_) return absl::UnavailableError("GitHub did not answer");
    return GitHubReply{static_cast<int>(parser_.get().result_int()), parser_.get().body()};
  }

 private:
  beast::tcp_stream& Lowest() {
    return tls_stream_ != nullptr ? beast::get_lowest_layer(*tls_stream_) : *plain_stream_;
  }

  void Fail(const beast::error_code& ec, const char* stage) {
    const bool timed_out = ec == beast::error::timeout;
    error_ = absl::UnavailableError(absl::StrCat("GitHub at ", host_, ": ", stage, " ",
                                                 timed_out ? "timed out" : "failed", ": ",
                                                 ec.message()));
  }

  template <typename Stream>
  void WriteOn(Stream& stream) {
    http::async_write(stream, request_, [self = shared_from_this(), &stream](beast::error_code ec,
                                                                             size_t) {
      if (ec) return self->Fail(ec, "write");
      http::async_read(stream, self->buffer_, self->parser_,
                       [self](beast::error_code ec, size_t) {
                         if (ec) return self->Fail(ec, "read");
                         self->read_ = true;
                         beast::error_code ignored;
                         self->Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
                       });
    });
  }

  void Write() {
    if (tls_stream_ != nullptr) return WriteOn(*tls_stream_);
    WriteOn(*plain_stream_);
  }

  tcp::resolver resolver_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls_stream_;
  std::unique_ptr<beast::tcp_stream> plain_stream_;
  const std::string host_;
  Request request_;
  const std::chrono::milliseconds timeout_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  bool read_ = false;
  absl::Status error_;
};

// GitHub's owner and repository names (CheckGitHubId in accounts says the
// same): no character that means something in a URL path.
bool IsRepo(const std::string& repo) {
  const size_t slash = repo.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == repo.size()) return false;
  if (repo.find('/', slash + 1) != std::string::npos) return false;
  for (char c : repo) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
        c != '/') {
      return false;
    }
  }
  return repo.substr(slash + 1) != "." && repo.substr(slash + 1) != "..";
}

}  // namespace

absl::Status StatusOfGitHubReply(const GitHubReply& reply, const std::string& what) {
  if (reply.status >= 200 && reply.status < 300) return absl::OkStatus();
  const std::string message = MessageOf(reply.body);
  const std::string text =
      absl::StrCat(what, ": GitHub answered ", reply.status, message.empty() ? "" : ": ", message);
  if (reply.status >= 500 || reply.status == 429) return absl::UnavailableError(text);
  switch (reply.status) {
    case 401:
      return absl::UnauthenticatedError(text);
    case 403:
      return absl::PermissionDeniedError(text);
    case 404:
      return absl::NotFoundError(text);
    default:
      return absl::InvalidArgumentError(text);
  }
}

absl::StatusOr<std::string> GitHubRepoOf(const std::string& url) {
  std::string rest;
  if (const size_t scheme = url.find("://"); scheme != std::string::npos) {
    const size_t path = url.find('/', scheme + 3);
    if (path == std::string::npos) return absl::NotFoundError("the URL names no repository");
    rest = url.substr(path + 1);
  } else if (const size_t colon = url.find(':'); colon != std::string::npos) {
    rest = url.substr(colon + 1);  // git@host:owner/repo
  } else {
    return absl::NotFoundError("the URL names no repository");
  }
  absl::string_view repo = absl::StripSuffix(absl::StripSuffix(rest, "/"), ".git");
  std::string out(repo);
  if (!IsRepo(out)) return absl::NotFoundError(absl::StrCat("\"", out, "\" is not owner/repo"));
  return out;
}

absl::StatusOr<std::unique_ptr<HttpGitHubClient>> HttpGitHubClient::Create(Options options) {
  std::unique_ptr<HttpGitHubClient> client(new HttpGitHubClient());
  const std::string& url = options.api_url;
  const auto bad = [&url] {
    return absl::InvalidArgumentError(absl::StrCat(
        "--github_api_url must be http(s)://host[:port][/path], not \"", url.substr(0, 200), "\""));
  };
  std::string rest;
  if (absl::StartsWith(url, "https://")) {
    rest = url.substr(8);
  } else if (absl::StartsWith(url, "http://")) {
    client->tls_ = false;
    rest = url.substr(7);
  } else {
    return bad();
  }
  const size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  client->prefix_ = slash == std::string::npos ? "" : rest.substr(slash);
  while (!client->prefix_.empty() && client->prefix_.back() == '/') client->prefix_.pop_back();
  const size_t colon = authority.rfind(':');
  client->host_ = authority.substr(0, colon);
  client->port_ = colon == std::string::npos ? (client->tls_ ? "443" : "80") : authority.substr(colon + 1);
  int port = 0;
  if (client->host_.empty() || !absl::SimpleAtoi(client->port_, &port) || port <= 0 || port > 65535) {
    return bad();
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == '@' || c == '?' || c == '#') return bad();
  }
  if (client->tls_) {
    client->tls_context_ = std::make_unique<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(client->tls_context_->native_handle(), TLS1_2_VERSION);
    boost::system::error_code ec;
    if (options.ca_file.empty()) {
      client->tls_context_->set_default_verify_paths(ec);
    } else {
      client->tls_context_->load_verify_file(options.ca_file, ec);
    }
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot load the CAs to trust for GitHub: ", ec.message()));
    }
  }
  client->options_ = std::move(options);
  return client;
}

HttpGitHubClient::~HttpGitHubClient() = default;

absl::StatusOr<GitHubReply> HttpGitHubClient::Post(const std::string& token, const std::string& path,
                                                   const std::string& json) {
  Exchange::Request request{http::verb::post, prefix_ + path, 11};
  const bool default_port = port_ == (tls_ ? "443" : "80");
  request.set(http::field::host, default_port ? host_ : absl::StrCat(host_, ":", port_));
  request.set(http::field::authorization, absl::StrCat("Bearer ", token));
  request.set(http::field::accept, "application/vnd.github+json");
  request.set("X-GitHub-Api-Version", kApiVersion);
  request.set(http::field::user_agent, options_.user_agent);
  request.set(http::field::content_type, "application/json");
  request.set(http::field::connection, "close");
  request.body() = json;
  request.prepare_payload();
  asio::io_context io;
  auto exchange = std::make_shared<Exchange>(io, tls_context_.get(), host_, std::move(request),
                                             std::chrono::milliseconds(options_.timeout_ms));
  exchange->Start(port_);
  io.run();
  return exchange->Result();
}

absl::Status HttpGitHubClient::CreateDispatch(const std::string& token, const std::string& repo,
                                              const std::string& event_type,
                                              const google::protobuf::Struct& client_payload) {
  if (!IsRepo(repo)) return absl::InvalidArgumentError(absl::StrCat("\"", repo, "\" is not owner/repo"));
  google::protobuf::Struct body;
  (*body.mutable_fields())["event_type"] = Text(event_type);
  *(*body.mutable_fields())["client_payload"].mutable_struct_value() = client_payload;
  absl::StatusOr<GitHubReply> reply =
      Post(token, absl::StrCat("/repos/", repo, "/dispatches"), ToJson(body));
  if (!reply.ok()) return reply.status();
  return StatusOfGitHubReply(*reply, absl::StrCat("repository_dispatch to ", repo));
}

absl::StatusOr<std::string> HttpGitHubClient::CreatePullRequest(const std::string& token,
                                                                const std::string& repo,
                                                                const NewPullRequest& pull) {
  if (!IsRepo(repo)) return absl::InvalidArgumentError(absl::StrCat("\"", repo, "\" is not owner/repo"));
  google::protobuf::Struct body;
  auto& f = *body.mutable_fields();
  f["title"] = Text(pull.title);
  f["head"] = Text(pull.head);
  f["base"] = Text(pull.base);
  if (!pull.body.empty()) f["body"] = Text(pull.body);
  f["draft"].set_bool_value(pull.draft);
  absl::StatusOr<GitHubReply> reply = Post(token, absl::StrCat("/repos/", repo, "/pulls"), ToJson(body));
  if (!reply.ok()) return reply.status();
  if (absl::Status st = StatusOfGitHubReply(*reply, absl::StrCat("the pull request on ", repo));
      !st.ok()) {
    return st;
  }
  google::protobuf::Struct answer;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(reply->body, &answer, options).ok()) {
    return absl::UnavailableError("GitHub's answer to the pull request is not JSON");
  }
  auto it = answer.fields().find("html_url");
  if (it == answer.fields().end() || it->second.string_value().empty()) {
    return absl::UnavailableError("GitHub's answer to the pull request has no html_url");
  }
  return it->second.string_value();
}

}  // namespace buildd::broker
