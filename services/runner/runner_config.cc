#include "services/runner/runner_config.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace buildd::runner {

std::string NormalizeServerAddress(const std::string& value) {
  absl::string_view address = absl::StripAsciiWhitespace(value);
  for (absl::string_view scheme : {"http://", "https://", "grpc://"}) {
    if (absl::StartsWithIgnoreCase(address, scheme)) {
      address.remove_prefix(scheme.size());
      break;
    }
  }
  while (absl::EndsWith(address, "/")) address.remove_suffix(1);
  return std::string(address);
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

}  // namespace buildd::runner
