#ifndef BUILDD_SERVICES_ACCOUNTS_GITHUB_ACCOUNT_H_
#define BUILDD_SERVICES_ACCOUNTS_GITHUB_ACCOUNT_H_

// The GitHub side of action accounts: githubId names the repository their
// workflow runs in ("owner/repo"), and their GitHub token (sealed at rest,
// never returned) lets the broker send it repository_dispatch events and
// open pull requests there.

#include <string>

#include "absl/status/status.h"

namespace buildd::accounts {

// InvalidArgument naming githubId unless `id` is empty or "owner/repo" as
// GitHub spells them (owner: letters, digits and '-', at most 39; repo:
// letters, digits, '-', '_' and '.', at most 100, not "." or "..").
absl::Status CheckGitHubId(const std::string& id);

// InvalidArgument naming githubToken for a token that is empty, longer than
// 1024 bytes or not printable ASCII without spaces; the message never
// holds the token. `type` is the account's: only action accounts hold one.
absl::Status CheckGitHubToken(const std::string& token, const std::string& type);

// What a GitHub token is sealed under, besides the master key.
std::string GitHubTokenContext(const std::string& account_id);

}  // namespace buildd::accounts

#endif  // BUILDD_SERVICES_ACCOUNTS_GITHUB_ACCOUNT_H_
