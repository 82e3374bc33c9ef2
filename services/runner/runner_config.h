#ifndef BUILDD_SERVICES_RUNNER_RUNNER_CONFIG_H_
#define BUILDD_SERVICES_RUNNER_RUNNER_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include <vector>

namespace buildd::runner {

// Where the broker is and how to reach it.
struct ServerAddress {
  std::string address;  // "host:port", as gRPC wants it
  bool tls = false;
};

// The broker address of --server: surrounding blanks and trailing '/' are
// removed; "https://" or "grpcs://" mean TLS, "http://", "grpc://" or no
// scheme plaintext. `tls_flags`: TLS files were given (--tls_ca…), which a
// bare address then uses and a plaintext scheme contradicts.
absl::StatusOr<ServerAddress> ParseServerAddress(const std::string& value, bool tls_flags);

// "a, b,,c" → {"a", "b", "c"}: trimmed, empty items dropped, duplicates
// dropped (first one kept).
std::vector<std::string> SplitLabels(const std::string& value);

// Every value given to flag `name` on the command line (`--name=v`,
// `--name v`; absl keeps only the last), in order; {parsed} when it is not
// there (its value from the environment or its default).
std::vector<std::string> FlagValues(int argc, char** argv, const std::string& name,
                                    const std::string& parsed);

// $HOME/.buildd/runner, or /tmp/buildd-runner when HOME is unset.
std::string DefaultWorkDir();

// True for a git author of the form "Name <email>".
bool IsCommitAuthor(const std::string& author);

// This machine's host name, or "runner" when it has none.
std::string HostName();

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_RUNNER_CONFIG_H_
