#ifndef BUILDD_SERVICES_BROKER_GITHUB_WEBHOOK_H_
#define BUILDD_SERVICES_BROKER_GITHUB_WEBHOOK_H_

// GitHub's webhook deliveries (POST /webhooks/github on the gateway, passed
// on as BrokerService.DeliverGitHubWebhook): checked against the webhook
// secret, then turned into tasks.
//  - `issues` labeled `buildd`: a task with the issue as its prompt;
//  - `issue_comment` created with a body `/buildd <prompt>` (on an issue or
//    a pull request) by the repository's owner, a member or a collaborator:
//    a task with that prompt;
//  - `pull_request_review_comment` created, or `pull_request_review`
//    submitted with a body, on a pull request a task opened (its prUrl), by
//    an owner, member or collaborator: a follow-up task that resumes that
//    task (resumeFrom), with the comment as its prompt.
// The task goes to the oldest workspace whose repoUrl is the delivery's
// repository, created by the action account whose githubId it is (the one
// a follow-up resumes: the earlier task's account). Anything else is
// answered and ignored, saying why. Thread-safe.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "services/broker/action_dispatch.h"
#include "services/broker/broker_store.h"

namespace buildd::broker {

class GitHubWebhook {
 public:
  // `secret` empty: every delivery is refused.
  GitHubWebhook(std::string secret, BrokerStore& store, ActionDispatch::Targets targets);

  // OK when `signature` is "sha256=" and the hex HMAC-SHA256 of `body` under
  // the secret (compared in constant time); Unauthenticated otherwise.
  absl::Status Verify(const std::string& signature, const std::string& body) const;

  struct Outcome {
    std::optional<TaskRecord> task;  // to create
    std::string why;                 // "created", or why there is none
  };
  // The task a verified delivery asks for (created with its delivery id:
  // Dispatcher::CreateTask). InvalidArgument for a body that is not the
  // documented JSON.
  absl::StatusOr<Outcome> TaskFor(const std::string& event, const std::string& body);

 private:
  const std::string secret_;
  BrokerStore& store_;
  const ActionDispatch::Targets targets_;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_GITHUB_WEBHOOK_H_
