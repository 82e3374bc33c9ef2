#ifndef BUILDD_SERVICES_BROKER_GITHUB_CLIENT_H_
#define BUILDD_SERVICES_BROKER_GITHUB_CLIENT_H_

// The broker's calls to GitHub's REST API (api.github.com, or a GitHub
// Enterprise server's /api/v3): a repository_dispatch event for an action
// account's workflow, and a pull request for a task's pushed branch. Each
// call is one HTTP request with GitHub's headers (Authorization: Bearer,
// Accept: application/vnd.github+json, X-GitHub-Api-Version, User-Agent)
// and a deadline; retrying is the caller's.

#include <memory>
#include <string>

#include <google/protobuf/struct.pb.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace buildd::broker {

// A pull request to open: `head` into `base` of the repository.
struct NewPullRequest {
  std::string title;
  std::string head;
  std::string base;
  std::string body;
  bool draft = false;
};

// GitHub's answer: its status code and body.
struct GitHubReply {
  int status = 0;
  std::string body;
};

// The status a GitHub answer stands for: OK for 2xx; Unavailable for 5xx
// and 429 (worth retrying), Unauthenticated for 401, PermissionDenied for
// 403, NotFound for 404, InvalidArgument for 422 and other 4xx; with
// GitHub's own message when its body carries one.
absl::Status StatusOfGitHubReply(const GitHubReply& reply, const std::string& what);

// "owner/repo" of a GitHub repository URL (https://host/owner/repo[.git],
// git@host:owner/repo[.git]); NotFound when `url` names none.
absl::StatusOr<std::string> GitHubRepoOf(const std::string& url);

// Implementations are thread-safe. Errors: Unavailable for network
// failures, timeouts and GitHub's 5xx (worth retrying), others as
// StatusOfGitHubReply says.
class GitHubClient {
 public:
  virtual ~GitHubClient() = default;

  // POST /repos/{repo}/dispatches with {"event_type", "client_payload"}.
  // `repo` is "owner/repo".
  virtual absl::Status CreateDispatch(const std::string& token, const std::string& repo,
                                      const std::string& event_type,
                                      const google::protobuf::Struct& client_payload) = 0;

  // POST /repos/{repo}/pulls; the pull request's html_url.
  virtual absl::StatusOr<std::string> CreatePullRequest(const std::string& token,
                                                        const std::string& repo,
                                                        const NewPullRequest& pull) = 0;
};

// GitHubClient over HTTPS (Boost.Beast, OpenSSL; the system's CAs, or
// `ca_file`), or plain HTTP when the API URL says http:// (a server on
// loopback). One connection per call.
class HttpGitHubClient final : public GitHubClient {
 public:
  struct Options {
    // Where the REST API is: https://api.github.com, or a GitHub
    // Enterprise server's https://HOST/api/v3.
    std::string api_url = "https://api.github.com";
    std::string user_agent = "buildd-broker";
    int timeout_ms = 10000;
    // PEM file of the CAs to trust instead of the system's.
    std::string ca_file;
  };

  // InvalidArgument for an API URL that is not http(s)://host[:port][/path].
  static absl::StatusOr<std::unique_ptr<HttpGitHubClient>> Create(Options options);
  ~HttpGitHubClient() override;

  absl::Status CreateDispatch(const std::string& token, const std::string& repo,
                              const std::string& event_type,
                              const google::protobuf::Struct& client_payload) override;
  absl::StatusOr<std::string> CreatePullRequest(const std::string& token, const std::string& repo,
                                                const NewPullRequest& pull) override;

  // One POST of `json` to `path` (under the API URL's path); the answer
  // whatever its status, Unavailable when none came.
  absl::StatusOr<GitHubReply> Post(const std::string& token, const std::string& path,
                                   const std::string& json);

 private:
  HttpGitHubClient() = default;

  Options options_;
  bool tls_ = true;
  std::string host_;
  std::string port_;
  std::string prefix_;  // the API URL's path, without a trailing '/'
  std::unique_ptr<boost::asio::ssl::context> tls_context_;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_GITHUB_CLIENT_H_
