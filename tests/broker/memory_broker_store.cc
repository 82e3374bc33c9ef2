#include "tests/broker/memory_broker_store.h"

#include <tuple>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "services/broker/conversions.h"
#include "services/broker/task_states.h"

namespace buildd::broker {
namespace {

using Tables = MemoryBrokerStore::Tables;

bool Contains(const std::vector<std::string_view>& states, const std::string& state) {
  return std::find(states.begin(), states.end(), state) != states.end();
}

bool Visible(const std::optional<std::set<std::string>>& only, const std::string& workspace_id) {
  return !only || only->count(workspace_id) > 0;
}

// Whether pending task `t` must wait: an unfinished task has its key and is
// not pending, or is pending and goes first.
bool Blocked(const Tables& tables, const std::string& id, int64_t order, const TaskRecord& t) {
  for (const auto& [oid, entry] : tables.tasks) {
    const auto& [o_order, o] = entry;
    if (oid == id || o.workspace_id != t.workspace_id || o.concurrency_key != t.concurrency_key) continue;
    if (!Contains(UnfinishedTaskStates(), o.state)) continue;
    if (o.state != "pending" || o.priority > t.priority ||
        (o.priority == t.priority && std::pair(o_order, oid) < std::pair(order, id))) {
      return true;
    }
  }
  return false;
}

bool Claimable(const ClaimFilter& f, const TaskRecord& t) {
  if (t.state != "pending") return false;
  if (!f.claim_all && f.claim_workspaces.count(t.workspace_id) == 0) return false;
  if (!f.only_workspaces.empty() && f.only_workspaces.count(t.workspace_id) == 0) return false;
  if (!f.only_task.empty() && f.only_task != t.id) return false;
  if (t.runner_preference != "any" && t.runner_preference != f.account_type) return false;
  for (const std::string& l : t.required_labels) {
    if (f.labels.count(l) == 0) return false;
  }
  return f.providers.count(t.provider) > 0;
}

}  // namespace

class MemoryStoreWriter final : public StoreWriter {
 private:
  [[noreturn]] static void Throw(absl::Status status) { throw MemoryStoreError(std::move(status)); }

  // Runs `fn` on the transaction's tables, or outside one as a transaction
  // of its own.
  template <typename Fn>
  auto Apply(bool writes, Fn fn) {
    if (in_tx_) {
      if (writes) store_.MaybeFail();
      return fn(work_);
    }
    absl::MutexLock writer(&store_.writer_mu_);
    Tables copy;
    {
      absl::MutexLock lock(&store_.mu_);
      copy = store_.tables_;
    }
    if (writes) store_.MaybeFail();
    auto result = fn(copy);
    absl::MutexLock lock(&store_.mu_);
    store_.tables_ = std::move(copy);
    return result;
  }


 public:
  explicit MemoryStoreWriter(MemoryBrokerStore& store) : store_(store) {}
  ~MemoryStoreWriter() override {
    if (in_tx_) store_.writer_mu_.Unlock();
  }

  void Begin() override {
    store_.writer_mu_.Lock();
    absl::MutexLock lock(&store_.mu_);
    work_ = store_.tables_;
    in_tx_ = true;
  }
  void Commit() override {
    {
      absl::MutexLock lock(&store_.mu_);
      store_.tables_ = std::move(work_);
    }
    in_tx_ = false;
    store_.writer_mu_.Unlock();
  }
  void Rollback() override {
    if (!in_tx_) return;
    work_ = Tables();
    in_tx_ = false;
    store_.writer_mu_.Unlock();
  }
  absl::Status StatusOf(const std::exception& e) override {
    if (const auto* m = dynamic_cast<const MemoryStoreError*>(&e)) return m->status();
    return absl::InternalError(e.what());
  }
  void Reconnect() override {}

  void Write(WriteBatch& batch, std::vector<pb::Event>* events) override {
    const bool events_to_write = events != nullptr && !events->empty();
    if (batch.empty() && !events_to_write) return;
    Apply(true, [&](Tables& t) {
      const std::string now = NowRfc3339();
      for (TaskRecord task : batch.tasks()) {
        if (t.tasks.count(task.id) > 0) Throw(absl::AlreadyExistsError("task already exists"));
        if (t.workspaces.count(task.workspace_id) == 0) {
          Throw(absl::FailedPreconditionError("journal: refers to a missing row"));
        }
        task.created_at = task.updated_at = now;
        const std::string id = task.id;
        t.tasks[id] = {++t.clock, std::move(task)};
      }
      for (WorkerRecord worker : batch.workers()) {
        if (t.tasks.count(worker.task_id) == 0) {
          Throw(absl::FailedPreconditionError("journal: refers to a missing row"));
        }
        worker.created_at = worker.updated_at = now;
        const std::string id = worker.id;
        t.workers[id] = {++t.clock, std::move(worker)};
      }
      for (const WorkerChange& c : batch.changes()) {
        auto w = t.workers.find(c.worker_id);
        if (w == t.workers.end() || w->second.second.epoch != c.epoch) continue;
        WorkerRecord& worker = w->second.second;
        if (!c.worker_state.empty()) worker.state = c.worker_state;
        if (c.exit_code) worker.exit_code = *c.exit_code;
        if (c.error) worker.error = *c.error;
        worker.last_seq = std::max(worker.last_seq, c.seq);
        worker.updated_at = now;
        auto task = t.tasks.find(worker.task_id);
        if (c.task_state.empty() || task == t.tasks.end() || task->second.second.epoch != c.epoch) continue;
        TaskRecord& tr = task->second.second;
        tr.state = c.task_state;
        if (c.exit_code) tr.exit_code = *c.exit_code;
        if (c.error) tr.error = *c.error;
        tr.updated_at = now;
      }
      if (events != nullptr) {
        for (pb::Event& e : *events) {
          e.set_id(++t.last_event_id);
          t.events.push_back(e);
        }
      }
      return 0;
    });
    batch.Clear();
  }

  std::optional<TaskRecord> LockTask(const std::string& id) override {
    return Apply(false, [&](Tables& t) -> std::optional<TaskRecord> {
      auto it = t.tasks.find(id);
      if (it == t.tasks.end()) return std::nullopt;
      return it->second.second;
    });
  }
  std::optional<WorkerRecord> LockWorker(const std::string& id) override {
    return Apply(false, [&](Tables& t) -> std::optional<WorkerRecord> {
      auto it = t.workers.find(id);
      if (it == t.workers.end()) return std::nullopt;
      return it->second.second;
    });
  }
  void UpdateTask(const TaskRecord& task) override {
    Apply(true, [&](Tables& t) {
      auto it = t.tasks.find(task.id);
      if (it == t.tasks.end()) return 0;
      TaskRecord& r = it->second.second;
      r.state = task.state;
      r.attempts = task.attempts;
      r.epoch = task.epoch;
      r.worker_id = task.worker_id;
      r.exit_code = task.exit_code;
      r.error = task.error;
      r.updated_at = NowRfc3339();
      return 0;
    });
  }
  void UpdateWorker(const WorkerRecord& worker) override {
    Apply(true, [&](Tables& t) {
      auto it = t.workers.find(worker.id);
      if (it == t.workers.end()) return 0;
      WorkerRecord& r = it->second.second;
      r.state = worker.state;
      r.last_seq = worker.last_seq;
      r.exit_code = worker.exit_code;
      r.error = worker.error;
      r.runner_id = worker.runner_id;
      r.updated_at = NowRfc3339();
      return 0;
    });
  }
  std::optional<TaskRecord> CancelPending(const std::string& task_id) override {
    return Apply(true, [&](Tables& t) -> std::optional<TaskRecord> {
      auto it = t.tasks.find(task_id);
      if (it == t.tasks.end() || it->second.second.state != "pending") return std::nullopt;
      it->second.second.state = "canceled";
      it->second.second.updated_at = NowRfc3339();
      return it->second.second;
    });
  }
  void InsertWorkspace(const WorkspaceRecord& w) override {
    Apply(true, [&](Tables& t) {
      if (t.workspaces.count(w.id) > 0) Throw(absl::AlreadyExistsError("workspace already exists"));
      WorkspaceRecord r = w;
      r.created_at = NowRfc3339();
      t.workspaces[w.id] = {++t.clock, std::move(r)};
      return 0;
    });
  }
  void SetArtifacts(const std::string& task_id, const std::string& artifacts_json) override {
    Apply(true, [&](Tables& t) {
      auto it = t.tasks.find(task_id);
      if (it != t.tasks.end()) it->second.second.artifacts_json = artifacts_json;
      return 0;
    });
  }
  double AddCost(const std::string& account_id, double cost_usd) override {
    return Apply(true, [&](Tables& t) { return t.costs_today[account_id] += cost_usd; });
  }
  void SaveSession(const SealedSession& session) override {
    Apply(true, [&](Tables& t) {
      t.sessions[session.task_id] = session;
      return 0;
    });
  }
  bool RecordDelivery(const std::string& delivery_id) override {
    return Apply(true, [&](Tables& t) { return t.deliveries.insert(delivery_id).second; });
  }
  bool KeyIsBusy(const std::string& workspace_id, const std::string& key,
                 const std::string& except_task_id) override {
    return Apply(false, [&](Tables& t) {
      return std::any_of(t.tasks.begin(), t.tasks.end(), [&](const auto& e) {
        const TaskRecord& r = e.second.second;
        return r.workspace_id == workspace_id && r.concurrency_key == key && r.id != except_task_id &&
               Contains(UnfinishedTaskStates(), r.state);
      });
    });
  }
  std::vector<TaskRecord> ClaimPending(const ClaimFilter& filter, int n) override {
    return Apply(false, [&](Tables& t) {
      std::vector<std::pair<int64_t, const TaskRecord*>> found;
      for (const auto& [id, entry] : t.tasks) {
        if (Claimable(filter, entry.second) && !Blocked(t, id, entry.first, entry.second)) {
          found.push_back({entry.first, &entry.second});
        }
      }
      std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
        if (a.second->priority != b.second->priority) return a.second->priority > b.second->priority;
        return std::pair(a.first, a.second->id) < std::pair(b.first, b.second->id);
      });
      std::vector<TaskRecord> out;
      for (const auto& [order, task] : found) {
        if (static_cast<int>(out.size()) >= n) break;
        out.push_back(*task);
      }
      return out;
    });
  }
  std::optional<LiveWorker> Reattach(const std::string& worker_id, int64_t epoch,
                                     const std::string& account_id, const std::string& runner_id,
                                     const std::string& broker_id) override {
    return Apply(true, [&](Tables& t) -> std::optional<LiveWorker> {
      auto it = t.workers.find(worker_id);
      if (it == t.workers.end()) return std::nullopt;
      WorkerRecord& w = it->second.second;
      if (w.epoch != epoch || w.account_id != account_id || !Contains(LiveWorkerStates(), w.state)) {
        return std::nullopt;
      }
      w.runner_id = runner_id;
      w.broker_id = broker_id;
      return Live(t, w);
    });
  }
  void InsertMessage(const pb::Message& message) override {
    Apply(true, [&](Tables& t) {
      t.messages.push_back(message);
      return true;
    });
  }
  void InsertComment(const pb::Comment& comment) override {
    Apply(true, [&](Tables& t) {
      t.comments.push_back(comment);
      return true;
    });
  }
  void BeatBroker(const std::string& broker_id, const std::string& runners_json) override {
    Apply(true, [&](Tables& t) {
      t.brokers[broker_id] = absl::Now();
      t.broker_runners[broker_id] = runners_json;
      return true;
    });
  }
  void LeaveBrokers(const std::string& broker_id) override {
    Apply(true, [&](Tables& t) {
      t.broker_runners.erase(broker_id);
      return t.brokers.erase(broker_id) > 0;
    });
  }
  std::vector<LiveWorker> AdoptOrphans(const std::string& broker_id, int64_t dead_after_ms) override {
    return Apply(true, [&](Tables& t) {
      const absl::Time alive_since = absl::Now() - absl::Milliseconds(dead_after_ms);
      std::vector<LiveWorker> out;
      for (auto& [id, entry] : t.workers) {
        WorkerRecord& w = entry.second;
        if (!Contains(LiveWorkerStates(), w.state) || w.broker_id == broker_id) continue;
        auto owner = t.brokers.find(w.broker_id);
        if (!w.broker_id.empty() && owner != t.brokers.end() && owner->second > alive_since) continue;
        w.broker_id = broker_id;
        out.push_back(Live(t, w));
      }
      return out;
    });
  }

 private:
  static LiveWorker Live(const Tables& t, const WorkerRecord& w) {
    auto task = t.tasks.find(w.task_id);
    return LiveWorker{w.id, w.runner_id, w.account_id, w.epoch, w.task_id, w.workspace_id,
                      w.last_seq, w.state, task == t.tasks.end() ? "" : task->second.second.concurrency_key};
  }

  MemoryBrokerStore& store_;
  bool in_tx_ = false;
  Tables work_;
};

void MemoryBrokerStore::FailWrites(absl::Status status, int count) {
  absl::MutexLock lock(&mu_);
  failure_ = std::move(status);
  failures_ = count;
}

void MemoryBrokerStore::MaybeFail() {
  absl::MutexLock lock(&mu_);
  if (failures_ <= 0) return;
  --failures_;
  throw MemoryStoreError(failure_);
}

namespace {

class QuietListener final : public ReplicaListener {
 public:
  absl::StatusOr<std::vector<ReplicaNotice>> Wait(absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&interrupted_), timeout);
    interrupted_ = false;
    return std::vector<ReplicaNotice>{};
  }
  void Interrupt() override {
    absl::MutexLock lock(&mu_);
    interrupted_ = true;
  }

 private:
  absl::Mutex mu_;
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ReplicaListener>> MemoryBrokerStore::Listen() {
  return std::make_unique<QuietListener>();
}

absl::Status MemoryBrokerStore::NotifyControl(const std::string& /*control*/) {
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StoreWriter>> MemoryBrokerStore::OpenWriter() {
  return std::make_unique<MemoryStoreWriter>(*this);
}

absl::StatusOr<WorkspaceRecord> MemoryBrokerStore::GetWorkspace(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = tables_.workspaces.find(id);
  if (it == tables_.workspaces.end()) return absl::NotFoundError(absl::StrCat("workspace ", id, " not found"));
  return it->second.second;
}

absl::StatusOr<std::vector<WorkspaceRecord>> MemoryBrokerStore::ListWorkspaces(
    const std::optional<std::set<std::string>>& only) {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<int64_t, WorkspaceRecord>> rows;
  for (const auto& [id, entry] : tables_.workspaces) {
    if (Visible(only, id)) rows.push_back(entry);
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<WorkspaceRecord> out;
  for (auto& [order, w] : rows) out.push_back(std::move(w));
  return out;
}

absl::StatusOr<TaskRecord> MemoryBrokerStore::GetTask(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = tables_.tasks.find(id);
  if (it == tables_.tasks.end()) return absl::NotFoundError(absl::StrCat("task ", id, " not found"));
  return it->second.second;
}

absl::StatusOr<std::vector<TaskRecord>> MemoryBrokerStore::ListTasks(
    const std::string& workspace_id, const std::string& state, int limit,
    const std::optional<std::set<std::string>>& only) {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<int64_t, TaskRecord>> rows;
  for (const auto& [id, entry] : tables_.tasks) {
    const TaskRecord& t = entry.second;
    if (!workspace_id.empty() && t.workspace_id != workspace_id) continue;
    if (!state.empty() && t.state != state) continue;
    if (Visible(only, t.workspace_id)) rows.push_back(entry);
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<TaskRecord> out;
  for (auto& [order, t] : rows) {
    if (static_cast<int>(out.size()) >= limit) break;
    out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<WorkerRecord> MemoryBrokerStore::GetWorker(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = tables_.workers.find(id);
  if (it == tables_.workers.end()) return absl::NotFoundError(absl::StrCat("worker ", id, " not found"));
  return it->second.second;
}

absl::StatusOr<std::vector<WorkerRecord>> MemoryBrokerStore::ListWorkers(
    const std::string& task_id, const std::string& workspace_id,
    const std::optional<std::set<std::string>>& only) {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<int64_t, WorkerRecord>> rows;
  for (const auto& [id, entry] : tables_.workers) {
    const WorkerRecord& w = entry.second;
    if (!task_id.empty() && w.task_id != task_id) continue;
    if (!workspace_id.empty() && w.workspace_id != workspace_id) continue;
    if (Visible(only, w.workspace_id)) rows.push_back(entry);
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<WorkerRecord> out;
  for (auto& [order, w] : rows) {
    if (out.size() >= 1000) break;
    out.push_back(std::move(w));
  }
  return out;
}

absl::StatusOr<std::vector<pb::Event>> MemoryBrokerStore::ReadEvents(int64_t after_id,
                                                                     const EventFilter& filter,
                                                                     int limit, int64_t up_to_id) {
  absl::MutexLock lock(&mu_);
  std::vector<pb::Event> out;
  for (const pb::Event& e : tables_.events) {
    if (e.id() <= after_id || e.id() > up_to_id || !filter.Matches(e)) continue;
    if (static_cast<int>(out.size()) >= limit) break;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<int64_t> MemoryBrokerStore::LastEventId() {
  absl::MutexLock lock(&mu_);
  return tables_.last_event_id;
}

absl::StatusOr<bool> MemoryBrokerStore::HasPendingWithKey(const std::string& workspace_id,
                                                          const std::string& key) {
  absl::MutexLock lock(&mu_);
  return std::any_of(tables_.tasks.begin(), tables_.tasks.end(), [&](const auto& e) {
    const TaskRecord& t = e.second.second;
    return t.workspace_id == workspace_id && t.concurrency_key == key && t.state == "pending";
  });
}

absl::StatusOr<int64_t> MemoryBrokerStore::CountPending() {
  absl::MutexLock lock(&mu_);
  return std::count_if(tables_.tasks.begin(), tables_.tasks.end(),
                       [](const auto& e) { return e.second.second.state == "pending"; });
}

absl::StatusOr<std::vector<QueueGroup>> MemoryBrokerStore::Queue() {
  absl::MutexLock lock(&mu_);
  std::map<std::tuple<std::string, std::string, std::vector<std::string>, std::string, bool>, int64_t>
      counts;
  for (const auto& [id, entry] : tables_.tasks) {
    const TaskRecord& t = entry.second;
    if (!Contains(UnfinishedTaskStates(), t.state)) continue;
    ++counts[{t.workspace_id, t.runner_preference, t.required_labels, t.provider, t.state == "pending"}];
  }
  std::vector<QueueGroup> out;
  for (const auto& [key, n] : counts) {
    const auto& [workspace, preference, labels, provider, pending] = key;
    out.push_back(QueueGroup{TaskRoute{"", workspace, preference, labels, provider}, pending, n});
  }
  return out;
}


absl::StatusOr<std::vector<pb::Message>> MemoryBrokerStore::ListMessages(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  std::vector<pb::Message> out;
  for (const pb::Message& m : tables_.messages) {
    if (m.worker_id() != worker_id) continue;
    out.push_back(m);
    out.back().set_role("human");
    for (pb::Attachment& a : *out.back().mutable_attachments()) {
      a.set_size(static_cast<int64_t>(a.data().size()));
      a.clear_data();
    }
  }
  return out;
}

absl::StatusOr<pb::Attachment> MemoryBrokerStore::GetAttachment(const std::string& message_id,
                                                                int index) {
  absl::MutexLock lock(&mu_);
  for (const pb::Message& m : tables_.messages) {
    if (m.id() != message_id || index < 0 || index >= m.attachments_size()) continue;
    pb::Attachment a = m.attachments(index);
    a.set_size(static_cast<int64_t>(a.data().size()));
    return a;
  }
  return absl::NotFoundError(absl::StrCat("attachment ", index, " of message ", message_id, " not found"));
}

absl::StatusOr<std::string> MemoryBrokerStore::MessageWorker(const std::string& message_id) {
  absl::MutexLock lock(&mu_);
  for (const pb::Message& m : tables_.messages) {
    if (m.id() == message_id) return m.worker_id();
  }
  return absl::NotFoundError(absl::StrCat("message ", message_id, " not found"));
}

absl::StatusOr<std::vector<pb::Comment>> MemoryBrokerStore::ListComments(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  std::vector<pb::Comment> out;
  for (const pb::Comment& c : tables_.comments) {
    if (c.task_id() == task_id) out.push_back(c);
  }
  return out;
}

absl::StatusOr<std::vector<PendingGroup>> MemoryBrokerStore::PendingGroups(
    const std::string& workspace_id, const std::optional<std::set<std::string>>& only) {
  absl::MutexLock lock(&mu_);
  // By (provider, sorted labels): the group and its oldest task's order.
  std::map<std::pair<std::string, std::vector<std::string>>, std::pair<PendingGroup, int64_t>> groups;
  for (const auto& [id, entry] : tables_.tasks) {
    const auto& [order, t] = entry;
    if (t.state != "pending" || !Visible(only, t.workspace_id)) continue;
    if (!workspace_id.empty() && t.workspace_id != workspace_id) continue;
    const std::set<std::string> sorted(t.required_labels.begin(), t.required_labels.end());
    const std::vector<std::string> labels(sorted.begin(), sorted.end());
    auto [it, added] = groups.try_emplace({t.provider, labels});
    auto& [g, oldest] = it->second;
    if (added || std::pair(order, id) < std::pair(oldest, g.oldest_task_id)) {
      g.oldest_task_id = id;
      g.oldest_created_at = t.created_at;
      oldest = order;
    }
    g.provider = t.provider;
    g.labels = labels;
    ++g.tasks;
  }
  std::vector<std::pair<int64_t, PendingGroup>> sorted;
  for (auto& [key, value] : groups) sorted.push_back({value.second, std::move(value.first)});
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<PendingGroup> out;
  for (auto& [order, g] : sorted) out.push_back(std::move(g));
  return out;
}

absl::StatusOr<std::map<std::string, int>> MemoryBrokerStore::QueuePositions(
    const std::vector<std::string>& task_ids) {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<int64_t, const TaskRecord*>> pending;
  for (const auto& [id, entry] : tables_.tasks) {
    if (entry.second.state == "pending") pending.push_back({entry.first, &entry.second});
  }
  std::sort(pending.begin(), pending.end(), [](const auto& a, const auto& b) {
    if (a.second->priority != b.second->priority) return a.second->priority > b.second->priority;
    return std::pair(a.first, a.second->id) < std::pair(b.first, b.second->id);
  });
  const std::set<std::string> wanted(task_ids.begin(), task_ids.end());
  std::map<std::string, int> out;
  for (size_t i = 0; i < pending.size(); ++i) {
    if (wanted.count(pending[i].second->id) > 0) out[pending[i].second->id] = static_cast<int>(i + 1);
  }
  return out;
}

absl::StatusOr<std::string> MemoryBrokerStore::KeyHolder(const TaskRecord& task) {
  absl::MutexLock lock(&mu_);
  auto self = tables_.tasks.find(task.id);
  const int64_t order = self == tables_.tasks.end() ? 0 : self->second.first;
  // ClaimPending's rule (Blocked), for one task: the oldest that is not
  // pending, else the first pending one ahead.
  std::optional<std::tuple<bool, int64_t, std::string>> best;
  for (const auto& [oid, entry] : tables_.tasks) {
    const auto& [o_order, o] = entry;
    if (oid == task.id || o.workspace_id != task.workspace_id ||
        o.concurrency_key != task.concurrency_key || !Contains(UnfinishedTaskStates(), o.state)) {
      continue;
    }
    const bool pending = o.state == "pending";
    if (pending && !(o.priority > task.priority ||
                     (o.priority == task.priority && std::pair(o_order, oid) < std::pair(order, task.id)))) {
      continue;
    }
    const auto rank = std::make_tuple(pending, o_order, oid);
    if (!best || rank < *best) best = rank;
  }
  return best ? std::get<2>(*best) : "";
}

absl::StatusOr<std::map<std::string, double>> MemoryBrokerStore::CostsToday() {
  absl::MutexLock lock(&mu_);
  std::map<std::string, double> out;
  for (const auto& [account, cost] : tables_.costs_today) {
    if (cost > 0) out[account] = cost;
  }
  return out;
}

absl::StatusOr<std::vector<pb::RunnerInfo>> MemoryBrokerStore::OtherReplicasRunners(
    const std::string& broker_id, int64_t fresh_ms) {
  absl::MutexLock lock(&mu_);
  const absl::Time fresh_since = absl::Now() - absl::Milliseconds(fresh_ms);
  std::vector<pb::RunnerInfo> out;
  for (const auto& [id, seen] : tables_.brokers) {
    if (id == broker_id || seen <= fresh_since) continue;
    auto json = tables_.broker_runners.find(id);
    if (json != tables_.broker_runners.end()) AppendRunners(json->second, &out);
  }
  for (pb::RunnerInfo& r : out) {
    r.set_active_workers(static_cast<int>(std::count_if(
        tables_.workers.begin(), tables_.workers.end(), [&](const auto& entry) {
          const WorkerRecord& w = entry.second.second;
          return w.runner_id == r.id() && Contains(LiveWorkerStates(), w.state);
        })));
  }
  return out;
}

absl::StatusOr<double> MemoryBrokerStore::CostToday(const std::string& account_id) {
  absl::MutexLock lock(&mu_);
  auto it = tables_.costs_today.find(account_id);
  return it == tables_.costs_today.end() ? 0.0 : it->second;
}

absl::StatusOr<std::optional<AgentSession>> MemoryBrokerStore::GetSession(const std::string& task_id,
                                                                          bool with_data) {
  absl::MutexLock lock(&mu_);
  auto it = tables_.sessions.find(task_id);
  if (it == tables_.sessions.end()) return std::nullopt;
  const SealedSession& s = it->second;
  AgentSession out{task_id, s.provider, s.session_id, "", s.continue_prompt, s.plan};
  if (!with_data) return out;
  absl::StatusOr<std::string> opened = sessions_.Open(s.sealed, task_id);
  if (!opened.ok()) {
    return absl::DataLossError(absl::StrCat("the session transcript of task ", task_id, ": ",
                                            opened.status().message()));
  }
  out.data = *std::move(opened);
  return out;
}

SealedSession MemoryBrokerStore::SealSession(const AgentSession& s) const {
  return SealedSession{s.task_id,        s.provider,
                       s.session_id,     sessions_.Seal(s.data, s.task_id),
                       s.continue_prompt, s.plan};
}

std::string MemoryBrokerStore::SealTaskCredentials(const std::string& task_id,
                                                   const CredentialMap& credentials) const {
  return SealCredentials(sessions_, task_id, credentials);
}

absl::StatusOr<CredentialMap> MemoryBrokerStore::OpenTaskCredentials(const TaskRecord& task) const {
  return OpenCredentials(sessions_, task.id, task.sealed_credentials);
}

}  // namespace buildd::broker
