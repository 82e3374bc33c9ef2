#include "services/broker/action_dispatch.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "services/broker/conversions.h"

namespace buildd::broker {
namespace {

void Put(pb::Event& e, const std::string& key, const std::string& value) {
  (*e.mutable_data()->mutable_fields())[key].set_string_value(value);
}

void Put(pb::Event& e, const std::string& key, double value) {
  (*e.mutable_data()->mutable_fields())[key].set_number_value(value);
}

// The HTTP status a failed call stands for, 0 when none came.
int HttpStatusOf(const absl::Status& status) {
  const std::string message(status.message());
  const size_t at = message.find("GitHub answered ");
  if (at == std::string::npos) return 0;
  return std::atoi(std::string(message.substr(at + 16, 3)).c_str());
}

}  // namespace

ActionDispatch::ActionDispatch(BrokerStore& store, Journal& journal, GitHubClient& github,
                               Targets targets, boost::asio::thread_pool& pool,
                               boost::asio::io_context& timers, Options options)
    : store_(store),
      journal_(journal),
      github_(github),
      targets_(std::move(targets)),
      pool_(pool),
      timers_(timers),
      options_(std::move(options)) {}

void ActionDispatch::OnEvents(const std::vector<pb::Event>& events) {
  // A task created and assigned in one commit needs no workflow.
  std::set<std::string> assigned;
  for (const pb::Event& e : events) {
    if (e.type() == "assigned") assigned.insert(e.task_id());
  }
  std::set<std::string> queued;
  for (const pb::Event& e : events) {
    if ((e.type() == "created" || e.type() == "requeued" || e.type() == "rejected") &&
        !e.task_id().empty() && assigned.count(e.task_id()) == 0) {
      queued.insert(e.task_id());
    }
  }
  for (const std::string& task_id : queued) {
    boost::asio::post(pool_, [this, task_id] { Attempt(task_id, 1); });
  }
}

void ActionDispatch::Record(const pb::Event& event) {
  journal_.Submit(
      [event](JournalTx& tx) {
        tx.Append(event);
        return absl::OkStatus();
      },
      [task = event.task_id()](absl::Status status) {
        if (!status.ok()) {
          Log()->warn("task={} the dispatch event was not stored: {}", task, status.message());
        }
      });
}

void ActionDispatch::Attempt(const std::string& task_id, int attempt) {
  if (stopped_) return;
  absl::StatusOr<TaskRecord> task = store_.GetTask(task_id);
  if (!task.ok()) {
    Log()->warn("task={} cannot be read for a dispatch: {}", task_id, task.status().message());
    return;
  }
  // Only a task that still waits for an action runner.
  if (task->runner_preference != "action" || task->state != "pending") return;

  const auto event = [&](const std::string& type) {
    return EventOf(type, task->id, "", task->workspace_id);
  };
  absl::StatusOr<std::vector<ActionTarget>> targets = targets_(task->workspace_id);
  if (!targets.ok() || targets->empty()) {
    const bool retry = !targets.ok() && absl::IsUnavailable(targets.status()) &&
                       attempt < options_.max_attempts;
    pb::Event e = event(retry ? "dispatch_retrying" : "dispatch_failed");
    e.set_text(targets.ok()
                   ? "no action account with a githubId and a githubToken may claim this "
                     "workspace's tasks: nothing to dispatch to"
                   : absl::StrCat("the action accounts cannot be read: ", targets.status().message()));
    Put(e, "attempt", attempt);
    Record(e);
    if (!retry) return;
  }
  absl::Status sent = absl::OkStatus();
  std::string repo;
  if (targets.ok() && !targets->empty()) {
    // The oldest account's repository: one workflow run per queued task.
    const ActionTarget& target = targets->front();
    repo = target.repo;
    google::protobuf::Struct payload;
    (*payload.mutable_fields())["task_id"].set_string_value(task->id);
    (*payload.mutable_fields())["workspace_id"].set_string_value(task->workspace_id);
    sent = github_.CreateDispatch(target.token, target.repo, options_.event_type, payload);
    if (sent.ok()) {
      pb::Event e = event("dispatched");
      e.set_text(absl::StrCat("repository_dispatch ", options_.event_type, " sent to ", repo,
                              " (attempt ", attempt, ")"));
      Put(e, "repo", repo);
      Put(e, "attempt", attempt);
      Record(e);
      Log()->info("task={} dispatched to {} (attempt {})", task->id, repo, attempt);
      return;
    }
    const bool retry = absl::IsUnavailable(sent) && attempt < options_.max_attempts;
    pb::Event e = event(retry ? "dispatch_retrying" : "dispatch_failed");
    e.set_text(std::string(sent.message()));
    Put(e, "repo", repo);
    Put(e, "attempt", attempt);
    Put(e, "status", HttpStatusOf(sent));
    if (!retry) {
      Record(e);
      Log()->warn("task={} dispatch to {} failed: {}", task->id, repo, sent.message());
      return;
    }
    const int wait = std::min(options_.max_backoff_ms,
                              options_.first_backoff_ms << std::min(attempt - 1, 20));
    Put(e, "retryInMs", wait);
    Record(e);
  }
  const int wait =
      std::min(options_.max_backoff_ms, options_.first_backoff_ms << std::min(attempt - 1, 20));
  auto timer = std::make_shared<boost::asio::steady_timer>(timers_, std::chrono::milliseconds(wait));
  timer->async_wait([this, timer, task_id, attempt](boost::system::error_code ec) {
    if (ec || stopped_) return;
    boost::asio::post(pool_, [this, task_id, attempt] { Attempt(task_id, attempt + 1); });
  });
}

}  // namespace buildd::broker
