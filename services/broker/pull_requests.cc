#include "services/broker/pull_requests.h"

#include <google/protobuf/util/json_util.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/text.h"
#include "services/broker/conversions.h"

namespace buildd::broker {
namespace {

void Put(pb::Event& e, const std::string& key, const std::string& value) {
  (*e.mutable_data()->mutable_fields())[key].set_string_value(value);
}

bool Pushed(const pb::Event& e) {
  auto it = e.data().fields().find("pushed");
  return it != e.data().fields().end() && it->second.bool_value();
}

}  // namespace

absl::Status ValidatePullRequest(const pb::Task& task) {
  if (!task.has_pull_request()) return absl::OkStatus();
  const pb::PullRequest& pr = task.pull_request();
  if (!task.push()) {
    return absl::InvalidArgumentError(
        "pullRequest needs push: true (the pull request is of the pushed work branch)");
  }
  if (pr.title().size() > 256) return absl::InvalidArgumentError("pullRequest.title is longer than 256 characters");
  BUILDD_RETURN_IF_ERROR(CheckText("pullRequest.title", pr.title()));
  if (pr.body().size() > 65536) return absl::InvalidArgumentError("pullRequest.body is longer than 65536 bytes");
  BUILDD_RETURN_IF_ERROR(CheckText("pullRequest.body", pr.body(), TextKind::kMultiline));
  if (pr.base().size() > 200) return absl::InvalidArgumentError("pullRequest.base is longer than 200 characters");
  for (char c : pr.base()) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '/' || c == '-' || c == '_' || c == '.' || c == '+';
    if (!ok) {
      return absl::InvalidArgumentError(
          "pullRequest.base is not a valid branch name: only letters, digits and / - _ . + are allowed");
    }
  }
  return absl::OkStatus();
}

PullRequests::PullRequests(BrokerStore& store, Journal& journal, GitHubClient& github,
                           ActionDispatch::Targets targets, boost::asio::thread_pool& pool,
                           boost::asio::io_context& timers, Options options)
    : store_(store),
      journal_(journal),
      github_(github),
      targets_(std::move(targets)),
      pool_(pool),
      timers_(timers),
      options_(options) {}

void PullRequests::OnEvents(const std::vector<pb::Event>& events) {
  for (const pb::Event& e : events) {
    if (e.type() != "completed" || e.task_id().empty() || !Pushed(e)) continue;
    boost::asio::post(pool_, [this, task_id = e.task_id()] { Attempt(task_id, 1); });
  }
}

void PullRequests::Failed(const TaskRecord& task, const std::string& why) {
  pb::Event e = EventOf("pull_request_failed", task.id, "", task.workspace_id);
  e.set_text(why);
  journal_.Submit([e](JournalTx& tx) {
    tx.Append(e);
    return absl::OkStatus();
  });
  Log()->warn("task={} no pull request: {}", task.id, why);
}

void PullRequests::Attempt(const std::string& task_id, int attempt) {
  if (stopped_) return;
  absl::StatusOr<TaskRecord> task = store_.GetTask(task_id);
  if (!task.ok() || task->spec == nullptr || !task->spec->has_pull_request()) return;
  const pb::Task spec = TaskToProto(*task);
  if (!spec.artifacts().pushed() || !spec.artifacts().pr_url().empty()) return;
  absl::StatusOr<WorkspaceRecord> ws = store_.GetWorkspace(task->workspace_id);
  if (!ws.ok()) return Failed(*task, std::string(ws.status().message()));
  absl::StatusOr<std::string> repo = GitHubRepoOf(ws->repo_url);
  if (!repo.ok()) {
    return Failed(*task, absl::StrCat("the workspace's repoUrl names no GitHub repository: ",
                                      repo.status().message()));
  }

  absl::Status status;
  absl::StatusOr<std::vector<ActionTarget>> targets = targets_(task->workspace_id);
  if (!targets.ok()) {
    status = targets.status();
  } else {
    auto target = std::find_if(targets->begin(), targets->end(),
                               [&](const ActionTarget& t) { return t.repo == *repo; });
    if (target == targets->end()) {
      return Failed(*task, absl::StrCat("no action account with githubId ", *repo,
                                        " and a githubToken may claim this workspace's tasks"));
    }
    const pb::PullRequest& asked = spec.pull_request();
    NewPullRequest pull;
    pull.title = asked.title().empty() ? spec.title() : asked.title();
    pull.head = spec.artifacts().branch().empty() ? spec.work_branch() : spec.artifacts().branch();
    pull.base = !asked.base().empty()         ? asked.base()
                : !spec.base_branch().empty() ? spec.base_branch()
                                              : ws->default_branch;
    pull.body = asked.body();
    pull.draft = asked.draft();
    absl::StatusOr<std::string> url = github_.CreatePullRequest(target->token, *repo, pull);
    if (url.ok()) {
      pb::Artifacts artifacts = spec.artifacts();
      artifacts.set_pr_url(*url);
      std::string artifacts_json;
      (void)google::protobuf::util::MessageToJsonString(artifacts, &artifacts_json);
      pb::Event e = EventOf("pull_request", task->id, "", task->workspace_id);
      e.set_text(*url);
      Put(e, "url", *url);
      Put(e, "repo", *repo);
      Put(e, "head", pull.head);
      Put(e, "base", pull.base);
      journal_.Submit([id = task->id, artifacts_json, e](JournalTx& tx) {
        tx.store().SetArtifacts(id, artifacts_json);
        tx.Append(e);
        return absl::OkStatus();
      });
      Log()->info("task={} opened {}", task->id, *url);
      return;
    }
    status = url.status();
  }
  if (!absl::IsUnavailable(status) || attempt >= options_.max_attempts) {
    return Failed(*task, std::string(status.message()));
  }
  const int wait = std::min(options_.max_backoff_ms, options_.first_backoff_ms << std::min(attempt - 1, 20));
  auto timer = std::make_shared<boost::asio::steady_timer>(timers_, std::chrono::milliseconds(wait));
  timer->async_wait([this, timer, task_id, attempt](boost::system::error_code ec) {
    if (ec || stopped_) return;
    boost::asio::post(pool_, [this, task_id, attempt] { Attempt(task_id, attempt + 1); });
  });
}

}  // namespace buildd::broker
