#include "services/broker/broker_store.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "services/broker/runner_reports.h"

namespace buildd {
const std::vector<Migration>& BrokerMigrationList();
}

namespace buildd::broker {
namespace {

constexpr char kTime[] = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

std::string TimeCol(const std::string& col) {
  return absl::StrCat("to_char(", col, " AT TIME ZONE 'UTC', ", kTime, ")");
}

std::string TaskColumns() {
  return absl::StrCat(
      "t.id::text, t.workspace_id::text, t.runner_preference, t.required_labels::text,"
      " t.provider, t.priority, t.state, t.attempts, t.max_attempts, t.epoch,"
      " COALESCE(t.worker_id::text, ''), t.exit_code, t.error, t.spec::text,"
      " COALESCE(t.created_by::text, ''), ",
      TimeCol("t.created_at"), ", ", TimeCol("t.updated_at"), ", COALESCE(t.artifacts::text, ''),"
      " t.concurrency_key");
}

TaskRecord TaskFromRow(const soci::row& r) {
  TaskRecord t;
  t.id = r.get<std::string>(0);
  t.workspace_id = r.get<std::string>(1);
  t.runner_preference = r.get<std::string>(2);
  t.required_labels = LabelsFromJson(r.get<std::string>(3));
  t.provider = r.get<std::string>(4);
  t.priority = r.get<int>(5);
  t.state = r.get<std::string>(6);
  t.attempts = r.get<int>(7);
  t.max_attempts = r.get<int>(8);
  t.epoch = r.get<long long>(9);
  t.worker_id = r.get<std::string>(10);
  t.exit_code = r.get<int>(11);
  t.error = r.get<std::string>(12);
  t.spec_json = r.get<std::string>(13);
  t.created_by = r.get<std::string>(14);
  t.created_at = r.get<std::string>(15);
  t.updated_at = r.get<std::string>(16);
  t.artifacts_json = r.get<std::string>(17);
  t.concurrency_key = r.get<std::string>(18);
  return t;
}

std::string WorkerColumns() {
  return absl::StrCat(
      "w.id::text, w.task_id::text, w.workspace_id::text, COALESCE(w.account_id::text, ''),"
      " w.runner_id, w.runner_name, w.state, w.epoch, w.last_seq, w.exit_code, w.error, ",
      TimeCol("w.created_at"), ", ", TimeCol("w.updated_at"));
}

WorkerRecord WorkerFromRow(const soci::row& r) {
  WorkerRecord w;
  w.id = r.get<std::string>(0);
  w.task_id = r.get<std::string>(1);
  w.workspace_id = r.get<std::string>(2);
  w.account_id = r.get<std::string>(3);
  w.runner_id = r.get<std::string>(4);
  w.runner_name = r.get<std::string>(5);
  w.state = r.get<std::string>(6);
  w.epoch = r.get<long long>(7);
  w.last_seq = r.get<long long>(8);
  w.exit_code = r.get<int>(9);
  w.error = r.get<std::string>(10);
  w.created_at = r.get<std::string>(11);
  w.updated_at = r.get<std::string>(12);
  return w;
}

std::string WorkspaceColumns() {
  return absl::StrCat("s.id::text, s.name, s.repo_url, s.default_branch,"
                      " COALESCE(s.created_by::text, ''), ",
                      TimeCol("s.created_at"), ", s.network");
}

WorkspaceRecord WorkspaceFromRow(const soci::row& r) {
  return WorkspaceRecord{r.get<std::string>(0), r.get<std::string>(1), r.get<std::string>(2),
                         r.get<std::string>(3), r.get<std::string>(4), r.get<std::string>(5),
                         r.get<std::string>(6)};
}

// A JSON array of ids for `= ANY(...)` filters through jsonb.
std::string IdsJson(const std::set<std::string>& ids) {
  return LabelsToJson(std::vector<std::string>(ids.begin(), ids.end()));
}

}  // namespace

const std::vector<Migration>& BrokerMigrations() { return BrokerMigrationList(); }

std::string LabelsToJson(const std::vector<std::string>& labels) {
  google::protobuf::ListValue list;
  for (const std::string& l : labels) list.add_values()->set_string_value(l);
  std::string json;
  google::protobuf::util::MessageToJsonString(list, &json);
  return json;
}

std::vector<std::string> LabelsFromJson(const std::string& json) {
  google::protobuf::ListValue list;
  std::vector<std::string> out;
  if (!google::protobuf::util::JsonStringToMessage(json, &list).ok()) return out;
  for (const auto& v : list.values()) out.push_back(v.string_value());
  return out;
}

bool EventFilter::Matches(const ::buildd::v1::Event& e) const {
  if (!workspace_id.empty() && e.workspace_id() != workspace_id) return false;
  if (!task_id.empty() && e.task_id() != task_id) return false;
  if (!worker_id.empty() && e.worker_id() != worker_id) return false;
  if (allowed_workspaces && allowed_workspaces->count(e.workspace_id()) == 0) return false;
  return true;
}

absl::StatusOr<WorkspaceRecord> PgBrokerStore::GetWorkspace(const std::string& id) {
  return WithSession(pool_, "get workspace", [&](soci::session& sql) -> absl::StatusOr<WorkspaceRecord> {
    auto w = FindWorkspace(sql, id);
    if (!w) return absl::NotFoundError(absl::StrCat("workspace ", id, " not found"));
    return *w;
  });
}

absl::StatusOr<std::vector<WorkspaceRecord>> PgBrokerStore::ListWorkspaces(
    const std::optional<std::set<std::string>>& only) {
  return WithSession(pool_, "list workspaces",
                     [&](soci::session& sql) -> absl::StatusOr<std::vector<WorkspaceRecord>> {
                       const int all = only ? 0 : 1;
                       const std::string ids = only ? IdsJson(*only) : "[]";
                       std::vector<WorkspaceRecord> out;
                       soci::rowset<soci::row> rows =
                           (sql.prepare << absl::StrCat(
                                "SELECT ", WorkspaceColumns(),
                                " FROM workspaces s WHERE :all <> 0 OR"
                                " s.id::text IN (SELECT jsonb_array_elements_text(:ids::jsonb))"
                                " ORDER BY s.created_at"),
                            soci::use(all), soci::use(ids));
                       for (const soci::row& r : rows) out.push_back(WorkspaceFromRow(r));
                       return out;
                     });
}

absl::StatusOr<TaskRecord> PgBrokerStore::GetTask(const std::string& id) {
  return WithSession(pool_, "get task", [&](soci::session& sql) -> absl::StatusOr<TaskRecord> {
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat("SELECT ", TaskColumns(), " FROM tasks t WHERE t.id = :id"),
         soci::use(id));
    for (const soci::row& r : rows) return TaskFromRow(r);
    return absl::NotFoundError(absl::StrCat("task ", id, " not found"));
  });
}

absl::StatusOr<std::vector<TaskRecord>> PgBrokerStore::ListTasks(
    const std::string& workspace_id, const std::string& state, int limit,
    const std::optional<std::set<std::string>>& only) {
  return WithSession(pool_, "list tasks", [&](soci::session& sql) -> absl::StatusOr<std::vector<TaskRecord>> {
    const int all = only ? 0 : 1;
    const std::string ids = only ? IdsJson(*only) : "[]";
    std::vector<TaskRecord> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat(
             "SELECT ", TaskColumns(),
             " FROM tasks t WHERE (:ws = '' OR t.workspace_id::text = :ws2)"
             " AND (:st = '' OR t.state = :st2)"
             " AND (:all <> 0 OR t.workspace_id::text IN (SELECT jsonb_array_elements_text(:ids::jsonb)))"
             " ORDER BY t.created_at DESC LIMIT :lim"),
         soci::use(workspace_id), soci::use(workspace_id), soci::use(state), soci::use(state),
         soci::use(all), soci::use(ids), soci::use(limit));
    for (const soci::row& r : rows) out.push_back(TaskFromRow(r));
    return out;
  });
}

absl::StatusOr<WorkerRecord> PgBrokerStore::GetWorker(const std::string& id) {
  return WithSession(pool_, "get worker", [&](soci::session& sql) -> absl::StatusOr<WorkerRecord> {
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat("SELECT ", WorkerColumns(), " FROM workers w WHERE w.id = :id"),
         soci::use(id));
    for (const soci::row& r : rows) return WorkerFromRow(r);
    return absl::NotFoundError(absl::StrCat("worker ", id, " not found"));
  });
}

absl::StatusOr<std::vector<WorkerRecord>> PgBrokerStore::ListWorkers(
    const std::string& task_id, const std::string& workspace_id,
    const std::optional<std::set<std::string>>& only) {
  return WithSession(pool_, "list workers", [&](soci::session& sql) -> absl::StatusOr<std::vector<WorkerRecord>> {
    const int all = only ? 0 : 1;
    const std::string ids = only ? IdsJson(*only) : "[]";
    std::vector<WorkerRecord> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat(
             "SELECT ", WorkerColumns(),
             " FROM workers w WHERE (:t = '' OR w.task_id::text = :t2)"
             " AND (:ws = '' OR w.workspace_id::text = :ws2)"
             " AND (:all <> 0 OR w.workspace_id::text IN (SELECT jsonb_array_elements_text(:ids::jsonb)))"
             " ORDER BY w.created_at LIMIT 1000"),
         soci::use(task_id), soci::use(task_id), soci::use(workspace_id), soci::use(workspace_id),
         soci::use(all), soci::use(ids));
    for (const soci::row& r : rows) out.push_back(WorkerFromRow(r));
    return out;
  });
}

absl::StatusOr<std::vector<::buildd::v1::Event>> PgBrokerStore::ReadEvents(
    int64_t after_id, const EventFilter& filter, int limit, int64_t up_to_id) {
  return WithSession(pool_, "read events",
                     [&](soci::session& sql) -> absl::StatusOr<std::vector<::buildd::v1::Event>> {
                       std::vector<::buildd::v1::Event> out;
                       const long long after = after_id, up_to = up_to_id;
                       const int all = filter.allowed_workspaces ? 0 : 1;
                       const std::string ids =
                           filter.allowed_workspaces ? IdsJson(*filter.allowed_workspaces) : "[]";
                       soci::rowset<soci::row> rows =
                           (sql.prepare << "SELECT body::text FROM events WHERE id > :after"
                                           " AND id <= :upto"
                                           " AND (:t = '' OR task_id::text = :t2)"
                                           " AND (:w = '' OR worker_id::text = :w2)"
                                           " AND (:s = '' OR workspace_id::text = :s2)"
                                           " AND (:all <> 0 OR workspace_id::text IN"
                                           " (SELECT jsonb_array_elements_text(:ids::jsonb)))"
                                           " ORDER BY id LIMIT :lim",
                            soci::use(after), soci::use(up_to), soci::use(filter.task_id),
                            soci::use(filter.task_id), soci::use(filter.worker_id),
                            soci::use(filter.worker_id), soci::use(filter.workspace_id),
                            soci::use(filter.workspace_id), soci::use(all), soci::use(ids),
                            soci::use(limit));
                       for (const soci::row& r : rows) {
                         ::buildd::v1::Event e;
                         google::protobuf::util::JsonParseOptions options;
                         options.ignore_unknown_fields = true;
                         if (!google::protobuf::util::JsonStringToMessage(r.get<std::string>(0), &e, options).ok()) {
                           return absl::DataLossError("unreadable event body");
                         }
                         if (filter.Matches(e)) out.push_back(std::move(e));
                       }
                       return out;
                     });
}

absl::StatusOr<int64_t> PgBrokerStore::LastEventId() {
  return WithSession(pool_, "last event id", [&](soci::session& sql) -> absl::StatusOr<int64_t> {
    long long last = 0;
    sql << "SELECT last_id FROM event_counter", soci::into(last);
    return static_cast<int64_t>(last);
  });
}

void PgBrokerStore::InsertWorkspace(soci::session& sql, const WorkspaceRecord& w) {
  sql << "INSERT INTO workspaces (id, name, repo_url, default_branch, created_by, network)"
         " VALUES (:id, :name, :repo, :branch, NULLIF(:by, '')::uuid, :net)",
      soci::use(w.id), soci::use(w.name), soci::use(w.repo_url), soci::use(w.default_branch),
      soci::use(w.created_by), soci::use(w.network);
}

void PgBrokerStore::UpdateTask(soci::session& sql, const TaskRecord& t) {
  const long long epoch = t.epoch;
  sql << "UPDATE tasks SET state = :state, attempts = :att, epoch = :epoch,"
         " worker_id = NULLIF(:worker, '')::uuid, exit_code = :code, error = :err,"
         " updated_at = now() WHERE id = :id",
      soci::use(t.state), soci::use(t.attempts), soci::use(epoch), soci::use(t.worker_id),
      soci::use(t.exit_code), soci::use(t.error), soci::use(t.id);
}

void PgBrokerStore::UpdateWorker(soci::session& sql, const WorkerRecord& w) {
  const long long seq = w.last_seq;
  sql << "UPDATE workers SET state = :state, last_seq = :seq, exit_code = :code, error = :err,"
         " runner_id = :runner, updated_at = now() WHERE id = :id",
      soci::use(w.state), soci::use(seq), soci::use(w.exit_code), soci::use(w.error),
      soci::use(w.runner_id), soci::use(w.id);
}

std::optional<TaskRecord> PgBrokerStore::LockTask(soci::session& sql, const std::string& id) {
  soci::rowset<soci::row> rows =
      (sql.prepare << absl::StrCat("SELECT ", TaskColumns(), " FROM tasks t WHERE t.id = :id FOR UPDATE"),
       soci::use(id));
  for (const soci::row& r : rows) return TaskFromRow(r);
  return std::nullopt;
}

std::optional<WorkerRecord> PgBrokerStore::LockWorker(soci::session& sql, const std::string& id) {
  soci::rowset<soci::row> rows =
      (sql.prepare << absl::StrCat("SELECT ", WorkerColumns(), " FROM workers w WHERE w.id = :id FOR UPDATE"),
       soci::use(id));
  for (const soci::row& r : rows) return WorkerFromRow(r);
  return std::nullopt;
}

std::optional<WorkspaceRecord> PgBrokerStore::FindWorkspace(soci::session& sql,
                                                            const std::string& id) {
  soci::rowset<soci::row> rows =
      (sql.prepare << absl::StrCat("SELECT ", WorkspaceColumns(), " FROM workspaces s WHERE s.id = :id"),
       soci::use(id));
  for (const soci::row& r : rows) return WorkspaceFromRow(r);
  return std::nullopt;
}

void PgBrokerStore::SetArtifacts(soci::session& sql, const std::string& task_id,
                                 const std::string& artifacts_json) {
  sql << "UPDATE tasks SET artifacts = :a::jsonb WHERE id = :id", soci::use(artifacts_json),
      soci::use(task_id);
}

double PgBrokerStore::AddCost(soci::session& sql, const std::string& account_id, double cost_usd) {
  double total = 0;
  sql << "INSERT INTO account_costs (account_id, day, cost_usd)"
         " VALUES (:a, (now() AT TIME ZONE 'UTC')::date, :c)"
         " ON CONFLICT (account_id, day) DO UPDATE SET cost_usd = account_costs.cost_usd + EXCLUDED.cost_usd"
         " RETURNING cost_usd",
      soci::use(account_id), soci::use(cost_usd), soci::into(total);
  return total;
}

double PgBrokerStore::CostToday(soci::session& sql, const std::string& account_id) {
  double total = 0;
  soci::indicator ind = soci::i_ok;
  sql << "SELECT cost_usd FROM account_costs WHERE account_id = :a"
         " AND day = (now() AT TIME ZONE 'UTC')::date",
      soci::use(account_id), soci::into(total, ind);
  return sql.got_data() && ind == soci::i_ok ? total : 0;
}

SealedSession PgBrokerStore::SealSession(const ::buildd::v1::SessionSnapshot& s) const {
  return SealedSession{s.task_id(), s.provider(), s.session_id(),
                       absl::Base64Escape(sessions_.Seal(s.data(), s.task_id()))};
}

void PgBrokerStore::SaveSession(soci::session& sql, const SealedSession& s) {
  sql << "INSERT INTO session_snapshots (task_id, provider, session_id, data, sealed)"
         " VALUES (:t, :p, :s, decode(:d, 'base64'), true) ON CONFLICT (task_id) DO UPDATE SET"
         " provider = EXCLUDED.provider, session_id = EXCLUDED.session_id, data = EXCLUDED.data,"
         " sealed = true, created_at = now()",
      soci::use(s.task_id), soci::use(s.provider), soci::use(s.session_id),
      soci::use(s.sealed_base64);
}

absl::StatusOr<std::optional<::buildd::v1::SessionSnapshot>> PgBrokerStore::FindSession(
    soci::session& sql, const std::string& task_id, bool with_data) const {
  soci::rowset<soci::row> rows =
      (sql.prepare << absl::StrCat("SELECT provider, session_id, ",
                                   with_data ? "encode(data, 'base64')" : "''",
                                   ", sealed::int FROM session_snapshots WHERE task_id = :t"),
       soci::use(task_id));
  for (const soci::row& r : rows) {
    ::buildd::v1::SessionSnapshot s;
    s.set_task_id(task_id);
    s.set_provider(r.get<std::string>(0));
    s.set_session_id(r.get<std::string>(1));
    if (!with_data) return s;
    std::string data;
    // PostgreSQL's base64 output breaks lines every 76 characters.
    if (!absl::Base64Unescape(absl::StrReplaceAll(r.get<std::string>(2), {{"\n", ""}}), &data)) {
      return absl::DataLossError(absl::StrCat("the session transcript of task ", task_id,
                                              " is not valid base64"));
    }
    if (r.get<int>(3) != 0) {
      absl::StatusOr<std::string> opened = sessions_.Open(data, task_id);
      if (!opened.ok()) {
        return absl::DataLossError(absl::StrCat("the session transcript of task ", task_id, ": ",
                                                opened.status().message(),
                                                " (is --session_key the one it was stored with?)"));
      }
      data = std::move(*opened);
    }
    s.set_data(std::move(data));
    return s;
  }
  return std::nullopt;
}

absl::StatusOr<bool> PgBrokerStore::HasPendingWithKey(const std::string& workspace_id,
                                                      const std::string& key) const {
  return WithSession(pool_, "look for waiting tasks", [&](soci::session& sql) -> absl::StatusOr<bool> {
    int waiting = 0;
    sql << "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE workspace_id = :w::uuid"
           " AND concurrency_key = :k AND state = 'pending' LIMIT 1) p",
        soci::use(workspace_id), soci::use(key), soci::into(waiting);
    return waiting > 0;
  });
}

absl::StatusOr<std::optional<::buildd::v1::SessionSnapshot>> PgBrokerStore::GetSession(
    const std::string& task_id, bool with_data) const {
  return WithSession(pool_, "get session",
                     [&](soci::session& sql) -> absl::StatusOr<std::optional<::buildd::v1::SessionSnapshot>> {
                       return FindSession(sql, task_id, with_data);
                     });
}

bool PgBrokerStore::KeyIsBusy(soci::session& sql, const std::string& workspace_id,
                              const std::string& key) {
  int busy = 0;
  sql << "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE workspace_id = :w::uuid"
         " AND concurrency_key = :k AND state IN ('pending', 'assigned', 'running', 'waiting_input')"
         " LIMIT 1) b",
      soci::use(workspace_id), soci::use(key), soci::into(busy);
  return busy > 0;
}

std::vector<TaskRecord> PgBrokerStore::ClaimPending(soci::session& sql, const RunnerSlot& runner,
                                                    int n) {
  std::vector<TaskRecord> out;
  if (n <= 0) return out;
  const int all = runner.access.claim_all ? 1 : 0;
  const std::string workspaces = IdsJson(runner.access.claim_workspaces);
  const std::string only = runner.only_workspace;
  const std::string labels = LabelsToJson(std::vector<std::string>(runner.labels.begin(), runner.labels.end()));
  const std::string providers = IdsJson(runner.AvailableProviders());
  soci::rowset<soci::row> rows =
      (sql.prepare << absl::StrCat(
           "SELECT ", TaskColumns(),
           " FROM tasks t WHERE t.state = 'pending'"
           " AND (:all <> 0 OR t.workspace_id::text IN (SELECT jsonb_array_elements_text(:ws::jsonb)))"
           " AND (:only = '' OR t.workspace_id::text = :only2)"
           " AND (t.runner_preference = 'any' OR t.runner_preference = :type)"
           " AND t.required_labels <@ :labels::jsonb"
           " AND t.provider IN (SELECT jsonb_array_elements_text(:providers::jsonb))"
           " AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.workspace_id = t.workspace_id"
           " AND o.concurrency_key = t.concurrency_key AND o.id <> t.id"
           " AND o.state IN ('pending', 'assigned', 'running', 'waiting_input')"
           " AND (o.state <> 'pending' OR o.priority > t.priority"
           " OR (o.priority = t.priority AND (o.created_at, o.id) < (t.created_at, t.id))))"
           " ORDER BY t.priority DESC, t.created_at, t.id LIMIT :n FOR UPDATE SKIP LOCKED"),
       soci::use(all), soci::use(workspaces), soci::use(only), soci::use(only),
       soci::use(runner.account_type), soci::use(labels), soci::use(providers), soci::use(n));
  for (const soci::row& r : rows) out.push_back(TaskFromRow(r));
  return out;
}

namespace {

google::protobuf::Value Text(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  return v;
}

// An integer as JSON text of its decimal digits: a JSON number would be a
// double, printed in exponent form from 1e15 on, which ::bigint refuses.
google::protobuf::Value Integer(int64_t n) {
  google::protobuf::Value v;
  v.set_string_value(absl::StrCat(n));
  return v;
}

std::string ToJson(const google::protobuf::ListValue& rows) {
  std::string json;
  google::protobuf::util::MessageToJsonString(rows, &json);
  return json;
}

}  // namespace

void BatchedWrites::ChangeWorker(const WorkerChange& change) {
  for (WorkerChange& c : changes_) {
    if (c.worker_id != change.worker_id || c.epoch != change.epoch) continue;
    if (!change.worker_state.empty()) c.worker_state = change.worker_state;
    if (!change.task_state.empty()) c.task_state = change.task_state;
    if (change.exit_code) c.exit_code = change.exit_code;
    if (change.error) c.error = change.error;
    c.seq = std::max(c.seq, change.seq);
    return;
  }
  changes_.push_back(change);
}

void BatchedWrites::MergeFrom(BatchedWrites& other) {
  for (auto& t : other.tasks_) tasks_.push_back(std::move(t));
  for (auto& w : other.workers_) workers_.push_back(std::move(w));
  for (const auto& c : other.changes_) ChangeWorker(c);
  other.tasks_.clear();
  other.workers_.clear();
  other.changes_.clear();
}

int64_t BatchedWrites::Flush(soci::session& sql, std::vector<::buildd::v1::Event>* events) {
  const long long n = events == nullptr ? 0 : static_cast<long long>(events->size());
  if (empty() && n == 0) return 0;
  google::protobuf::ListValue worker_rows, change_rows;
  // The spec and labels are JSON already: they go in as they are, not as
  // strings to be escaped here and parsed again by PostgreSQL.
  std::string tasks_json = "[";
  for (const TaskRecord& t : tasks_) {
    google::protobuf::Struct row;
    auto& f = *row.mutable_fields();
    f["id"] = Text(t.id);
    f["ws"] = Text(t.workspace_id);
    f["pref"] = Text(t.runner_preference);
    f["provider"] = Text(t.provider);
    f["prio"] = Integer(t.priority);
    f["state"] = Text(t.state);
    f["att"] = Integer(t.attempts);
    f["maxatt"] = Integer(t.max_attempts);
    f["epoch"] = Integer(t.epoch);
    f["worker"] = Text(t.worker_id);
    f["by"] = Text(t.created_by);
    std::string json;
    google::protobuf::util::MessageToJsonString(row, &json);
    json.pop_back();  // the closing brace
    absl::StrAppend(&tasks_json, tasks_json.size() == 1 ? "" : ",", json,
                    ",\"labels\":", LabelsToJson(t.required_labels), ",\"spec\":",
                    t.spec_json.empty() ? "{}" : t.spec_json, "}");
  }
  tasks_json += "]";
  for (const WorkerRecord& w : workers_) {
    auto& f = *worker_rows.add_values()->mutable_struct_value()->mutable_fields();
    f["id"] = Text(w.id);
    f["task"] = Text(w.task_id);
    f["ws"] = Text(w.workspace_id);
    f["acc"] = Text(w.account_id);
    f["runner"] = Text(w.runner_id);
    f["rname"] = Text(w.runner_name);
    f["state"] = Text(w.state);
    f["epoch"] = Integer(w.epoch);
  }
  for (const WorkerChange& c : changes_) {
    auto& f = *change_rows.add_values()->mutable_struct_value()->mutable_fields();
    f["id"] = Text(c.worker_id);
    f["epoch"] = Integer(c.epoch);
    if (!c.worker_state.empty()) f["ws"] = Text(c.worker_state);
    if (!c.task_state.empty()) f["ts"] = Text(c.task_state);
    if (c.exit_code) f["code"] = Integer(*c.exit_code);
    if (c.error) f["err"] = Text(*c.error);
    f["seq"] = Integer(c.seq);
  }
  const std::string events_json = events == nullptr ? "[]" : EventsJson(*events);
  const std::string workers_json = ToJson(worker_rows), changes_json = ToJson(change_rows);
  // One statement, one round trip: data-modifying CTEs all run, against one
  // snapshot (an operation never changes a row inserted in the same batch:
  // a worker's changes come from its runner, after the commit that pushed
  // it). The event ids come from the counter row, locked until COMMIT.
  long long last = 0;
  sql << "WITH ctr AS (UPDATE event_counter SET last_id = last_id + :n RETURNING last_id),"
         " t AS (INSERT INTO tasks (id, workspace_id, runner_preference, required_labels,"
         " provider, priority, state, attempts, max_attempts, epoch, worker_id, spec, created_by)"
         " SELECT (e->>'id')::uuid, (e->>'ws')::uuid, e->>'pref', e->'labels',"
         " e->>'provider', (e->>'prio')::int, e->>'state', (e->>'att')::int,"
         " (e->>'maxatt')::int, (e->>'epoch')::bigint, NULLIF(e->>'worker', '')::uuid,"
         " e->'spec', NULLIF(e->>'by', '')::uuid"
         " FROM jsonb_array_elements(:tasks::jsonb) AS e),"
         " w AS (INSERT INTO workers (id, task_id, workspace_id, account_id, runner_id,"
         " runner_name, state, epoch)"
         " SELECT (e->>'id')::uuid, (e->>'task')::uuid, (e->>'ws')::uuid,"
         " NULLIF(e->>'acc', '')::uuid, e->>'runner', e->>'rname', e->>'state',"
         " (e->>'epoch')::bigint FROM jsonb_array_elements(:workers::jsonb) AS e),"
         " v AS (SELECT (e->>'id')::uuid AS id, (e->>'epoch')::bigint AS epoch,"
         " e->>'ws' AS ws, e->>'ts' AS ts, (e->>'code')::int AS code, e->>'err' AS err,"
         " (e->>'seq')::bigint AS seq FROM jsonb_array_elements(:changes::jsonb) AS e),"
         " cw AS (UPDATE workers w SET state = COALESCE(v.ws, w.state),"
         " exit_code = COALESCE(v.code, w.exit_code), error = COALESCE(v.err, w.error),"
         " last_seq = GREATEST(w.last_seq, v.seq), updated_at = now()"
         " FROM v WHERE w.id = v.id AND w.epoch = v.epoch"
         " RETURNING w.task_id, v.epoch, v.ts, v.code, v.err),"
         " ct AS (UPDATE tasks t SET state = cw.ts, exit_code = COALESCE(cw.code, t.exit_code),"
         " error = COALESCE(cw.err, t.error), updated_at = now()"
         " FROM cw WHERE t.id = cw.task_id AND t.epoch = cw.epoch AND cw.ts IS NOT NULL),"
         " ev AS (INSERT INTO events (id, task_id, worker_id, workspace_id, type, body)"
         " SELECT ctr.last_id - :n2 + x.i, NULLIF(x.e->>'taskId', '')::uuid,"
         " NULLIF(x.e->>'workerId', '')::uuid, NULLIF(x.e->>'workspaceId', '')::uuid,"
         " x.e->>'type', jsonb_set(x.e, '{id}', to_jsonb((ctr.last_id - :n3 + x.i)::text))"
         " FROM ctr, jsonb_array_elements(:events::jsonb) WITH ORDINALITY AS x(e, i))"
         " SELECT last_id FROM ctr",
      soci::use(n), soci::use(tasks_json), soci::use(workers_json), soci::use(changes_json),
      soci::use(n), soci::use(n), soci::use(events_json), soci::into(last);
  if (events != nullptr) {
    long long id = last - n + 1;
    for (auto& e : *events) e.set_id(id++);
  }
  tasks_.clear();
  workers_.clear();
  changes_.clear();
  return last;
}

}  // namespace buildd::broker
