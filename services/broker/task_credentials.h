#ifndef BUILDD_SERVICES_BROKER_TASK_CREDENTIALS_H_
#define BUILDD_SERVICES_BROKER_TASK_CREDENTIALS_H_

// A task's own credentials (Task.credentials): checked at the edge, taken
// out of the task before anything stores or returns it, sealed at rest
// under the broker's key (bound to the task's id), and opened only to build
// the Assign of one of the task's attempts. Stateless; thread-safe.

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "buildd/v1/common.pb.h"
#include "common/secret_box.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

using CredentialMap = std::map<std::string, std::string>;

// The variables a task may bring: the providers' keys and GIT_TOKEN.
inline constexpr const char* kTaskCredentialNames[] = {
    "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY", "GIT_TOKEN"};
// The bound of one value (an OAuth token is a few hundred bytes).
inline constexpr size_t kMaxCredentialBytes = 4096;

// InvalidArgument naming `credentials.<NAME>` for a name not listed above,
// an empty or oversized value, or one holding anything but printable ASCII
// (a newline would be a second line of git's credential protocol).
absl::Status ValidateTaskCredentials(const pb::Task& task);

// Moves the credentials out of `task` (which then has none).
CredentialMap TakeCredentials(pb::Task& task);

// The stored form of `credentials` for task `task_id`; "" when there are none.
std::string SealCredentials(const SecretBox& box, const std::string& task_id,
                            const CredentialMap& credentials);
// The credentials `sealed` holds (none for ""); DataLoss when it does not
// open for `task_id` under `box`.
absl::StatusOr<CredentialMap> OpenCredentials(const SecretBox& box, const std::string& task_id,
                                              const std::string& sealed);

// What an attempt's Assign carries: `account`'s (those the runner's account
// may give the task) with the task's own over them.
CredentialMap AssignCredentials(CredentialMap account, const CredentialMap& task);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_TASK_CREDENTIALS_H_
