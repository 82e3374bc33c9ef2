#ifndef BUILDD_COMMON_CONFIG_H_
#define BUILDD_COMMON_CONFIG_H_

#include <string>
#include <utility>
#include <vector>

namespace buildd {

// Parses argv with absl flags, after giving each listed flag the value of its
// environment variable when that is set: a flag on the command line wins over
// the environment, which wins over the default. Exits with a message naming
// the flag when a value does not parse.
// `env_fallbacks`: {flag name, environment variable}.
void ParseFlagsWithEnv(int argc, char** argv,
                       const std::vector<std::pair<std::string, std::string>>& env_fallbacks,
                       const std::string& usage);

// "host:port" for a listen flag that may be a bare port (":7001", "7001").
std::string ListenAddress(const std::string& value, const std::string& default_host);

}  // namespace buildd

#endif  // BUILDD_COMMON_CONFIG_H_
