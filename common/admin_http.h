#ifndef BUILDD_COMMON_ADMIN_HTTP_H_
#define BUILDD_COMMON_ADMIN_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace buildd {

// A small HTTP/1.1 server for `GET /health` (also `/healthz`) and
// `GET /metrics` (Prometheus text from Metrics::Global()), on its own thread.
// `/health` answers 200 with `{"status":"ok"}` while `healthy()` is true and
// 503 otherwise. One request per connection; a client has 10 s from its
// connection to the end of the response. A failed accept (the process out of
// file descriptors) is retried after a backoff (AcceptBackoff), so the server
// answers again once descriptors are free.
class AdminHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<AdminHttpServer>> Start(const std::string& address,
                                                                std::function<bool()> healthy);
  ~AdminHttpServer();
  int port() const { return port_; }

 private:
  struct Impl;
  AdminHttpServer() = default;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// Starts the server when `address` is not empty (a service's
// --metrics_listen flag) and logs its port; nullptr when empty.
absl::StatusOr<std::unique_ptr<AdminHttpServer>> MaybeStartMetrics(const std::string& address,
                                                                   std::function<bool()> healthy);

}  // namespace buildd

#endif  // BUILDD_COMMON_ADMIN_HTTP_H_
