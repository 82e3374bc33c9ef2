#include "services/broker/task_credentials.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "buildd/v1/runner.pb.h"

namespace buildd::broker {
namespace {

std::string Context(const std::string& task_id) { return absl::StrCat("task-credentials:", task_id); }

bool Known(const std::string& name) {
  return std::any_of(std::begin(kTaskCredentialNames), std::end(kTaskCredentialNames),
                     [&](const char* known) { return name == known; });
}

}  // namespace

absl::Status ValidateTaskCredentials(const pb::Task& task) {
  for (const auto& [name, value] : task.credentials()) {
    // Never the value in a message: it is a secret.
    const std::string field =
        absl::StrCat("credentials.", name.size() <= 40 && Known(name) ? name : "<name>");
    if (!Known(name)) {
      std::string shown = name.substr(0, 40);
      for (char& c : shown) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "credentials: \"", shown, "\" is not a credential a task may bring (only ",
          absl::StrJoin(std::begin(kTaskCredentialNames), std::end(kTaskCredentialNames), ", "),
          ")"));
    }
    if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
    if (value.size() > kMaxCredentialBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " is longer than ", kMaxCredentialBytes, " bytes"));
    }
    for (char c : value) {
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, " must be printable ASCII without spaces or control characters"));
      }
    }
  }
  return absl::OkStatus();
}

CredentialMap TakeCredentials(pb::Task& task) {
  CredentialMap out(task.credentials().begin(), task.credentials().end());
  task.clear_credentials();
  return out;
}

std::string SealCredentials(const SecretBox& box, const std::string& task_id,
                            const CredentialMap& credentials) {
  if (credentials.empty()) return "";
  pb::Credentials message;
  message.mutable_env()->insert(credentials.begin(), credentials.end());
  return box.Seal(message.SerializeAsString(), Context(task_id));
}

absl::StatusOr<CredentialMap> OpenCredentials(const SecretBox& box, const std::string& task_id,
                                              const std::string& sealed) {
  if (sealed.empty()) return CredentialMap{};
  absl::StatusOr<std::string> plain = box.Open(sealed, Context(task_id));
  if (!plain.ok()) return plain.status();
  pb::Credentials message;
  if (!message.ParseFromString(*plain)) {
    return absl::DataLossError(absl::StrCat("the credentials of task ", task_id, " do not parse"));
  }
  return CredentialMap(message.env().begin(), message.env().end());
}

CredentialMap AssignCredentials(CredentialMap account, const CredentialMap& task) {
  for (const auto& [name, value] : task) account[name] = value;
  return account;
}

}  // namespace buildd::broker
