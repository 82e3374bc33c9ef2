#include "bench/sse_clients.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace buildd::bench {

namespace {

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

SseClients::SseClients(int gateway_port, const std::string& key, const std::string& task_id,
                       int count) {
  const std::string request =
      absl::StrCat("GET /api/events?taskId=", task_id, " HTTP/1.1\r\nHost: 127.0.0.1:", gateway_port,
                   "\r\nAuthorization: Bearer ", key, "\r\nAccept: text/event-stream\r\n\r\n");
  for (int i = 0; i < count; ++i) {
    Client c;
    c.fd = ConnectLoopback(gateway_port);
    if (c.fd < 0 || !SendAll(c.fd, request)) {
      Fail(absl::StrCat("client ", i, ": cannot connect to the gateway: ", std::strerror(errno)));
      if (c.fd >= 0) close(c.fd);
      break;
    }
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    clients_.push_back(std::move(c));
  }
  if (pipe2(wake_, O_CLOEXEC) != 0) Fail("pipe2 failed");
  thread_ = std::thread([this] { Loop(); });
}

SseClients::~SseClients() {
  if (wake_[1] >= 0) {
    const char b = 0;
    (void)!write(wake_[1], &b, 1);
  }
  thread_.join();
  for (Client& c : clients_) close(c.fd);
  close(wake_[0]);
  close(wake_[1]);
}

bool SseClients::WaitStreaming(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const int n = static_cast<int>(clients_.size());
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return streaming_ == n || !error_.empty(); };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return streaming_ == n && error_.empty();
}

bool SseClients::WaitOutputs(int64_t per_client, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return min_ >= per_client || !error_.empty(); };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return min_ >= per_client && error_.empty();
}

int64_t SseClients::total_outputs() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

int64_t SseClients::min_outputs() const {
  absl::MutexLock lock(&mu_);
  return min_;
}

Clock::time_point SseClients::last_output() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

std::string SseClients::error() const {
  absl::MutexLock lock(&mu_);
  return error_;
}

void SseClients::Fail(const std::string& why) {
  absl::MutexLock lock(&mu_);
  if (error_.empty()) error_ = why;
}

int64_t SseClients::Parse(Client& c) {
  size_t pos = 0;
  if (!c.head_done) {
    const size_t end = c.buffer.find("\r\n\r\n");
    if (end == std::string::npos) return 0;
    if (c.buffer.compare(0, 12, "HTTP/1.1 200") != 0) {
      Fail(absl::StrCat("the gateway answered: ", c.buffer.substr(0, 300)));
      c.buffer.clear();
      return 0;
    }
    c.head_done = true;
    pos = end + 4;
    absl::MutexLock lock(&mu_);
    ++streaming_;
  }
  // Chunk-size lines and the rest of each event are skipped; an event's
  // lines never span two chunks (the gateway writes one chunk per event).
  int64_t outputs = 0;
  for (size_t nl; (nl = c.buffer.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    absl::string_view line(c.buffer.data() + pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "event: output") ++outputs;
  }
  c.buffer.erase(0, pos);
  return outputs;
}

void SseClients::Loop() {
  std::vector<pollfd> fds;
  fds.push_back({wake_[0], POLLIN, 0});
  for (const Client& c : clients_) fds.push_back({c.fd, POLLIN, 0});
  char buf[65536];
  for (;;) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return Fail(absl::StrCat("poll: ", std::strerror(errno)));
    }
    if (fds[0].revents != 0) return;
    int64_t arrived = 0;
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Client& c = clients_[i - 1];
      const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        Fail(absl::StrCat("client ", i - 1, ": the gateway closed the stream after ", c.outputs,
                          " output events"));
        fds[i].fd = -1;  // poll() skips it from now on
        continue;
      }
      if (n < 0) continue;
      c.buffer.append(buf, static_cast<size_t>(n));
      const int64_t got = Parse(c);
      c.outputs += got;
      arrived += got;
    }
    if (arrived == 0) continue;
    const auto now = Clock::now();
    int64_t fewest = clients_.empty() ? 0 : clients_[0].outputs;
    for (const Client& c : clients_) fewest = std::min(fewest, c.outputs);
    absl::MutexLock lock(&mu_);
    total_ += arrived;
    min_ = fewest;
    last_ = now;
  }
}

}  // namespace buildd::bench
