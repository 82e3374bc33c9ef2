#include "common/config.h"

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"

namespace buildd {

namespace {

// `--max-tasks=3` as `--max_tasks=3`: each flag also in dash spelling, as
// the documents and unit files people bring write them. Only names of flags
// that exist change; values, and everything after a bare `--`, stay.
void AcceptDashSpelling(int argc, char** argv, std::deque<std::string>& storage) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    const size_t dashes = arg.rfind("--", 0) == 0 ? 2 : arg.rfind('-', 0) == 0 ? 1 : 0;
    if (dashes == 0) continue;
    const size_t end = std::min(arg.find('='), arg.size());
    std::string name = arg.substr(dashes, end - dashes);
    if (name.find('-') == std::string::npos) continue;
    std::replace(name.begin(), name.end(), '-', '_');
    if (absl::FindCommandLineFlag(name) == nullptr &&
        !(name.rfind("no", 0) == 0 && absl::FindCommandLineFlag(name.substr(2)) != nullptr)) {
      continue;  // absl then names the unknown flag as it was written
    }
    storage.push_back(absl::StrCat(arg.substr(0, dashes), name, arg.substr(end)));
    argv[i] = storage.back().data();
  }
}

}  // namespace

void ParseFlagsWithEnv(int argc, char** argv,
                       const std::vector<std::pair<std::string, std::string>>& env_fallbacks,
                       const std::string& usage) {
  absl::SetProgramUsageMessage(usage);
  // The --tls_* flags (common/tls.cc), in the binaries that have them.
  std::vector<std::pair<std::string, std::string>> fallbacks = {
      {"tls_cert", "BUILDD_TLS_CERT"},           {"tls_key", "BUILDD_TLS_KEY"},
      {"tls_client_ca", "BUILDD_TLS_CLIENT_CA"}, {"tls_ca", "BUILDD_TLS_CA"},
      {"tls_client_cert", "BUILDD_TLS_CLIENT_CERT"}, {"tls_client_key", "BUILDD_TLS_CLIENT_KEY"}};
  fallbacks.insert(fallbacks.end(), env_fallbacks.begin(), env_fallbacks.end());
  for (const auto& [flag_name, env] : fallbacks) {
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
  // The rewritten arguments live as long as the process: absl keeps none,
  // but main may read argv afterwards.
  static auto* storage = new std::deque<std::string>();
  AcceptDashSpelling(argc, argv, *storage);
  absl::ParseCommandLine(argc, argv);
}

absl::StatusOr<std::string> SecretFlagValue(const std::string& flag_name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(flag_name);
  const absl::CommandLineFlag* file_flag = absl::FindCommandLineFlag(flag_name + "_file");
  std::string value = flag == nullptr ? "" : flag->CurrentValue();
  const std::string path = file_flag == nullptr ? "" : file_flag->CurrentValue();
  if (path.empty()) return value;
  if (!value.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag_name, " and --", flag_name, "_file are both set; give one"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag_name, "_file: cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  value = text.str();
  if (!value.empty() && value.back() == '\n') value.pop_back();
  if (!value.empty() && value.back() == '\r') value.pop_back();
  return value;
}

std::string SecretFlagOrExit(const std::string& flag_name) {
  absl::StatusOr<std::string> value = SecretFlagValue(flag_name);
  if (!value.ok()) {
    std::fprintf(stderr, "%s\n", std::string(value.status().message()).c_str());
    std::exit(2);
  }
  return *std::move(value);
}

std::string ListenAddress(const std::string& value, const std::string& default_host) {
  if (value.empty()) return value;
  if (value.find(':') == std::string::npos) return absl::StrCat(default_host, ":", value);
  if (value[0] == ':') return absl::StrCat(default_host, value);
  return value;
}

}  // namespace buildd
