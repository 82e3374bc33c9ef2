#include "services/accounts/github_account.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace buildd::accounts {

absl::Status CheckGitHubId(const std::string& id) {
  if (id.empty()) return absl::OkStatus();
  const auto bad = [] {
    return absl::InvalidArgumentError(
        "githubId must be owner/repo as GitHub names them (e.g. my-org/my-repo)");
  };
  const size_t slash = id.find('/');
  if (slash == std::string::npos || id.find('/', slash + 1) != std::string::npos) return bad();
  const std::string owner = id.substr(0, slash);
  const std::string repo = id.substr(slash + 1);
  if (owner.empty() || owner.size() > 39 || owner.front() == '-') return bad();
  for (char c : owner) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return bad();
  }
  if (repo.empty() || repo.size() > 100 || repo == "." || repo == "..") return bad();
  for (char c : repo) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return bad();
    }
  }
  return absl::OkStatus();
}

absl::Status CheckGitHubToken(const std::string& token, const std::string& type) {
  if (type != "action") {
    return absl::InvalidArgumentError(
        absl::StrCat("githubToken is for action accounts, not ", type, " accounts"));
  }
  if (token.empty()) return absl::InvalidArgumentError("githubToken is empty");
  if (token.size() > 1024) return absl::InvalidArgumentError("githubToken is longer than 1024 bytes");
  for (char c : token) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return absl::InvalidArgumentError(
          "githubToken must be printable ASCII without spaces or control characters");
    }
  }
  return absl::OkStatus();
}

std::string GitHubTokenContext(const std::string& account_id) {
  return absl::StrCat("github-token:", account_id);
}

}  // namespace buildd::accounts
