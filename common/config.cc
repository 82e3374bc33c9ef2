#include "common/config.h"

#include <cstdio>
#include <cstdlib>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"

namespace buildd {

void ParseFlagsWithEnv(int argc, char** argv,
                       const std::vector<std::pair<std::string, std::string>>& env_fallbacks,
                       const std::string& usage) {
  absl::SetProgramUsageMessage(usage);
  for (const auto& [flag_name, env] : env_fallbacks) {
    const char* value = std::getenv(env.c_str());
    if (value == nullptr || *value == '\0') continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(flag_name);
    if (flag == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "invalid value in %s for --%s: %s\n", env.c_str(), flag_name.c_str(),
                   error.c_str());
      std::exit(2);
    }
  }
  absl::ParseCommandLine(argc, argv);
}

std::string ListenAddress(const std::string& value, const std::string& default_host) {
  if (value.empty()) return value;
  if (value.find(':') == std::string::npos) return absl::StrCat(default_host, ":", value);
  if (value[0] == ':') return absl::StrCat(default_host, value);
  return value;
}

}  // namespace buildd
