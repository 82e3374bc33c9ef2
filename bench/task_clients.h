#ifndef BUILDD_BENCH_TASK_CLIENTS_H_
#define BUILDD_BENCH_TASK_CLIENTS_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "buildd/v1/broker.grpc.pb.h"

namespace buildd::bench {

namespace pb = ::buildd::v1;

// Follows a workspace's events on a BrokerService.Subscribe stream and
// counts the tasks that ended (`completed` or `error`). Thread-safe; the
// destructor cancels the stream.
class CompletionWatch {
 public:
  CompletionWatch(const std::shared_ptr<grpc::Channel>& channel, const std::string& key,
                  const std::string& workspace_id, int64_t after_id);
  ~CompletionWatch();

  // Waits for `n` ended tasks; returns when the n-th ended event arrived, or
  // nothing on timeout.
  std::optional<Clock::time_point> WaitFor(int n, absl::Duration timeout);
  int ended() const;
  int errors() const;
  int64_t last_id() const;
  // When this client received each task's `started` and first `output`.
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> StartToOutput() const;

 private:
  void Read();

  std::unique_ptr<pb::BrokerService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<pb::Event>> reader_;
  mutable absl::Mutex mu_;
  std::map<std::string, Clock::time_point> started_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Clock::time_point> first_output_ ABSL_GUARDED_BY(mu_);
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
  int errors_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point last_ended_ ABSL_GUARDED_BY(mu_);
  int64_t last_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

struct CreatedTasks {
  // Per task id: when its CreateTask call was issued and when it returned.
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> calls;
  Clock::time_point first;  // before the first call was issued
  int failed = 0;
  std::string first_error;
};

// Creates `total` `command` tasks in `workspace_id` from `creators` threads,
// each issuing its next CreateTask once the last one returned.
CreatedTasks CreateTasks(const std::shared_ptr<grpc::Channel>& channel, const std::string& key,
                         const std::string& workspace_id, int total, int creators,
                         const std::string& command);

// One task, created now; returns its id or an error.
absl::StatusOr<std::string> CreateTask(const std::shared_ptr<grpc::Channel>& channel,
                                       const std::string& key, const std::string& workspace_id,
                                       const std::string& command);

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_TASK_CLIENTS_H_
