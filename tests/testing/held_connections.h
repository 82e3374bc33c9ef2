#ifndef BUILDD_TESTS_TESTING_HELD_CONNECTIONS_H_
#define BUILDD_TESTS_TESTING_HELD_CONNECTIONS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace buildd::testing {

// Raw TCP connections to a server on 127.0.0.1, held open the way idle or
// slow ("slowloris") clients hold them. Not thread-safe.
class HeldConnections {
 public:
  HeldConnections() = default;
  ~HeldConnections();
  HeldConnections(const HeldConnections&) = delete;
  HeldConnections& operator=(const HeldConnections&) = delete;

  // Connects `count` more to `port`, each sending `prefix` (may be empty).
  // Stops at the first connection that fails; returns how many it opened.
  size_t Open(int port, size_t count, absl::string_view prefix = "");
  // Sends `byte` on each connection the server has not closed.
  void SendToEach(char byte);
  // Reads what arrived on every connection; returns how many the server has
  // closed (end of stream or reset) by now.
  size_t CountClosed();
  // What connection `i` received so far (CountClosed reads it).
  const std::string& Received(size_t i) const { return connections_[i].received; }
  size_t size() const { return connections_.size(); }
  void CloseAll();

 private:
  struct Connection {
    int fd = -1;
    bool closed = false;  // By the server.
    std::string received;
  };
  std::vector<Connection> connections_;
};

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_HELD_CONNECTIONS_H_
