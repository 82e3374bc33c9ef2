#include "tests/testing/held_connections.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace buildd::testing {

HeldConnections::~HeldConnections() { CloseAll(); }

size_t HeldConnections::Open(int port, size_t count, absl::string_view prefix) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  size_t opened = 0;
  for (; opened < count; ++opened) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    // Blocking connect: the kernel completes it from the listen backlog even
    // while the server does not accept.
    if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        (!prefix.empty() && send(fd, prefix.data(), prefix.size(), MSG_NOSIGNAL) < 0)) {
      close(fd);
      break;
    }
    connections_.push_back(Connection{fd, false, ""});
  }
  return opened;
}

void HeldConnections::SendToEach(char byte) {
  for (Connection& connection : connections_) {
    // A failure means the server closed it; CountClosed sees that.
    if (!connection.closed) send(connection.fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
}

size_t HeldConnections::CountClosed() {
  size_t closed = 0;
  char buffer[4096];
  for (Connection& connection : connections_) {
    while (!connection.closed) {
      const ssize_t n = recv(connection.fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        connection.received.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        connection.closed = true;
      }
      break;
    }
    if (connection.closed) ++closed;
  }
  return closed;
}

void HeldConnections::CloseAll() {
  for (Connection& connection : connections_) close(connection.fd);
  connections_.clear();
}

}  // namespace buildd::testing
