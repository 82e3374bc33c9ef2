#include "bench/task_clients.h"

#include <atomic>
#include <vector>

#include "absl/strings/str_cat.h"

namespace buildd::bench {

CompletionWatch::CompletionWatch(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& key, const std::string& workspace_id,
                                 int64_t after_id) {
  stub_ = pb::BrokerService::NewStub(channel);
  Auth(ctx_, key);
  pb::SubscribeRequest req;
  req.set_workspace_id(workspace_id);
  req.set_after_id(after_id);
  reader_ = stub_->Subscribe(&ctx_, req);
  thread_ = std::thread([this] { Read(); });
}

CompletionWatch::~CompletionWatch() {
  ctx_.TryCancel();
  thread_.join();
  reader_->Finish();
}

void CompletionWatch::Read() {
  pb::Event e;
  while (reader_->Read(&e)) {
    const auto now = Clock::now();
    absl::MutexLock lock(&mu_);
    last_id_ = e.id();
    if (e.type() == "started") started_.emplace(e.task_id(), now);
    if (e.type() == "output") first_output_.emplace(e.task_id(), now);  // the first one only
    if (e.type() == "completed" || e.type() == "error") {
      ++ended_;
      if (e.type() == "error") ++errors_;
      last_ended_ = now;
    }
  }
}

std::optional<Clock::time_point> CompletionWatch::WaitFor(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return ended_ >= n; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) return std::nullopt;
  return last_ended_;
}

int CompletionWatch::ended() const {
  absl::MutexLock lock(&mu_);
  return ended_;
}

int CompletionWatch::errors() const {
  absl::MutexLock lock(&mu_);
  return errors_;
}

int64_t CompletionWatch::last_id() const {
  absl::MutexLock lock(&mu_);
  return last_id_;
}

std::map<std::string, std::pair<Clock::time_point, Clock::time_point>>
CompletionWatch::StartToOutput() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> out;
  for (const auto& [task, at] : started_) {
    auto it = first_output_.find(task);
    if (it != first_output_.end()) out[task] = {at, it->second};
  }
  return out;
}

CreatedTasks CreateTasks(const std::shared_ptr<grpc::Channel>& channel, const std::string& key,
                         const std::string& workspace_id, int total, int creators,
                         const std::string& command) {
  CreatedTasks result;
  absl::Mutex mu;
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  result.first = Clock::now();
  for (int c = 0; c < creators; ++c) {
    threads.emplace_back([&] {
      auto stub = pb::BrokerService::NewStub(channel);
      while (next++ < total) {
        grpc::ClientContext ctx;
        Auth(ctx, key);
        pb::CreateTaskRequest req;
        req.mutable_task()->set_workspace_id(workspace_id);
        req.mutable_task()->set_provider("command");
        req.mutable_task()->set_command(command);
        pb::Task task;
        const auto start = Clock::now();
        const grpc::Status st = stub->CreateTask(&ctx, req, &task);
        const auto ret = Clock::now();
        absl::MutexLock lock(&mu);
        if (!st.ok()) {
          if (result.failed++ == 0) result.first_error = st.error_message();
          continue;
        }
        result.calls[task.id()] = {start, ret};
      }
    });
  }
  for (auto& t : threads) t.join();
  return result;
}

absl::StatusOr<std::string> CreateTask(const std::shared_ptr<grpc::Channel>& channel,
                                       const std::string& key, const std::string& workspace_id,
                                       const std::string& command) {
  CreatedTasks created = CreateTasks(channel, key, workspace_id, 1, 1, command);
  if (created.calls.empty()) return absl::UnavailableError(absl::StrCat("CreateTask: ", created.first_error));
  return created.calls.begin()->first;
}

}  // namespace buildd::bench
