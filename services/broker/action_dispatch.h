#ifndef BUILDD_SERVICES_BROKER_ACTION_DISPATCH_H_
#define BUILDD_SERVICES_BROKER_ACTION_DISPATCH_H_

// Wakes GitHub Actions for tasks that want them (seed 001): a task with
// runnerPreference "action" that became pending (created, requeued or
// rejected) on this replica and that no runner took in the same commit gets
// a repository_dispatch event (event_type "buildd-task", client_payload
// {"task_id"}) sent to the repository of the first action account that may
// claim its workspace (AccountService.ActionTargets). The workflow's
// `buildd-runner --once --task=<id>` then takes exactly that task.
//
// Network failures and GitHub's 5xx and 429 are retried with exponential
// backoff, up to max_attempts. Every attempt is a task event:
//   dispatch_retrying  an attempt failed, another one follows (text: why,
//                      data: repo, attempt, status, retryInMs);
//   dispatched         GitHub took the event (data: repo, attempt);
//   dispatch_failed    no more attempts, or an error not worth retrying
//                      (401, 404, 422…; data: repo, attempt, status).
// A task that stopped waiting meanwhile (taken, canceled) is not retried.
//
// Threads: OnEvents runs on the journal's thread and only posts; reads, the
// HTTP calls and the event writes run on `pool`; backoff waits on `timers`.
// Thread-safe.

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "absl/status/statusor.h"
#include "buildd/v1/common.pb.h"
#include "services/broker/accounts_client.h"
#include "services/broker/broker_store.h"
#include "services/broker/github_client.h"
#include "services/broker/journal.h"

namespace buildd::broker {

class ActionDispatch {
 public:
  struct Options {
    int max_attempts = 5;
    // The wait after the first failed attempt; doubled after each one.
    int first_backoff_ms = 1000;
    int max_backoff_ms = 60000;
    std::string event_type = "buildd-task";
  };
  using Targets =
      std::function<absl::StatusOr<std::vector<ActionTarget>>(const std::string& workspace_id)>;

  ActionDispatch(BrokerStore& store, Journal& journal, GitHubClient& github, Targets targets,
                 boost::asio::thread_pool& pool, boost::asio::io_context& timers, Options options);

  // What this replica committed (the journal's callback).
  void OnEvents(const std::vector<pb::Event>& events);
  // No new attempts from now on. REQUIRES: before the journal stops.
  void Stop() { stopped_ = true; }

 private:
  // Sends attempt `attempt` (1-based) for the task, when it still waits.
  void Attempt(const std::string& task_id, int attempt);
  void Record(const pb::Event& event);

  BrokerStore& store_;
  Journal& journal_;
  GitHubClient& github_;
  const Targets targets_;
  boost::asio::thread_pool& pool_;
  boost::asio::io_context& timers_;
  const Options options_;
  std::atomic<bool> stopped_{false};
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_ACTION_DISPATCH_H_
