#ifndef BUILDD_COMMON_CONFIG_H_
#define BUILDD_COMMON_CONFIG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace buildd {

// Parses argv with absl flags, after giving each listed flag the value of its
// environment variable when that is set: a flag on the command line wins over
// the environment, which wins over the default. Exits with a message naming
// the flag when a value does not parse.
// `env_fallbacks`: {flag name, environment variable}; the --tls_* flags
// have theirs already (BUILDD_TLS_CERT, BUILDD_TLS_CA, …).
void ParseFlagsWithEnv(int argc, char** argv,
                       const std::vector<std::pair<std::string, std::string>>& env_fallbacks,
                       const std::string& usage);

// The value of the secret flag `flag_name`, or the contents of the file that
// its companion flag `<flag_name>_file` names (one trailing newline
// dropped), so that secrets never need to be on a command line. Both set,
// or an unreadable file, is an error naming the flag.
absl::StatusOr<std::string> SecretFlagValue(const std::string& flag_name);
// The same for main(): prints the error and exits with status 2.
std::string SecretFlagOrExit(const std::string& flag_name);

// "host:port" for a listen flag that may be a bare port (":7001", "7001").
std::string ListenAddress(const std::string& value, const std::string& default_host);

}  // namespace buildd

#endif  // BUILDD_COMMON_CONFIG_H_
