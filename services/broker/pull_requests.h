#ifndef BUILDD_SERVICES_BROKER_PULL_REQUESTS_H_
#define BUILDD_SERVICES_BROKER_PULL_REQUESTS_H_

// Pull requests of tasks with `pullRequest` (Task.pull_request): once such
// a task completed with its work branch pushed, the broker opens
// `POST /repos/{owner}/{repo}/pulls` ({title, head, base, body, draft}) on
// the workspace's GitHub repository, with the GitHub token of an action
// account that may claim the workspace and whose githubId is that
// repository. The pull request's html_url becomes the artifacts' prUrl and
// a `pull_request` event (data: url, repo); a failure is a
// `pull_request_failed` event saying why (network errors and GitHub's 5xx
// retried with backoff first).
//
// The broker calls GitHub, not the runner: the token that may open pull
// requests is an admin's account setting that never has to reach a
// machine running agents' code (a task's GIT_TOKEN may be a push-only
// token and is forgotten once the task ends); the API URL (GitHub
// Enterprise), retries and events live in one place; and the pull request
// does not depend on an ephemeral runner surviving its task.
//
// Threads: OnEvents runs on the journal's thread and only posts; the rest
// on `pool`, backoff waits on `timers`. Thread-safe.

#include <atomic>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "absl/status/status.h"
#include "buildd/v1/common.pb.h"
#include "services/broker/action_dispatch.h"
#include "services/broker/broker_store.h"
#include "services/broker/github_client.h"
#include "services/broker/journal.h"

namespace buildd::broker {

// Checks a new task's pullRequest (title, body, base; it needs push).
absl::Status ValidatePullRequest(const pb::Task& task);

class PullRequests {
 public:
  struct Options {
    int max_attempts = 5;
    int first_backoff_ms = 1000;
    int max_backoff_ms = 60000;
  };

  PullRequests(BrokerStore& store, Journal& journal, GitHubClient& github,
               ActionDispatch::Targets targets, boost::asio::thread_pool& pool,
               boost::asio::io_context& timers, Options options);

  // What this replica committed (the journal's callback).
  void OnEvents(const std::vector<pb::Event>& events);
  void Stop() { stopped_ = true; }

 private:
  void Attempt(const std::string& task_id, int attempt);
  void Failed(const TaskRecord& task, const std::string& why);

  BrokerStore& store_;
  Journal& journal_;
  GitHubClient& github_;
  const ActionDispatch::Targets targets_;
  boost::asio::thread_pool& pool_;
  boost::asio::io_context& timers_;
  const Options options_;
  std::atomic<bool> stopped_{false};
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_PULL_REQUESTS_H_
