#ifndef BUILDD_TESTS_BROKER_MEMORY_BROKER_STORE_H_
#define BUILDD_TESTS_BROKER_MEMORY_BROKER_STORE_H_

// The broker's store in memory: the same contract as PgBrokerStore (see
// store_contract_test.cc), for the dispatcher's unit tests. One writer's
// transaction at a time: a second writer's Begin waits for the first's end.
// Writes can be made to fail. Thread-safe.

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/secret_box.h"
#include "services/broker/broker_store.h"

namespace buildd::broker {

// What a failing memory store throws.
class MemoryStoreError : public std::runtime_error {
 public:
  explicit MemoryStoreError(absl::Status status)
      : std::runtime_error(status.ToString()), status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

class MemoryBrokerStore final : public BrokerStore {
 public:
  explicit MemoryBrokerStore(SecretBox sessions) : sessions_(std::move(sessions)) {}

  // The next `count` writer calls that write (Write with something to
  // write, or a StoreTx write) throw `status`.
  void FailWrites(absl::Status status, int count = 1);

  absl::StatusOr<WorkspaceRecord> GetWorkspace(const std::string& id) override;
  absl::StatusOr<std::vector<WorkspaceRecord>> ListWorkspaces(
      const std::optional<std::set<std::string>>& only) override;
  absl::StatusOr<TaskRecord> GetTask(const std::string& id) override;
  absl::StatusOr<std::vector<TaskRecord>> ListTasks(
      const std::string& workspace_id, const std::string& state, int limit,
      const std::optional<std::set<std::string>>& only) override;
  absl::StatusOr<WorkerRecord> GetWorker(const std::string& id) override;
  absl::StatusOr<std::vector<WorkerRecord>> ListWorkers(
      const std::string& task_id, const std::string& workspace_id,
      const std::optional<std::set<std::string>>& only) override;
  absl::StatusOr<std::vector<pb::Event>> ReadEvents(int64_t after_id, const EventFilter& filter,
                                                    int limit, int64_t up_to_id) override;
  absl::StatusOr<int64_t> LastEventId() override;
  absl::StatusOr<bool> HasPendingWithKey(const std::string& workspace_id,
                                         const std::string& key) override;
  absl::StatusOr<int64_t> CountPending() override;
  absl::StatusOr<std::vector<QueueGroup>> Queue() override;
  absl::StatusOr<std::vector<PendingGroup>> PendingGroups(
      const std::string& workspace_id, const std::optional<std::set<std::string>>& only) override;
  absl::StatusOr<std::map<std::string, int>> QueuePositions(
      const std::vector<std::string>& task_ids) override;
  absl::StatusOr<std::string> KeyHolder(const TaskRecord& task) override;
  absl::StatusOr<double> CostToday(const std::string& account_id) override;
  absl::StatusOr<std::vector<pb::RunnerInfo>> OtherReplicasRunners(const std::string& broker_id,
                                                                   int64_t fresh_ms) override;
  absl::StatusOr<std::map<std::string, double>> CostsToday() override;
  absl::StatusOr<std::vector<pb::Message>> ListMessages(const std::string& worker_id) override;
  absl::StatusOr<pb::Attachment> GetAttachment(const std::string& message_id, int index) override;
  absl::StatusOr<std::string> MessageWorker(const std::string& message_id) override;
  absl::StatusOr<std::vector<pb::Comment>> ListComments(const std::string& task_id) override;
  absl::StatusOr<std::optional<AgentSession>> GetSession(const std::string& task_id,
                                                         bool with_data) override;
  SealedSession SealSession(const AgentSession& session) const override;
  std::string SealTaskCredentials(const std::string& task_id,
                                  const CredentialMap& credentials) const override;
  absl::StatusOr<CredentialMap> OpenTaskCredentials(const TaskRecord& task) const override;
  absl::StatusOr<std::unique_ptr<StoreWriter>> OpenWriter() override;
  // One replica only: its listener hears nothing.
  absl::StatusOr<std::unique_ptr<ReplicaListener>> Listen() override;
  absl::Status NotifyControl(const std::string& control) override;

  // The tables, as one value: a transaction works on a copy.
  struct Tables {
    int64_t clock = 0;  // orders rows by creation
    std::map<std::string, std::pair<int64_t, WorkspaceRecord>> workspaces;
    std::map<std::string, std::pair<int64_t, TaskRecord>> tasks;
    std::map<std::string, std::pair<int64_t, WorkerRecord>> workers;
    std::vector<pb::Event> events;
    int64_t last_event_id = 0;
    std::map<std::string, double> costs_today;  // by account
    std::map<std::string, SealedSession> sessions;
    std::vector<pb::Message> messages;  // with their attachments' data
    std::vector<pb::Comment> comments;
    std::set<std::string> deliveries;
    // Broker replicas and when each was last seen.
    std::map<std::string, absl::Time> brokers;
    std::map<std::string, std::string> broker_runners;  // BeatBroker's JSON
  };

 private:
  friend class MemoryStoreWriter;
  // Throws when a failure is due.
  void MaybeFail();

  const SecretBox sessions_;
  absl::Mutex writer_mu_;  // held from Begin to Commit/Rollback
  mutable absl::Mutex mu_;
  Tables tables_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace buildd::broker

#endif  // BUILDD_TESTS_BROKER_MEMORY_BROKER_STORE_H_
