#include "services/broker/task_validation.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_server.h"
#include "common/ids.h"
#include "common/status.h"
#include "common/text.h"
#include "services/broker/pull_requests.h"
#include "services/broker/task_credentials.h"

namespace buildd::broker {
namespace {

// Git's rules for a branch name (git check-ref-format), a little stricter:
// it becomes a path and a command argument on runners.
absl::Status CheckBranchName(const std::string& name, const char* field) {
  const auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", name, "\" is not a valid branch name: ", why));
  };
  if (name.empty()) return absl::OkStatus();
  if (name.size() > 200) return bad("longer than 200 characters");
  for (char c : name) {
    const bool ok = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '-' ||
                    c == '_' || c == '.' || c == '+';
    if (!ok) return bad("only letters, digits and / - _ . + are allowed");
  }
  if (name.front() == '-' || name.front() == '/' || name.front() == '.') {
    return bad("it must not start with - / or .");
  }
  if (name.back() == '/' || name.back() == '.' || absl::EndsWith(name, ".lock")) {
    return bad("it must not end with / . or .lock");
  }
  if (absl::StrContains(name, "..") || absl::StrContains(name, "//") ||
      absl::StrContains(name, "/.")) {
    return bad("it must not contain .. // or /.");
  }
  return absl::OkStatus();
}

// A repository URL or path git will be given as-is on runners.
absl::Status CheckRepoUrl(const std::string& url) {
  if (url.empty()) return absl::OkStatus();
  const auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("repoUrl ", why));
  };
  if (url.size() > 2000) return bad("is longer than 2000 characters");
  if (url.front() == '-') return bad("must not start with '-'");
  for (char c : url) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return bad("must not hold control characters");
  }
  // Credentials would be stored and shown with the workspace: runners
  // authenticate with their own SSH keys or credential helpers instead.
  const size_t scheme = url.find("://");
  if (scheme != std::string::npos) {
    const std::string authority = url.substr(scheme + 3, url.find('/', scheme + 3) - scheme - 3);
    const size_t at = authority.rfind('@');
    if (at != std::string::npos) {
      const std::string userinfo = authority.substr(0, at);
      const std::string kind = absl::AsciiStrToLower(url.substr(0, scheme));
      if (userinfo.find(':') != std::string::npos || kind == "http" || kind == "https") {
        return bad("must not embed credentials (user:password@ or token@): give the runners "
                   "their own git credentials");
      }
    }
  }
  return absl::OkStatus();
}

bool IsCommitSha(const std::string& sha) {
  if (sha.size() < 7 || sha.size() > 64) return false;
  return std::all_of(sha.begin(), sha.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
  });
}

absl::Status CheckNetwork(const std::string& network) {
  if (network.empty() || network == "none") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("network must be empty (on) or none, not \"", network.substr(0, 40), "\""));
}

}  // namespace

absl::Status CheckRequestSize(const google::protobuf::Message& request) {
  if (request.ByteSizeLong() <= static_cast<size_t>(kMaxRequestBytes)) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("the request is larger than ", kMaxRequestBytes, " bytes"));
}

absl::Status ValidateNewTask(pb::Task& task) {
  if (!task.description().empty()) {
    if (!task.prompt().empty() && task.prompt() != task.description()) {
      return absl::InvalidArgumentError(
          "description is the prompt: give prompt or description (or the same text in both)");
    }
    *task.mutable_prompt() = std::move(*task.mutable_description());
    task.clear_description();
  }
  BUILDD_RETURN_IF_ERROR(CheckNetwork(task.network()));
  BUILDD_RETURN_IF_ERROR(CheckUuid(task.workspace_id(), "workspaceId"));
  BUILDD_RETURN_IF_ERROR(ValidateTaskCredentials(task));
  BUILDD_RETURN_IF_ERROR(ValidatePullRequest(task));
  if (!task.kind().empty() && task.kind() != "revert" && task.kind() != "integration") {
    return absl::InvalidArgumentError(
        absl::StrCat("kind must be empty, revert or integration, not \"", task.kind(), "\""));
  }
  BUILDD_RETURN_IF_ERROR(CheckBranchName(task.base_branch(), "baseBranch"));
  BUILDD_RETURN_IF_ERROR(CheckBranchName(task.work_branch(), "workBranch"));
  if (task.concurrency_key().size() > 200) {
    return absl::InvalidArgumentError("concurrencyKey is longer than 200 characters");
  }
  for (char c : task.concurrency_key()) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("concurrencyKey must not contain control characters");
    }
  }
  if (!task.resume_from().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(task.resume_from(), "resumeFrom"));
  if (!task.session_id().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(task.session_id(), "sessionId"));
  if (task.kind() == "revert") {
    task.set_revert_commit(absl::AsciiStrToLower(task.revert_commit()));
    if (!IsCommitSha(task.revert_commit())) {
      return absl::InvalidArgumentError("revertCommit must be a commit sha (7 to 64 hex digits)");
    }
    if (task.work_branch().empty()) {
      return absl::InvalidArgumentError("workBranch is required: the branch to revert on");
    }
    // Every runner can revert: git is all it takes.
    if (task.provider().empty()) task.set_provider("command");
    if (task.provider() != "command") {
      return absl::InvalidArgumentError("provider must be empty or command for kind revert");
    }
    if (task.title().empty()) task.set_title(absl::StrCat("Revert ", task.revert_commit()));
    task.set_auto_commit(true);
  } else if (!task.revert_commit().empty()) {
    return absl::InvalidArgumentError("revertCommit is only for kind revert");
  }
  // JSON and gRPC clients may send enum numbers the proto does not name.
  if (!pb::Task::RunnerPreference_IsValid(task.runner_preference())) {
    return absl::InvalidArgumentError("runnerPreference must be any, user, service or action");
  }
  if (task.provider().empty()) task.set_provider(task.command().empty() ? "claude" : "command");
  if (task.provider() != "command" && task.provider() != "claude" && task.provider() != "codex") {
    return absl::InvalidArgumentError(
        absl::StrCat("provider must be command, claude or codex, not \"", task.provider(), "\""));
  }
  if (task.kind() == "integration") {
    if (task.provider() == "command") {
      return absl::InvalidArgumentError("provider must be claude or codex for kind integration");
    }
    if (task.work_branch().empty()) {
      return absl::InvalidArgumentError("workBranch is required: the branch to install on");
    }
  }
  if (task.provider() == "command" && task.command().empty() && task.kind() != "revert") {
    return absl::InvalidArgumentError("command is required when provider is command");
  }
  if (task.provider() != "command" && task.prompt().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is required when provider is ", task.provider()));
  }
  // Both reach the agent or shell as one argument, which the kernel caps.
  constexpr size_t kMaxArgument = 100 * 1024;
  if (task.prompt().size() > kMaxArgument) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is longer than ", kMaxArgument, " bytes"));
  }
  if (task.command().size() > kMaxArgument) {
    return absl::InvalidArgumentError(absl::StrCat("command is longer than ", kMaxArgument, " bytes"));
  }
  BUILDD_RETURN_IF_ERROR(CheckText("title", task.title()));
  BUILDD_RETURN_IF_ERROR(CheckText("prompt", task.prompt(), TextKind::kMultiline));
  BUILDD_RETURN_IF_ERROR(CheckText("command", task.command(), TextKind::kMultiline));
  BUILDD_RETURN_IF_ERROR(CheckStrings("providerOptions", task.provider_options()));
  // One workspace's tasks may go first on a shared runner, not starve the
  // others; and a task that kills its runner does so a bounded number of times.
  if (task.priority() < kMinPriority || task.priority() > kMaxPriority) {
    return absl::InvalidArgumentError(absl::StrCat("priority must be within ", kMinPriority, "…",
                                                   kMaxPriority, ", not ", task.priority()));
  }
  if (task.max_attempts() == 0) task.set_max_attempts(kDefaultMaxAttempts);
  if (task.max_attempts() < 1 || task.max_attempts() > kMaxAttempts) {
    return absl::InvalidArgumentError(absl::StrCat("maxAttempts must be within 1…", kMaxAttempts,
                                                   " (0 means ", kDefaultMaxAttempts, "), not ",
                                                   task.max_attempts()));
  }
  if (task.timeout_seconds() < 0) return absl::InvalidArgumentError("timeoutSeconds must not be negative");
  if (task.title().size() > 500) return absl::InvalidArgumentError("title is longer than 500 characters");
  if (task.title().empty()) {
    const std::string& source = task.prompt().empty() ? task.command() : task.prompt();
    task.set_title(source.substr(0, 80));
  }
  for (const std::string& label : task.required_labels()) {
    if (label.empty()) return absl::InvalidArgumentError("requiredLabels must not hold empty labels");
    BUILDD_RETURN_IF_ERROR(CheckText("requiredLabels", label));
  }
  return absl::OkStatus();
}

absl::Status ValidateNewWorkspace(const pb::CreateWorkspaceRequest& req) {
  if (req.name().empty()) return absl::InvalidArgumentError("name is required");
  if (req.name().size() > 200) return absl::InvalidArgumentError("name is longer than 200 characters");
  BUILDD_RETURN_IF_ERROR(CheckText("name", req.name()));
  BUILDD_RETURN_IF_ERROR(CheckRepoUrl(req.repo_url()));
  BUILDD_RETURN_IF_ERROR(CheckBranchName(req.default_branch(), "defaultBranch"));
  return CheckNetwork(req.network());
}

absl::Status ValidateControlWorker(const pb::ControlWorkerRequest& req) {
  BUILDD_RETURN_IF_ERROR(CheckUuid(req.id(), "id"));
  if (req.action() == pb::ControlWorkerRequest::action_unspecified ||
      !pb::ControlWorkerRequest::Action_IsValid(req.action())) {
    return absl::InvalidArgumentError("action is required: pause, resume, cancel or input");
  }
  if (req.text().size() > 100 * 1024) {
    return absl::InvalidArgumentError("text is longer than 102400 bytes");
  }
  return CheckText("text", req.text(), TextKind::kMultiline);
}

absl::Status ValidateSubscribe(const pb::SubscribeRequest& req) {
  BUILDD_RETURN_IF_ERROR(CheckBranchName(req.branch(), "branch"));
  for (const auto& [id, field] : {std::pair{req.workspace_id(), "workspaceId"},
                                  std::pair{req.task_id(), "taskId"},
                                  std::pair{req.worker_id(), "workerId"}}) {
    if (!id.empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(id, field));
  }
  if (req.after_id() < 0) return absl::InvalidArgumentError("lastEventId must not be negative");
  return absl::OkStatus();
}

TaskRecord NewTaskRecord(pb::Task task, const std::string& account_id,
                         const std::string& retry_of) {
  // Also the broker's: the artifacts of earlier runs.
  task.clear_artifacts();
  // Keep only what the client describes; the broker owns the rest.
  for (void (pb::Task::*clear)() : {&pb::Task::clear_id, &pb::Task::clear_state, &pb::Task::clear_attempts,
                      &pb::Task::clear_worker_id, &pb::Task::clear_created_by,
                      &pb::Task::clear_created_at, &pb::Task::clear_updated_at,
                      &pb::Task::clear_exit_code, &pb::Task::clear_error,
                      &pb::Task::clear_queue_position, &pb::Task::clear_waiting_reason,
                      &pb::Task::clear_waiting_detail}) {
    (task.*clear)();
  }
  task.set_retry_of(retry_of);
  return TaskRecord::FromSpec(NewUuid(), std::move(task), account_id);
}

pb::Task RetrySpec(const TaskRecord& ended) {
  pb::Task spec = *ended.spec;
  if (spec.work_branch() == TaskRecord::DefaultWorkBranch(ended.id)) spec.clear_work_branch();
  spec.clear_credentials();
  return spec;
}

}  // namespace buildd::broker
