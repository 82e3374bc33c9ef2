#ifndef BUILDD_TESTS_TESTING_GIT_HTTP_SERVER_H_
#define BUILDD_TESTS_TESTING_GIT_HTTP_SERVER_H_

// A git host on loopback: the repositories under a directory served by the
// real `git http-backend` (smart HTTP, fetch and push) behind HTTP Basic
// authentication with one password, as GitHub takes a token. Records every
// request. Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "tests/testing/loopback_http_server.h"

namespace buildd::testing {

class GitHttpServer {
 public:
  struct Request {
    std::string method;
    std::string target;
    std::string authorization;  // the header as sent
    int status = 0;
  };

  // Serves the bare repositories under `root` ("<base_url>/<name>.git");
  // a request whose Basic password is not `token` gets 401.
  GitHttpServer(std::string root, std::string token);

  std::string base_url() const { return server_->base_url(); }
  std::vector<Request> requests() const;

 private:
  HttpAnswer Handle(const HttpExchange& exchange);

  const std::string root_;
  const std::string token_;
  mutable absl::Mutex mu_;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  // Last: it calls Handle until it is destroyed.
  std::unique_ptr<LoopbackHttpServer> server_;
};

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_GIT_HTTP_SERVER_H_
