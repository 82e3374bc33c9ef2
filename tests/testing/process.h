#ifndef BUILDD_TESTS_TESTING_PROCESS_H_
#define BUILDD_TESTS_TESTING_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace buildd::testing {

// A real child process (one of the project's binaries) with its output in a
// log file. Stopped with SIGTERM (then SIGKILL) when destroyed.
class Process {
 public:
  // `env` adds to (or replaces in) the test's own environment.
  static std::unique_ptr<Process> Start(const std::string& binary,
                                        const std::vector<std::string>& args,
                                        const std::map<std::string, std::string>& env,
                                        const std::string& log_path);
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

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// Path of a built binary, e.g. "services/broker/buildd-broker".
std::string BuiltBinary(const std::string& relative);
// A file of the source tree (a script), by its path in the tree.
std::string SourceFile(const std::string& relative);

// A fresh directory under the test's temporary dir.
std::string MakeTempDir(const std::string& prefix);

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_PROCESS_H_
