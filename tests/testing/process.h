#ifndef BUILDD_TESTS_TESTING_PROCESS_H_
#define BUILDD_TESTS_TESTING_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace buildd::testing {

struct ProcessOptions {
  // RLIMIT_NOFILE (soft and hard) of the child; 0 keeps the test's own.
  uint64_t max_open_files = 0;
};

// A real child process (one of the project's binaries) with its output in a
// log file. Stopped with SIGTERM (then SIGKILL) when destroyed.
class Process {
 public:
  // `env` adds to (or replaces in) the test's own environment.
  static std::unique_ptr<Process> Start(const std::string& binary,
                                        const std::vector<std::string>& args,
                                        const std::map<std::string, std::string>& env,
                                        const std::string& log_path,
                                        const ProcessOptions& options = {});
  ~Process();

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;
  // Waits until the log holds `needle`; false on timeout or exit.
  bool WaitForLog(const std::string& needle, int timeout_ms) const;
  bool Running();
  // Waits up to `timeout_ms` for the process to exit; returns its wait
  // status, or -1 while it still runs.
  int Wait(int timeout_ms);
  // Sends `sig` and waits up to `timeout_ms`; returns the wait status or -1
  // (and kills its process group).
  int Stop(int sig, int timeout_ms);

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string log_path_;
};

// The CPU time (user and system) process `pid` used so far, from
// /proc/<pid>/stat; zero when it cannot be read.
absl::Duration CpuTime(pid_t pid);

// Raises this process's soft RLIMIT_NOFILE to its hard limit (tests that hold
// many connections); returns the soft limit now in force.
uint64_t RaiseOpenFileLimit();

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// Path of a built binary, e.g. "services/broker/buildd-broker".
std::string BuiltBinary(const std::string& relative);
// A file of the source tree (a script), by its path in the tree.
std::string SourceFile(const std::string& relative);

// Certificates in `dir` as `./buildd up --tls` makes them
// (scripts/tls_certs.sh): ca.pem and ca.key, and signed by that CA server.pem
// and server.key (localhost, 127.0.0.1, ::1), client.pem and client.key.
// Files already there are kept. False when the script fails.
bool MakeTlsCertificates(const std::string& dir);

// A fresh directory under the test's temporary dir.
std::string MakeTempDir(const std::string& prefix);

// Removes `dir` (of logs, files a test made), or when the current test
// failed keeps it and says where `what` is kept.
void RemoveUnlessFailed(const std::string& dir, const std::string& what = "files");

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_PROCESS_H_
