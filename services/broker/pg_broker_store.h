#ifndef BUILDD_SERVICES_BROKER_PG_BROKER_STORE_H_
#define BUILDD_SERVICES_BROKER_PG_BROKER_STORE_H_

// The broker's store on PostgreSQL; it owns every SQL statement of the
// broker. Reads take a pooled SOCI session; the writer has its own libpq
// connection with its statements prepared once.

#include <soci/soci.h>

#include <atomic>
#include <memory>

#include "common/db.h"
#include "common/secret_box.h"
#include "services/broker/broker_store.h"

namespace buildd::broker {

class PgBrokerStore final : public BrokerStore {
 public:
  // `sessions` seals session transcripts and tasks' credentials at rest; `conninfo` is where the
  // writer and the listener connect (libpq form); `replica_id` signs this
  // replica's notices.
  PgBrokerStore(soci::connection_pool& pool, SecretBox sessions, std::string conninfo,
                std::string replica_id = "")
      : pool_(pool),
        sessions_(std::move(sessions)),
        conninfo_(std::move(conninfo)),
        replica_id_(std::move(replica_id)) {}

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
  absl::StatusOr<std::unique_ptr<ReplicaListener>> Listen() override;
  absl::Status NotifyControl(const std::string& control) override;

 private:
  soci::connection_pool& pool_;
  const SecretBox sessions_;
  const std::string conninfo_;
  const std::string replica_id_;
  // Whether another replica listens (its writer then notifies).
  const std::shared_ptr<std::atomic<bool>> others_ = std::make_shared<std::atomic<bool>>(false);
};

const std::vector<Migration>& BrokerMigrations();

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_PG_BROKER_STORE_H_
