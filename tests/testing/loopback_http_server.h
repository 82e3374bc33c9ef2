#ifndef BUILDD_TESTS_TESTING_LOOPBACK_HTTP_SERVER_H_
#define BUILDD_TESTS_TESTING_LOOPBACK_HTTP_SERVER_H_

// An HTTP/1.1 server on 127.0.0.1 and an ephemeral port (Boost.Beast) that
// answers every request with a handler, for the fakes of the services at
// buildd's edge (GitHub, a git host). Connections are kept alive; each is
// served by its own thread. Thread-safe.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace buildd::testing {

struct HttpExchange {
  std::string method;
  std::string target;  // as sent, query included
  std::string path;    // without the query
  std::string query;   // after '?', "" when none
  // Names in lower case; a repeated header keeps its last value.
  std::map<std::string, std::string> headers;
  std::string body;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

struct HttpAnswer {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

class LoopbackHttpServer {
 public:
  using Handler = std::function<HttpAnswer(const HttpExchange&)>;

  // Starts listening. Aborts the test binary when no socket can be bound.
  // `handler` runs on the connections' threads, maybe several at once.
  explicit LoopbackHttpServer(Handler handler);
  // Closes every connection and joins the threads.
  ~LoopbackHttpServer();
  LoopbackHttpServer(const LoopbackHttpServer&) = delete;
  LoopbackHttpServer& operator=(const LoopbackHttpServer&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:PORT".
  std::string base_url() const;

 private:
  struct Net;
  struct Connection;

  void AcceptLoop();
  void Serve(Connection* connection);

  const Handler handler_;
  std::unique_ptr<Net> net_;
  int port_ = 0;
  std::thread accept_thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_LOOPBACK_HTTP_SERVER_H_
