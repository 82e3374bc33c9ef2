#include "tests/testing/git_http_server.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace buildd::testing {
namespace {

struct CgiOutput {
  bool ok = false;
  std::string out;
};

// Runs `git http-backend` with the CGI environment `env` and `body` on its
// standard input; its whole standard output.
CgiOutput RunBackend(const std::vector<std::string>& env, const std::string& body) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return {};
  if (pipe2(out, O_CLOEXEC) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const char* argv[] = {"git", "http-backend", nullptr};
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, "git", &actions, nullptr, const_cast<char**>(argv),
                                   envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  if (spawned != 0) {
    close(in[1]);
    close(out[0]);
    return {};
  }
  std::thread writer([fd = in[1], &body] {
    size_t done = 0;
    while (done < body.size()) {
      const ssize_t n = write(fd, body.data() + done, body.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(fd);
  });
  CgiOutput result;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    result.out.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  writer.join();
  int status = 0;
  waitpid(pid, &status, 0);
  result.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  return result;
}

}  // namespace

GitHttpServer::GitHttpServer(std::string root, std::string token)
    : root_(std::move(root)),
      token_(std::move(token)),
      server_(std::make_unique<LoopbackHttpServer>(
          [this](const HttpExchange& exchange) { return Handle(exchange); })) {}

std::vector<GitHttpServer::Request> GitHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

HttpAnswer GitHttpServer::Handle(const HttpExchange& exchange) {
  Request request{exchange.method, exchange.target, exchange.Header("authorization"), 0};
  HttpAnswer answer;
  // The password of "Basic base64(user:password)".
  std::string password;
  std::string user;
  if (absl::StartsWith(request.authorization, "Basic ")) {
    std::string decoded;
    if (absl::Base64Unescape(request.authorization.substr(6), &decoded)) {
      const size_t colon = decoded.find(':');
      if (colon != std::string::npos) {
        user = decoded.substr(0, colon);
        password = decoded.substr(colon + 1);
      }
    }
  }
  if (password != token_ || token_.empty()) {
    answer.status = 401;
    answer.headers = {{"WWW-Authenticate", "Basic realm=\"git\""}, {"Content-Type", "text/plain"}};
    answer.body = "authentication required\n";
  } else {
    std::vector<std::string> env = {
        "GIT_PROJECT_ROOT=" + root_,
        "GIT_HTTP_EXPORT_ALL=1",
        "REQUEST_METHOD=" + exchange.method,
        "PATH_INFO=" + exchange.path,
        "QUERY_STRING=" + exchange.query,
        "CONTENT_TYPE=" + exchange.Header("content-type"),
        absl::StrCat("CONTENT_LENGTH=", exchange.body.size()),
        "REMOTE_USER=" + user,
        "REMOTE_ADDR=127.0.0.1",
        "HTTP_CONTENT_ENCODING=" + exchange.Header("content-encoding"),
        "GIT_PROTOCOL=" + exchange.Header("git-protocol"),
        std::string("PATH=") + (getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin"),
    };
    if (const char* home = getenv("HOME")) env.push_back(std::string("HOME=") + home);
    CgiOutput cgi = RunBackend(env, exchange.body);
    size_t end = cgi.out.find("\r\n\r\n");
    size_t skip = 4;
    if (end == std::string::npos) {
      end = cgi.out.find("\n\n");
      skip = 2;
    }
    if (end == std::string::npos) {
      answer.status = 500;
      answer.body = "git http-backend failed\n";
    } else {
      answer.status = 200;
      for (absl::string_view line : absl::StrSplit(cgi.out.substr(0, end), '\n')) {
        line = absl::StripTrailingAsciiWhitespace(line);
        const size_t colon = line.find(':');
        if (colon == absl::string_view::npos) continue;
        const std::string name(line.substr(0, colon));
        const std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
        if (absl::AsciiStrToLower(name) == "status") {
          int code = 0;
          if (absl::SimpleAtoi(value.substr(0, value.find(' ')), &code)) answer.status = code;
        } else {
          answer.headers.emplace_back(name, value);
        }
      }
      answer.body = cgi.out.substr(end + skip);
    }
  }
  request.status = answer.status;
  absl::MutexLock lock(&mu_);
  requests_.push_back(std::move(request));
  return answer;
}

}  // namespace buildd::testing
