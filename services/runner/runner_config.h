#ifndef BUILDD_SERVICES_RUNNER_RUNNER_CONFIG_H_
#define BUILDD_SERVICES_RUNNER_RUNNER_CONFIG_H_

#include <string>
#include <vector>

namespace buildd::runner {

// The broker address as gRPC wants it ("host:port"): surrounding blanks, a
// leading "http://", "https://" or "grpc://" and trailing '/' are removed.
std::string NormalizeServerAddress(const std::string& value);

// "a, b,,c" → {"a", "b", "c"}: trimmed, empty items dropped, duplicates
// dropped (first one kept).
std::vector<std::string> SplitLabels(const std::string& value);

// $HOME/.buildd/runner, or /tmp/buildd-runner when HOME is unset.
std::string DefaultWorkDir();

// True for a git author of the form "Name <email>".
bool IsCommitAuthor(const std::string& author);

// This machine's host name, or "runner" when it has none.
std::string HostName();

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_RUNNER_CONFIG_H_
