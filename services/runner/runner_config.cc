#include "services/runner/runner_config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace buildd::runner {

absl::StatusOr<ServerAddress> ParseServerAddress(const std::string& value, bool tls_flags) {
  absl::string_view address = absl::StripAsciiWhitespace(value);
  std::optional<bool> scheme_tls;
  for (auto [scheme, tls] : {std::pair<absl::string_view, bool>{"http://", false},
                             {"grpc://", false},
                             {"https://", true},
                             {"grpcs://", true}}) {
    if (absl::StartsWithIgnoreCase(address, scheme)) {
      address.remove_prefix(scheme.size());
      scheme_tls = tls;
      break;
    }
  }
  if (!scheme_tls && absl::StrContains(address, "://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--server: unknown scheme in \"", value, "\" (https:// or grpcs:// for TLS, http:// or none for plaintext)"));
  }
  while (absl::EndsWith(address, "/")) address.remove_suffix(1);
  if (address.empty()) return absl::InvalidArgumentError("--server must not be empty");
  if (scheme_tls == false && tls_flags) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--server \"", value, "\" is plaintext, but TLS files (--tls_ca, --tls_client_cert) were given: "
        "use https://"));
  }
  return ServerAddress{std::string(address), scheme_tls.value_or(tls_flags)};
}

std::vector<std::string> SplitLabels(const std::string& value) {
  std::vector<std::string> labels;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    std::string label(absl::StripAsciiWhitespace(part));
    if (label.empty()) continue;
    if (std::find(labels.begin(), labels.end(), label) != labels.end()) continue;
    labels.push_back(std::move(label));
  }
  return labels;
}

std::string DefaultWorkDir() {
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') return "/tmp/buildd-runner";
  return std::string(home) + "/.buildd/runner";
}

bool IsCommitAuthor(const std::string& author) {
  const size_t open = author.find(" <");
  if (open == 0 || open == std::string::npos || author.back() != '>') return false;
  const std::string email = author.substr(open + 2, author.size() - open - 3);
  if (email.empty() || email.find_first_of("<> \n") != std::string::npos) return false;
  return author.substr(0, open).find_first_of("<>\n") == std::string::npos;
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "runner";
  return name;
}

std::vector<std::string> FlagValues(int argc, char** argv, const std::string& name,
                                    const std::string& parsed) {
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    for (const std::string& prefix : {"--" + name, "-" + name}) {
      if (!absl::StartsWith(arg, prefix)) continue;
      const absl::string_view rest = arg.substr(prefix.size());
      if (absl::StartsWith(rest, "=")) {
        values.emplace_back(rest.substr(1));
      } else if (rest.empty() && i + 1 < argc) {
        values.emplace_back(argv[++i]);
      }
      break;
    }
  }
  if (values.empty()) values.push_back(parsed);
  return values;
}

}  // namespace buildd::runner
