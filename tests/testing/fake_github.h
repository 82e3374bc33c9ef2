#ifndef BUILDD_TESTS_TESTING_FAKE_GITHUB_H_
#define BUILDD_TESTS_TESTING_FAKE_GITHUB_H_

// GitHub's REST API on loopback, as far as buildd calls it: repository
// dispatch events and pull requests. It checks what GitHub checks (the
// token for the repository, the Accept and X-GitHub-Api-Version headers, a
// User-Agent, JSON bodies of the documented shape) and answers as GitHub
// documents it; it records every call, and can fail the next calls of a
// kind on purpose. Thread-safe.

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/struct.pb.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/testing/loopback_http_server.h"

namespace buildd::testing {

// What GitHub sends as X-Hub-Signature-256 for `body` under the webhook's
// `secret` ("sha256=" and the HMAC-SHA256 in hex), computed here, not by
// the code under test.
std::string GitHubSignature(const std::string& body, const std::string& secret);

class FakeGitHub {
 public:
  struct Call {
    std::string method;
    std::string path;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    google::protobuf::Struct json;  // the body, when it is a JSON object
    int status = 0;                 // what the fake answered
  };

  FakeGitHub();

  // The API's URL (--github_api_url), "http://127.0.0.1:PORT".
  std::string api_url() const { return server_->base_url(); }

  // `repo` ("owner/repo") exists and `token` may write to it.
  void AddRepo(const std::string& repo, const std::string& token);
  // The next `times` calls whose path ends with `suffix` ("/dispatches",
  // "/pulls") get `status` (e.g. 502) with GitHub's error body.
  void FailNext(const std::string& suffix, int status, int times = 1);

  std::vector<Call> calls() const;
  // The calls whose path ends with `suffix`.
  std::vector<Call> CallsTo(const std::string& suffix) const;
  // Waits until `n` calls whose path ends with `suffix` arrived.
  bool WaitForCalls(const std::string& suffix, size_t n, absl::Duration timeout) const;

 private:
  HttpAnswer Handle(const HttpExchange& exchange);
  HttpAnswer Answer(const HttpExchange& exchange, Call& call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, std::string> tokens_ ABSL_GUARDED_BY(mu_);  // repo → token
  std::vector<std::pair<std::string, std::deque<int>>> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  int next_pull_ ABSL_GUARDED_BY(mu_) = 1;
  std::unique_ptr<LoopbackHttpServer> server_;
};

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_FAKE_GITHUB_H_
