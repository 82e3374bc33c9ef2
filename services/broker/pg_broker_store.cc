#include "services/broker/pg_broker_store.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <map>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/pg_connection.h"
#include "services/broker/conversions.h"
#include "services/broker/runner_reports.h"
#include "services/broker/task_states.h"

namespace buildd {
const std::vector<Migration>& BrokerMigrationList();
}

namespace buildd::broker {
namespace {

constexpr char kTime[] = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

std::string TimeCol(const std::string& col) {
  return absl::StrCat("to_char(", col, " AT TIME ZONE 'UTC', ", kTime, ")");
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(m, &json);
  return json;
}

// JSON array text of strings, and back.
std::string LabelsToJson(const std::vector<std::string>& labels) {
  google::protobuf::ListValue list;
  for (const std::string& l : labels) list.add_values()->set_string_value(l);
  return ToJson(list);
}

std::vector<std::string> LabelsFromJson(const std::string& json) {
  google::protobuf::ListValue list;
  std::vector<std::string> out;
  if (!google::protobuf::util::JsonStringToMessage(json, &list).ok()) return out;
  for (const auto& v : list.values()) out.push_back(v.string_value());
  return out;
}

int64_t Int(const std::string& s) {
  int64_t n = 0;
  (void)absl::SimpleAtoi(s, &n);
  return n;
}

// Every column is selected as text, so that one parser reads the rows of a
// SOCI session and of the writer's libpq connection alike.
const std::string& TaskColumns() {
  static const std::string columns = absl::StrCat(
      "t.id::text, t.workspace_id::text, t.runner_preference, t.required_labels::text,"
      " t.provider, t.priority::text, t.state, t.attempts::text, t.max_attempts::text,"
      " t.epoch::text, COALESCE(t.worker_id::text, ''), t.exit_code::text, t.error, t.spec::text,"
      " COALESCE(t.created_by::text, ''), ",
      TimeCol("t.created_at"), ", ", TimeCol("t.updated_at"),
      ", COALESCE(t.artifacts::text, ''), t.concurrency_key, COALESCE(t.credentials, '')");
  return columns;
}

template <typename Col>
TaskRecord TaskFrom(Col col) {
  TaskRecord t;
  t.id = col(0);
  t.workspace_id = col(1);
  t.runner_preference = col(2);
  t.required_labels = LabelsFromJson(col(3));
  t.provider = col(4);
  t.priority = static_cast<int>(Int(col(5)));
  t.state = col(6);
  t.attempts = static_cast<int>(Int(col(7)));
  t.max_attempts = static_cast<int>(Int(col(8)));
  t.epoch = Int(col(9));
  t.worker_id = col(10);
  t.exit_code = static_cast<int>(Int(col(11)));
  t.error = col(12);
  auto spec = std::make_shared<pb::Task>();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  (void)google::protobuf::util::JsonStringToMessage(col(13), spec.get(), options);
  t.spec = std::move(spec);
  t.created_by = col(14);
  t.created_at = col(15);
  t.updated_at = col(16);
  t.artifacts_json = col(17);
  t.concurrency_key = col(18);
  // Stored as base64 text of the sealed bytes.
  if (!absl::Base64Unescape(col(19), &t.sealed_credentials)) t.sealed_credentials.clear();
  return t;
}

const std::string& WorkerColumns() {
  static const std::string columns = absl::StrCat(
      "w.id::text, w.task_id::text, w.workspace_id::text, COALESCE(w.account_id::text, ''),"
      " w.runner_id, w.runner_name, w.state, w.epoch::text, w.last_seq::text, w.exit_code::text,"
      " w.error, ",
      TimeCol("w.created_at"), ", ", TimeCol("w.updated_at"), ", COALESCE(w.broker_id::text, '')");
  return columns;
}

template <typename Col>
WorkerRecord WorkerFrom(Col col) {
  WorkerRecord w;
  w.id = col(0);
  w.task_id = col(1);
  w.workspace_id = col(2);
  w.account_id = col(3);
  w.runner_id = col(4);
  w.runner_name = col(5);
  w.state = col(6);
  w.epoch = Int(col(7));
  w.last_seq = Int(col(8));
  w.exit_code = static_cast<int>(Int(col(9)));
  w.error = col(10);
  w.created_at = col(11);
  w.updated_at = col(12);
  w.broker_id = col(13);
  return w;
}

const std::string& WorkspaceColumns() {
  static const std::string columns =
      absl::StrCat("s.id::text, s.name, s.repo_url, s.default_branch,"
                   " COALESCE(s.created_by::text, ''), ",
                   TimeCol("s.created_at"), ", s.network");
  return columns;
}

WorkspaceRecord WorkspaceFromRow(const soci::row& r) {
  return WorkspaceRecord{r.get<std::string>(0), r.get<std::string>(1), r.get<std::string>(2),
                         r.get<std::string>(3), r.get<std::string>(4), r.get<std::string>(5),
                         r.get<std::string>(6)};
}

auto SociCols(const soci::row& r) {
  return [&r](int i) { return r.get<std::string>(i); };
}

auto PgCols(const PgResult& r, int row) {
  return [&r, row](int i) { return r.Get(row, i); };
}

// A JSON array of ids for `IN (SELECT jsonb_array_elements_text(...))`.
std::string IdsJson(const std::set<std::string>& ids) {
  return LabelsToJson(std::vector<std::string>(ids.begin(), ids.end()));
}

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


// The rows of a batch as JSON arrays, one per kind. The spec and labels are
// JSON already: they go in as they are, not as strings to be escaped here
// and parsed again by PostgreSQL.
std::string TasksJson(const std::vector<TaskRecord>& tasks) {
  std::string json = "[";
  for (const TaskRecord& t : tasks) {
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
    if (!t.sealed_credentials.empty()) f["creds"] = Text(absl::Base64Escape(t.sealed_credentials));
    std::string object = ToJson(row);
    object.pop_back();  // the closing brace
    absl::StrAppend(&json, json.size() == 1 ? "" : ",", object,
                    ",\"labels\":", LabelsToJson(t.required_labels),
                    ",\"spec\":", t.spec == nullptr ? "{}" : ToJson(*t.spec), "}");
  }
  return json + "]";
}

std::string WorkersJson(const std::vector<WorkerRecord>& workers) {
  google::protobuf::ListValue rows;
  for (const WorkerRecord& w : workers) {
    auto& f = *rows.add_values()->mutable_struct_value()->mutable_fields();
    f["id"] = Text(w.id);
    f["task"] = Text(w.task_id);
    f["ws"] = Text(w.workspace_id);
    f["acc"] = Text(w.account_id);
    f["runner"] = Text(w.runner_id);
    f["rname"] = Text(w.runner_name);
    f["broker"] = Text(w.broker_id);
    f["state"] = Text(w.state);
    f["epoch"] = Integer(w.epoch);
  }
  return ToJson(rows);
}

std::string ChangesJson(const std::vector<WorkerChange>& changes) {
  google::protobuf::ListValue rows;
  for (const WorkerChange& c : changes) {
    auto& f = *rows.add_values()->mutable_struct_value()->mutable_fields();
    f["id"] = Text(c.worker_id);
    f["epoch"] = Integer(c.epoch);
    if (!c.worker_state.empty()) f["ws"] = Text(c.worker_state);
    if (!c.task_state.empty()) f["ts"] = Text(c.task_state);
    if (c.exit_code) f["code"] = Integer(*c.exit_code);
    if (c.error) f["err"] = Text(*c.error);
    f["seq"] = Integer(c.seq);
  }
  return ToJson(rows);
}

// One statement, one round trip: data-modifying CTEs all run, against one
// snapshot (an operation never changes a row inserted in the same batch: a
// worker's changes come from its runner, after the commit that pushed it).
// The event ids come from the counter row, locked until COMMIT (only by a
// batch with events); a body does not repeat its id (readers take the
// column's).
constexpr char kWriteBatchBody[] =
    "WITH ctr AS (UPDATE event_counter SET last_id = last_id + $1::bigint WHERE $1::bigint > 0"
    " RETURNING last_id),"
    " t AS (INSERT INTO tasks (id, workspace_id, runner_preference, required_labels,"
    " provider, priority, state, attempts, max_attempts, epoch, worker_id, spec, created_by,"
    " credentials)"
    " SELECT (e->>'id')::uuid, (e->>'ws')::uuid, e->>'pref', e->'labels',"
    " e->>'provider', (e->>'prio')::int, e->>'state', (e->>'att')::int,"
    " (e->>'maxatt')::int, (e->>'epoch')::bigint, NULLIF(e->>'worker', '')::uuid,"
    " e->'spec', NULLIF(e->>'by', '')::uuid, e->>'creds'"
    " FROM jsonb_array_elements($2::jsonb) AS e),"
    " w AS (INSERT INTO workers (id, task_id, workspace_id, account_id, runner_id,"
    " runner_name, state, epoch, broker_id)"
    " SELECT (e->>'id')::uuid, (e->>'task')::uuid, (e->>'ws')::uuid,"
    " NULLIF(e->>'acc', '')::uuid, e->>'runner', e->>'rname', e->>'state',"
    " (e->>'epoch')::bigint, NULLIF(e->>'broker', '')::uuid"
    " FROM jsonb_array_elements($3::jsonb) AS e),"
    " v AS (SELECT (e->>'id')::uuid AS id, (e->>'epoch')::bigint AS epoch,"
    " e->>'ws' AS ws, e->>'ts' AS ts, (e->>'code')::int AS code, e->>'err' AS err,"
    " (e->>'seq')::bigint AS seq FROM jsonb_array_elements($4::jsonb) AS e),"
    " cw AS (UPDATE workers w SET state = COALESCE(v.ws, w.state),"
    " exit_code = COALESCE(v.code, w.exit_code), error = COALESCE(v.err, w.error),"
    " last_seq = GREATEST(w.last_seq, v.seq), updated_at = now()"
    " FROM v WHERE w.id = v.id AND w.epoch = v.epoch"
    " RETURNING w.task_id, v.epoch, v.ts, v.code, v.err),"
    " ct AS (UPDATE tasks t SET state = cw.ts, exit_code = COALESCE(cw.code, t.exit_code),"
    " error = COALESCE(cw.err, t.error), updated_at = now()"
    " FROM cw WHERE t.id = cw.task_id AND t.epoch = cw.epoch AND cw.ts IS NOT NULL),"
    " ev AS (INSERT INTO events (id, task_id, worker_id, workspace_id, type, body)"
    " SELECT ctr.last_id - $1::bigint + x.i, NULLIF(x.e->>'taskId', '')::uuid,"
    " NULLIF(x.e->>'workerId', '')::uuid, NULLIF(x.e->>'workspaceId', '')::uuid,"
    " x.e->>'type', x.e"
    " FROM ctr, jsonb_array_elements($5::jsonb) WITH ORDINALITY AS x(e, i))";

// The batch, and with `notify` a notice to every replica's listener at
// commit ($6: this replica's id). A notice serialises commits and costs a
// commit 0.1-0.3 ms here, so a replica sends them only once it knows of
// another one.
std::string WriteBatchSql(bool notify) {
  if (!notify) return absl::StrCat(kWriteBatchBody, " SELECT last_id FROM ctr");
  return absl::StrCat(kWriteBatchBody,
                      ", nt AS (SELECT pg_notify('buildd_events', $6 || ' ' || last_id::text) FROM ctr)"
                      " SELECT last_id, (SELECT count(*) FROM nt) FROM ctr");
}

// Ends "WITH a AS (UPDATE workers w … WHERE …": the updated live workers,
// with their tasks' concurrency keys (read by LiveFrom).
constexpr char kReturningLive[] =
    " RETURNING w.id, w.runner_id, w.account_id, w.epoch, w.task_id, w.workspace_id,"
    " w.last_seq, w.state)"
    " SELECT a.id::text, a.runner_id, COALESCE(a.account_id::text, ''), a.epoch::text,"
    " a.task_id::text, a.workspace_id::text, a.last_seq::text, a.state, t.concurrency_key"
    " FROM a JOIN tasks t ON t.id = a.task_id";

std::vector<LiveWorker> LiveFrom(const PgResult& r) {
  std::vector<LiveWorker> out;
  for (int i = 0; i < r.rows(); ++i) {
    LiveWorker w;
    w.worker_id = r.Get(i, 0);
    w.runner_id = r.Get(i, 1);
    w.account_id = r.Get(i, 2);
    w.epoch = Int(r.Get(i, 3));
    w.task_id = r.Get(i, 4);
    w.workspace_id = r.Get(i, 5);
    w.last_seq = Int(r.Get(i, 6));
    w.state = r.Get(i, 7);
    w.concurrency_key = r.Get(i, 8);
    out.push_back(std::move(w));
  }
  return out;
}

// The writer's transactions on a libpq connection of its own.
class PgStoreWriter final : public StoreWriter {
 public:
  PgStoreWriter(const std::string& conninfo, std::string replica_id,
                std::shared_ptr<const std::atomic<bool>> others)
      : db_(conninfo), replica_id_(std::move(replica_id)), others_(std::move(others)) {
    Configure();
  }

  void Begin() override { db_.Exec("BEGIN"); }
  void Commit() override { db_.Exec("COMMIT"); }
  void Rollback() override { db_.Exec("ROLLBACK"); }
  absl::Status StatusOf(const std::exception& e) override { return StatusFromDbError(e, "journal"); }
  void Reconnect() override {
    db_.Reset();
    Configure();
  }

  void Write(WriteBatch& batch, std::vector<pb::Event>* events) override {
    const int64_t n = events == nullptr ? 0 : static_cast<int64_t>(events->size());
    if (batch.empty() && n == 0) return;
    static const std::string alone = WriteBatchSql(false), among = WriteBatchSql(true);
    std::vector<std::string> params = {absl::StrCat(n), TasksJson(batch.tasks()),
                                       WorkersJson(batch.workers()), ChangesJson(batch.changes()),
                                       n == 0 ? "[]" : EventsJson(*events)};
    const bool notify = others_->load();
    if (notify) params.push_back(replica_id_);
    PgResult r = notify ? db_.Run("write_batch_notify", among, params)
                        : db_.Run("write_batch", alone, params);
    if (n > 0) {
      int64_t id = Int(r.Get(0, 0)) - n + 1;
      for (pb::Event& e : *events) e.set_id(id++);
    }
    batch.Clear();
  }

  std::optional<TaskRecord> LockTask(const std::string& id) override {
    PgResult r = db_.Run("lock_task",
                         absl::StrCat("SELECT ", TaskColumns(), " FROM tasks t WHERE t.id = $1::uuid FOR UPDATE"),
                         {id});
    if (r.rows() == 0) return std::nullopt;
    return TaskFrom(PgCols(r, 0));
  }

  std::optional<WorkerRecord> LockWorker(const std::string& id) override {
    PgResult r = db_.Run("lock_worker",
                         absl::StrCat("SELECT ", WorkerColumns(), " FROM workers w WHERE w.id = $1::uuid FOR UPDATE"),
                         {id});
    if (r.rows() == 0) return std::nullopt;
    return WorkerFrom(PgCols(r, 0));
  }

  void UpdateTask(const TaskRecord& t) override {
    db_.Run("update_task",
            "UPDATE tasks SET state = $1, attempts = $2::int, epoch = $3::bigint,"
            " worker_id = NULLIF($4, '')::uuid, exit_code = $5::int, error = $6,"
            " updated_at = now() WHERE id = $7::uuid",
            {t.state, absl::StrCat(t.attempts), absl::StrCat(t.epoch), t.worker_id,
             absl::StrCat(t.exit_code), t.error, t.id});
  }

  void UpdateWorker(const WorkerRecord& w) override {
    db_.Run("update_worker",
            "UPDATE workers SET state = $1, last_seq = $2::bigint, exit_code = $3::int, error = $4,"
            " runner_id = $5, updated_at = now() WHERE id = $6::uuid",
            {w.state, absl::StrCat(w.last_seq), absl::StrCat(w.exit_code), w.error, w.runner_id, w.id});
  }

  std::optional<TaskRecord> CancelPending(const std::string& task_id) override {
    PgResult r = db_.Run("cancel_pending",
                         absl::StrCat("UPDATE tasks t SET state = 'canceled', updated_at = now()"
                                      " WHERE t.id = $1::uuid AND t.state = 'pending' RETURNING ",
                                      TaskColumns()),
                         {task_id});
    if (r.rows() == 0) return std::nullopt;
    return TaskFrom(PgCols(r, 0));
  }

  void InsertWorkspace(const WorkspaceRecord& w) override {
    db_.Run("insert_workspace",
            "INSERT INTO workspaces (id, name, repo_url, default_branch, created_by, network)"
            " VALUES ($1::uuid, $2, $3, $4, NULLIF($5, '')::uuid, $6)",
            {w.id, w.name, w.repo_url, w.default_branch, w.created_by, w.network});
  }

  void SetArtifacts(const std::string& task_id, const std::string& artifacts_json) override {
    db_.Run("set_artifacts", "UPDATE tasks SET artifacts = $1::jsonb WHERE id = $2::uuid",
            {artifacts_json, task_id});
  }

  double AddCost(const std::string& account_id, double cost_usd) override {
    PgResult r = db_.Run(
        "add_cost",
        "INSERT INTO account_costs (account_id, day, cost_usd)"
        " VALUES ($1::uuid, (now() AT TIME ZONE 'UTC')::date, $2::double precision)"
        " ON CONFLICT (account_id, day) DO UPDATE SET cost_usd = account_costs.cost_usd + EXCLUDED.cost_usd"
        " RETURNING cost_usd::text",
        {account_id, absl::StrCat(cost_usd)});
    double total = 0;
    (void)absl::SimpleAtod(r.Get(0, 0), &total);
    return total;
  }

  void SaveSession(const SealedSession& s) override {
    db_.Run("save_session",
            "INSERT INTO session_snapshots"
            " (task_id, provider, session_id, data, sealed, continue_prompt, plan)"
            " VALUES ($1::uuid, $2, $3, decode($4, 'base64'), true, $5, $6) ON CONFLICT (task_id)"
            " DO UPDATE SET provider = EXCLUDED.provider, session_id = EXCLUDED.session_id,"
            " data = EXCLUDED.data, sealed = true, continue_prompt = EXCLUDED.continue_prompt,"
            " plan = EXCLUDED.plan, created_at = now()",
            {s.task_id, s.provider, s.session_id, absl::Base64Escape(s.sealed), s.continue_prompt,
             s.plan});
  }

  bool RecordDelivery(const std::string& delivery_id) override {
    return db_.Run("record_delivery",
                   "INSERT INTO github_deliveries (id) VALUES ($1) ON CONFLICT (id) DO NOTHING"
                   " RETURNING 1",
                   {delivery_id})
               .rows() > 0;
  }

  bool KeyIsBusy(const std::string& workspace_id, const std::string& key,
                 const std::string& except_task_id) override {
    // Held until commit: replicas assigning tasks of one key take turns,
    // and each sees what the one before committed.
    db_.Run("lock_key", "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
            {workspace_id, key});
    static const std::string sql = absl::StrCat(
        "SELECT 1 FROM tasks WHERE workspace_id = $1::uuid AND concurrency_key = $2"
        " AND id::text <> $3 AND state IN ", SqlList(UnfinishedTaskStates()), " LIMIT 1");
    return db_.Run("key_is_busy", sql, {workspace_id, key, except_task_id}).rows() > 0;
  }

  std::vector<TaskRecord> ClaimPending(const ClaimFilter& filter, int n) override {
    std::vector<TaskRecord> out;
    if (n <= 0) return out;
    static const std::string sql = absl::StrCat(
        "SELECT ", TaskColumns(),
        " FROM tasks t WHERE t.state = 'pending'"
        " AND ($1::int <> 0 OR t.workspace_id::text IN (SELECT jsonb_array_elements_text($2::jsonb)))"
        " AND ($3::jsonb = '[]'::jsonb OR t.workspace_id::text IN (SELECT jsonb_array_elements_text($3::jsonb)))"
        " AND (t.runner_preference = 'any' OR t.runner_preference = $4)"
        " AND t.required_labels <@ $5::jsonb"
        " AND t.provider IN (SELECT jsonb_array_elements_text($6::jsonb))"
        " AND ($8 = '' OR t.id::text = $8)"
        " AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.workspace_id = t.workspace_id"
        " AND o.concurrency_key = t.concurrency_key AND o.id <> t.id"
        " AND o.state IN ", SqlList(UnfinishedTaskStates()),
        " AND (o.state <> 'pending' OR o.priority > t.priority"
        " OR (o.priority = t.priority AND (o.created_at, o.id) < (t.created_at, t.id))))"
        " ORDER BY t.priority DESC, t.created_at, t.id LIMIT $7::int FOR UPDATE SKIP LOCKED");
    PgResult r = db_.Run(
        "claim_pending", sql,
        {filter.claim_all ? "1" : "0", IdsJson(filter.claim_workspaces), IdsJson(filter.only_workspaces),
         filter.account_type, IdsJson(filter.labels), IdsJson(filter.providers), absl::StrCat(n),
         filter.only_task});
    if (r.rows() == 0) return out;
    // The claim saw what was committed when it began: take the keys' locks
    // (in one order, as KeyIsBusy does), then keep the tasks whose key no
    // task holds now, another replica's included.
    std::string ids = "{";
    for (int i = 0; i < r.rows(); ++i) absl::StrAppend(&ids, i > 0 ? "," : "", r.Get(i, 0));
    ids += "}";
    db_.Run("lock_claimed_keys",
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended("
            "workspace_id::text || '/' || concurrency_key, 0) AS k FROM tasks"
            " WHERE id = ANY($1::uuid[]) ORDER BY k) keys",
            {ids});
    static const std::string free_sql = absl::StrCat(
        "SELECT t.id::text FROM tasks t WHERE t.id = ANY($1::uuid[]) AND NOT EXISTS ("
        "SELECT 1 FROM tasks o WHERE o.workspace_id = t.workspace_id"
        " AND o.concurrency_key = t.concurrency_key AND o.id <> t.id AND o.state IN ",
        SqlList(UnfinishedTaskStates()), " AND o.state <> 'pending')");
    PgResult free = db_.Run("claimed_keys_free", free_sql, {ids});
    std::set<std::string> keep;
    for (int i = 0; i < free.rows(); ++i) keep.insert(free.Get(i, 0));
    for (int i = 0; i < r.rows(); ++i) {
      if (keep.count(r.Get(i, 0)) > 0) out.push_back(TaskFrom(PgCols(r, i)));
    }
    return out;
  }

  std::optional<LiveWorker> Reattach(const std::string& worker_id, int64_t epoch,
                                     const std::string& account_id, const std::string& runner_id,
                                     const std::string& broker_id) override {
    static const std::string sql = absl::StrCat(
        "WITH a AS (UPDATE workers w SET runner_id = $1, broker_id = $5::uuid, updated_at = now()"
        " WHERE w.id = $2::uuid AND w.epoch = $3::bigint AND w.account_id = $4::uuid AND w.state IN ",
        SqlList(LiveWorkerStates()), kReturningLive);
    std::vector<LiveWorker> held =
        LiveFrom(db_.Run("reattach", sql, {runner_id, worker_id, absl::StrCat(epoch), account_id, broker_id}));
    if (held.empty()) return std::nullopt;
    return std::move(held.front());
  }

  void InsertMessage(const pb::Message& m) override {
    db_.Run("insert_message",
            "INSERT INTO worker_messages (id, worker_id, account_id, body, delivered, created_at)"
            " VALUES ($1::uuid, $2::uuid, NULLIF($3, '')::uuid, $4, $5::boolean, $6)",
            {m.id(), m.worker_id(), m.account_id(), m.text(), m.delivered() ? "true" : "false",
             m.created_at()});
    for (int i = 0; i < m.attachments_size(); ++i) {
      const pb::Attachment& a = m.attachments(i);
      db_.Run("insert_attachment",
              "INSERT INTO message_attachments (message_id, n, name, content_type, data)"
              " VALUES ($1::uuid, $2::int, $3, $4, decode($5, 'base64'))",
              {m.id(), absl::StrCat(i), a.name(), a.content_type(), absl::Base64Escape(a.data())});
    }
  }

  void InsertComment(const pb::Comment& c) override {
    db_.Run("insert_comment",
            "INSERT INTO artifact_comments (id, task_id, account_id, artifact, path, line, body,"
            " created_at) VALUES ($1::uuid, $2::uuid, NULLIF($3, '')::uuid, $4, $5, $6::int, $7, $8)",
            {c.id(), c.task_id(), c.account_id(), c.artifact(), c.path(), absl::StrCat(c.line()),
             c.text(), c.created_at()});
  }

  void BeatBroker(const std::string& broker_id, const std::string& runners_json) override {
    db_.Run("beat_broker",
            "INSERT INTO brokers (id, runners) VALUES ($1::uuid, $2::jsonb)"
            " ON CONFLICT (id) DO UPDATE SET seen_at = now(), runners = EXCLUDED.runners",
            {broker_id, runners_json});
  }

  void LeaveBrokers(const std::string& broker_id) override {
    db_.Run("leave_brokers", "DELETE FROM brokers WHERE id = $1::uuid", {broker_id});
  }

  std::vector<LiveWorker> AdoptOrphans(const std::string& broker_id, int64_t dead_after_ms) override {
    static const std::string sql = absl::StrCat(
        "WITH a AS (UPDATE workers w SET broker_id = $1::uuid"
        " WHERE w.state IN ", SqlList(LiveWorkerStates()),
        " AND (w.broker_id IS NULL OR (w.broker_id <> $1::uuid AND NOT EXISTS (SELECT 1 FROM brokers b"
        " WHERE b.id = w.broker_id AND b.seen_at > now() - $2::bigint * interval '1 millisecond')))",
        kReturningLive);
    return LiveFrom(db_.Run("adopt_orphans", sql, {broker_id, absl::StrCat(dead_after_ms)}));
  }

 private:
  // The writer's statements take JSON arrays whose sizes the planner cannot
  // see: one generic plan serves them all, instead of planning each anew.
  // That plan is made once, maybe on empty tables, and must stay good as
  // they grow: every statement here reaches its rows by key, so joins are
  // nested loops over indexes, never a hash of a whole table. Compiling a
  // statement (JIT) would cost more than running it.
  void Configure() {
    db_.Exec("SET jit = off");
    db_.Exec("SET plan_cache_mode = force_generic_plan");
    db_.Exec("SET enable_hashjoin = off");
    db_.Exec("SET enable_mergejoin = off");
    db_.Exec("SET enable_seqscan = off");
  }

  PgConnection db_;
  const std::string replica_id_;
  const std::shared_ptr<const std::atomic<bool>> others_;
};

// The listener: LISTEN on a connection of its own; an eventfd interrupts.
// It says hello when it starts (a notice up to id 0), and the first time
// it hears another replica it turns the writer's notices on and tells
// them where this one's events stand.
class PgReplicaListener final : public ReplicaListener {
 public:
  PgReplicaListener(const std::string& conninfo, std::string replica_id,
                    std::shared_ptr<std::atomic<bool>> others)
      : db_(conninfo),
        wake_(eventfd(0, EFD_CLOEXEC)),
        replica_id_(std::move(replica_id)),
        others_(std::move(others)) {
    if (wake_ < 0) throw std::runtime_error("eventfd failed");
    db_.Exec("LISTEN buildd_events");
    db_.Exec("LISTEN buildd_controls");
    db_.Run("hello", "SELECT pg_notify('buildd_events', $1 || ' 0')", {replica_id_});
  }
  ~PgReplicaListener() override { close(wake_); }

  absl::StatusOr<std::vector<ReplicaNotice>> Wait(absl::Duration timeout) override {
    try {
      std::vector<ReplicaNotice> out = Take();
      if (!out.empty()) return out;
      pollfd fds[2] = {{db_.socket(), POLLIN, 0}, {wake_, POLLIN, 0}};
      const int ms = timeout == absl::InfiniteDuration()
                         ? -1
                         : static_cast<int>(absl::ToInt64Milliseconds(timeout));
      if (poll(fds, 2, ms) < 0 && errno != EINTR) return absl::InternalError("poll failed");
      if ((fds[1].revents & POLLIN) != 0) {
        uint64_t n = 0;
        if (read(wake_, &n, sizeof n) < 0) {
          // Drained already.
        }
      }
      if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) return Take();
      return out;
    } catch (const std::exception& e) {
      return StatusFromDbError(e, "replica listener");
    }
  }

  void Interrupt() override {
    const uint64_t one = 1;
    if (write(wake_, &one, sizeof one) < 0) {
      // The counter is full: a wake is pending anyway.
    }
  }

 private:
  std::vector<ReplicaNotice> Take() {
    std::vector<ReplicaNotice> out;
    bool heard_another = false;
    for (PgConnection::Notification& n : db_.TakeNotifications()) {
      const size_t space = n.payload.find(' ');
      if (space == std::string::npos) continue;
      ReplicaNotice notice;
      notice.from = n.payload.substr(0, space);
      if (n.channel == "buildd_events") {
        notice.committed_up_to = Int(n.payload.substr(space + 1));
      } else {
        notice.control = n.payload.substr(space + 1);
      }
      heard_another = heard_another || notice.from != replica_id_;
      out.push_back(std::move(notice));
    }
    if (heard_another && !others_->exchange(true)) {
      db_.Run("announce",
              "SELECT pg_notify('buildd_events', $1 || ' ' || last_id::text) FROM event_counter",
              {replica_id_});
    }
    return out;
  }

  PgConnection db_;
  const int wake_;
  const std::string replica_id_;
  const std::shared_ptr<std::atomic<bool>> others_;
};

}  // namespace

const std::vector<Migration>& BrokerMigrations() { return BrokerMigrationList(); }

absl::StatusOr<std::unique_ptr<StoreWriter>> PgBrokerStore::OpenWriter() {
  try {
    return std::make_unique<PgStoreWriter>(conninfo_, replica_id_, others_);
  } catch (const std::exception& e) {
    return StatusFromDbError(e, "journal connection");
  }
}

absl::StatusOr<std::unique_ptr<ReplicaListener>> PgBrokerStore::Listen() {
  try {
    return std::make_unique<PgReplicaListener>(conninfo_, replica_id_, others_);
  } catch (const std::exception& e) {
    return StatusFromDbError(e, "replica listener");
  }
}

absl::Status PgBrokerStore::NotifyControl(const std::string& control) {
  return WithSession(pool_, "send a control to the other replicas", [&](soci::session& sql) -> absl::Status {
    const std::string payload = absl::StrCat(replica_id_, " ", control);
    sql << "SELECT pg_notify('buildd_controls', :p)", soci::use(payload);
    return absl::OkStatus();
  });
}

absl::StatusOr<WorkspaceRecord> PgBrokerStore::GetWorkspace(const std::string& id) {
  return WithSession(pool_, "get workspace", [&](soci::session& sql) -> absl::StatusOr<WorkspaceRecord> {
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat("SELECT ", WorkspaceColumns(), " FROM workspaces s WHERE s.id = :id"),
         soci::use(id));
    for (const soci::row& r : rows) return WorkspaceFromRow(r);
    return absl::NotFoundError(absl::StrCat("workspace ", id, " not found"));
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
                                " ORDER BY s.created_at, s.id"),
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
    for (const soci::row& r : rows) return TaskFrom(SociCols(r));
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
             " ORDER BY t.created_at DESC, t.id DESC LIMIT :lim"),
         soci::use(workspace_id), soci::use(workspace_id), soci::use(state), soci::use(state),
         soci::use(all), soci::use(ids), soci::use(limit));
    for (const soci::row& r : rows) out.push_back(TaskFrom(SociCols(r)));
    return out;
  });
}

absl::StatusOr<WorkerRecord> PgBrokerStore::GetWorker(const std::string& id) {
  return WithSession(pool_, "get worker", [&](soci::session& sql) -> absl::StatusOr<WorkerRecord> {
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat("SELECT ", WorkerColumns(), " FROM workers w WHERE w.id = :id"),
         soci::use(id));
    for (const soci::row& r : rows) return WorkerFrom(SociCols(r));
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
             " ORDER BY w.created_at, w.epoch LIMIT 1000"),
         soci::use(task_id), soci::use(task_id), soci::use(workspace_id), soci::use(workspace_id),
         soci::use(all), soci::use(ids));
    for (const soci::row& r : rows) out.push_back(WorkerFrom(SociCols(r)));
    return out;
  });
}

absl::StatusOr<std::vector<pb::Event>> PgBrokerStore::ReadEvents(int64_t after_id,
                                                                 const EventFilter& filter,
                                                                 int limit, int64_t up_to_id) {
  return WithSession(pool_, "read events",
                     [&](soci::session& sql) -> absl::StatusOr<std::vector<pb::Event>> {
                       std::vector<pb::Event> out;
                       const long long after = after_id, up_to = up_to_id;
                       // Only the conditions that apply, on the columns as they
                       // are, so (task_id, id) and (workspace_id, id) serve them.
                       const std::string sql_text = absl::StrCat(
                           "SELECT e.id::text, e.body::text FROM events e WHERE e.id > :after AND e.id <= :upto",
                           filter.task_id.empty() ? "" : " AND e.task_id = :t::uuid",
                           filter.worker_id.empty() ? "" : " AND e.worker_id = :w::uuid",
                           filter.workspace_id.empty() ? "" : " AND e.workspace_id = :s::uuid",
                           filter.allowed_workspaces ? " AND e.workspace_id = ANY(:ids::uuid[])" : "",
                           // By the column, not the text selected.
                           " ORDER BY e.id LIMIT :lim");
                       const std::string ids =
                           filter.allowed_workspaces
                               ? absl::StrCat("{", absl::StrJoin(*filter.allowed_workspaces, ","), "}")
                               : "";
                       soci::details::prepare_temp_type query = (sql.prepare << sql_text);
                       query, soci::use(after), soci::use(up_to);
                       if (!filter.task_id.empty()) query, soci::use(filter.task_id);
                       if (!filter.worker_id.empty()) query, soci::use(filter.worker_id);
                       if (!filter.workspace_id.empty()) query, soci::use(filter.workspace_id);
                       if (filter.allowed_workspaces) query, soci::use(ids);
                       query, soci::use(limit);
                       soci::rowset<soci::row> rows(query);
                       google::protobuf::util::JsonParseOptions options;
                       options.ignore_unknown_fields = true;
                       for (const soci::row& r : rows) {
                         pb::Event e;
                         if (!google::protobuf::util::JsonStringToMessage(r.get<std::string>(1), &e, options).ok()) {
                           return absl::DataLossError("unreadable event body");
                         }
                         e.set_id(Int(r.get<std::string>(0)));
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

absl::StatusOr<bool> PgBrokerStore::HasPendingWithKey(const std::string& workspace_id,
                                                      const std::string& key) {
  return WithSession(pool_, "look for waiting tasks", [&](soci::session& sql) -> absl::StatusOr<bool> {
    int waiting = 0;
    sql << "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE workspace_id = :w::uuid"
           " AND concurrency_key = :k AND state = 'pending' LIMIT 1) p",
        soci::use(workspace_id), soci::use(key), soci::into(waiting);
    return waiting > 0;
  });
}

absl::StatusOr<int64_t> PgBrokerStore::CountPending() {
  return WithSession(pool_, "count pending tasks", [&](soci::session& sql) -> absl::StatusOr<int64_t> {
    long long pending = 0;
    sql << "SELECT count(*) FROM tasks WHERE state = 'pending'", soci::into(pending);
    return static_cast<int64_t>(pending);
  });
}

absl::StatusOr<std::vector<QueueGroup>> PgBrokerStore::Queue() {
  return WithSession(pool_, "count the queue", [&](soci::session& sql) -> absl::StatusOr<std::vector<QueueGroup>> {
    std::vector<QueueGroup> out;
    soci::rowset<soci::row> rows = (sql.prepare << absl::StrCat(
        "SELECT workspace_id::text, runner_preference, required_labels::text, provider,"
        " (state = 'pending')::int::text, count(*)::text FROM tasks WHERE state IN ",
        SqlList(UnfinishedTaskStates()), " GROUP BY 1, 2, 3, 4, 5"));
    for (const soci::row& r : rows) {
      QueueGroup g;
      g.route.workspace_id = r.get<std::string>(0);
      g.route.runner_preference = r.get<std::string>(1);
      g.route.required_labels = LabelsFromJson(r.get<std::string>(2));
      g.route.provider = r.get<std::string>(3);
      g.pending = r.get<std::string>(4) == "1";
      g.tasks = Int(r.get<std::string>(5));
      out.push_back(std::move(g));
    }
    return out;
  });
}

absl::StatusOr<std::vector<PendingGroup>> PgBrokerStore::PendingGroups(
    const std::string& workspace_id, const std::optional<std::set<std::string>>& only) {
  return WithSession(pool_, "group the queue", [&](soci::session& sql) -> absl::StatusOr<std::vector<PendingGroup>> {
    const int all = only ? 0 : 1;
    const std::string ids = only ? IdsJson(*only) : "[]";
    std::vector<PendingGroup> out;
    // Labels as a sorted set, so that ["b","a"] and ["a","b"] are one group.
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat(
             "SELECT p.provider, p.labels::text, count(*)::text,"
             " (array_agg(p.id::text ORDER BY p.created_at, p.id))[1], ",
             TimeCol("min(p.created_at)"),
             " FROM (SELECT t.id, t.provider, t.created_at, (SELECT COALESCE(jsonb_agg(DISTINCT l"
             " ORDER BY l), '[]'::jsonb) FROM jsonb_array_elements_text(t.required_labels) l) AS labels"
             " FROM tasks t WHERE t.state = 'pending' AND (:ws = '' OR t.workspace_id::text = :ws2)"
             " AND (:all <> 0 OR t.workspace_id::text IN (SELECT jsonb_array_elements_text(:ids::jsonb)))) p"
             " GROUP BY p.provider, p.labels ORDER BY min(p.created_at), p.provider, p.labels::text"),
         soci::use(workspace_id), soci::use(workspace_id), soci::use(all), soci::use(ids));
    for (const soci::row& r : rows) {
      PendingGroup g;
      g.provider = r.get<std::string>(0);
      g.labels = LabelsFromJson(r.get<std::string>(1));
      g.tasks = Int(r.get<std::string>(2));
      g.oldest_task_id = r.get<std::string>(3);
      g.oldest_created_at = r.get<std::string>(4);
      out.push_back(std::move(g));
    }
    return out;
  });
}

absl::StatusOr<std::map<std::string, int>> PgBrokerStore::QueuePositions(
    const std::vector<std::string>& task_ids) {
  std::map<std::string, int> out;
  if (task_ids.empty()) return out;
  return WithSession(pool_, "place in the queue", [&](soci::session& sql) -> absl::StatusOr<std::map<std::string, int>> {
    const std::string ids = absl::StrCat("{", absl::StrJoin(task_ids, ","), "}");
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT q.id::text, q.pos::text FROM (SELECT id, row_number() OVER"
                        " (ORDER BY priority DESC, created_at, id) AS pos FROM tasks"
                        " WHERE state = 'pending') q WHERE q.id = ANY(:ids::uuid[])",
         soci::use(ids));
    for (const soci::row& r : rows) out[r.get<std::string>(0)] = static_cast<int>(Int(r.get<std::string>(1)));
    return out;
  });
}

absl::StatusOr<std::string> PgBrokerStore::KeyHolder(const TaskRecord& task) {
  return WithSession(pool_, "find the key's holder", [&](soci::session& sql) -> absl::StatusOr<std::string> {
    std::string holder;
    soci::indicator ind = soci::i_ok;
    const int priority = task.priority;
    // ClaimPending's rule, for one task.
    sql << absl::StrCat(
               "SELECT o.id::text FROM tasks o WHERE o.workspace_id = :ws::uuid"
               " AND o.concurrency_key = :k AND o.id <> :id::uuid AND o.state IN ",
               SqlList(UnfinishedTaskStates()),
               " AND (o.state <> 'pending' OR o.priority > :p OR (o.priority = :p2 AND"
               " (o.created_at, o.id) < (SELECT t.created_at, t.id FROM tasks t WHERE t.id = :id2::uuid)))"
               " ORDER BY o.state = 'pending', o.created_at, o.id LIMIT 1"),
        soci::use(task.workspace_id), soci::use(task.concurrency_key), soci::use(task.id),
        soci::use(priority), soci::use(priority), soci::use(task.id), soci::into(holder, ind);
    return sql.got_data() && ind == soci::i_ok ? holder : "";
  });
}

absl::StatusOr<std::map<std::string, double>> PgBrokerStore::CostsToday() {
  return WithSession(pool_, "costs today", [&](soci::session& sql) -> absl::StatusOr<std::map<std::string, double>> {
    std::map<std::string, double> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT account_id::text, cost_usd::text FROM account_costs"
                        " WHERE day = (now() AT TIME ZONE 'UTC')::date AND cost_usd > 0");
    for (const soci::row& r : rows) {
      double cost = 0;
      if (absl::SimpleAtod(r.get<std::string>(1), &cost)) out[r.get<std::string>(0)] = cost;
    }
    return out;
  });
}

absl::StatusOr<double> PgBrokerStore::CostToday(const std::string& account_id) {
  return WithSession(pool_, "cost today", [&](soci::session& sql) -> absl::StatusOr<double> {
    double total = 0;
    soci::indicator ind = soci::i_ok;
    sql << "SELECT cost_usd FROM account_costs WHERE account_id = :a::uuid"
           " AND day = (now() AT TIME ZONE 'UTC')::date",
        soci::use(account_id), soci::into(total, ind);
    return sql.got_data() && ind == soci::i_ok ? total : 0;
  });
}

absl::StatusOr<std::vector<pb::RunnerInfo>> PgBrokerStore::OtherReplicasRunners(
    const std::string& broker_id, int64_t fresh_ms) {
  return WithSession(pool_, "other replicas' runners",
                     [&](soci::session& sql) -> absl::StatusOr<std::vector<pb::RunnerInfo>> {
    const std::string fresh = absl::StrCat(fresh_ms);
    soci::rowset<std::string> rows =
        (sql.prepare << "SELECT runners::text FROM brokers WHERE id <> :b::uuid"
                        " AND seen_at > now() - :f::bigint * interval '1 millisecond'",
         soci::use(broker_id), soci::use(fresh));
    std::vector<pb::RunnerInfo> out;
    for (const std::string& json : rows) AppendRunners(json, &out);
    if (out.empty()) return out;
    // What they hold is read now, not as they last told.
    static const std::string held = absl::StrCat(
        "SELECT runner_id, count(*)::int FROM workers w WHERE w.state IN ", SqlList(LiveWorkerStates()),
        " AND w.broker_id IN (SELECT id FROM brokers WHERE id <> :b::uuid"
        " AND seen_at > now() - :f::bigint * interval '1 millisecond') GROUP BY runner_id");
    std::map<std::string, int> counts;
    soci::rowset<soci::row> held_rows = (sql.prepare << held, soci::use(broker_id), soci::use(fresh));
    for (const soci::row& r : held_rows) counts[r.get<std::string>(0)] = r.get<int>(1);
    for (pb::RunnerInfo& r : out) {
      auto it = counts.find(r.id());
      r.set_active_workers(it == counts.end() ? 0 : it->second);
    }
    return out;
  });
}

absl::StatusOr<std::vector<pb::Message>> PgBrokerStore::ListMessages(const std::string& worker_id) {
  return WithSession(pool_, "list messages",
                     [&](soci::session& sql) -> absl::StatusOr<std::vector<pb::Message>> {
    std::vector<pb::Message> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT m.id::text, w.task_id::text, COALESCE(m.account_id::text, ''),"
                        " m.body, m.delivered::int, m.created_at,"
                        " COALESCE((SELECT jsonb_agg(jsonb_build_object('name', a.name,"
                        " 'contentType', a.content_type, 'size', length(a.data)::text) ORDER BY a.n)"
                        " FROM message_attachments a WHERE a.message_id = m.id), '[]')::text"
                        " FROM worker_messages m JOIN workers w ON w.id = m.worker_id"
                        " WHERE m.worker_id = :w::uuid ORDER BY m.created_at, m.id LIMIT 1000",
         soci::use(worker_id));
    for (const soci::row& r : rows) {
      pb::Message m;
      m.set_id(r.get<std::string>(0));
      m.set_worker_id(worker_id);
      m.set_task_id(r.get<std::string>(1));
      m.set_role("human");
      m.set_account_id(r.get<std::string>(2));
      m.set_text(r.get<std::string>(3));
      m.set_delivered(r.get<int>(4) != 0);
      m.set_created_at(r.get<std::string>(5));
      pb::ListMessagesResponse attachments;
      if (!google::protobuf::util::JsonStringToMessage(
               absl::StrCat(R"({"messages":[{"attachments":)", r.get<std::string>(6), "}]}"),
               &attachments)
               .ok()) {
        return absl::DataLossError(absl::StrCat("the attachments of message ", m.id()));
      }
      *m.mutable_attachments() = attachments.messages(0).attachments();
      out.push_back(std::move(m));
    }
    return out;
  });
}

absl::StatusOr<pb::Attachment> PgBrokerStore::GetAttachment(const std::string& message_id,
                                                            int index) {
  return WithSession(pool_, "get attachment", [&](soci::session& sql) -> absl::StatusOr<pb::Attachment> {
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT name, content_type, encode(data, 'base64') FROM message_attachments"
                        " WHERE message_id = :m::uuid AND n = :n",
         soci::use(message_id), soci::use(index));
    for (const soci::row& r : rows) {
      pb::Attachment a;
      a.set_name(r.get<std::string>(0));
      a.set_content_type(r.get<std::string>(1));
      std::string data;
      if (!absl::Base64Unescape(absl::StrReplaceAll(r.get<std::string>(2), {{"\n", ""}}), &data)) {
        return absl::DataLossError(absl::StrCat("attachment ", index, " of message ", message_id));
      }
      a.set_size(static_cast<int64_t>(data.size()));
      a.set_data(std::move(data));
      return a;
    }
    return absl::NotFoundError(absl::StrCat("attachment ", index, " of message ", message_id, " not found"));
  });
}

absl::StatusOr<std::string> PgBrokerStore::MessageWorker(const std::string& message_id) {
  return WithSession(pool_, "get message", [&](soci::session& sql) -> absl::StatusOr<std::string> {
    std::string worker;
    sql << "SELECT worker_id::text FROM worker_messages WHERE id = :m::uuid", soci::use(message_id),
        soci::into(worker);
    if (!sql.got_data()) return absl::NotFoundError(absl::StrCat("message ", message_id, " not found"));
    return worker;
  });
}

absl::StatusOr<std::vector<pb::Comment>> PgBrokerStore::ListComments(const std::string& task_id) {
  return WithSession(pool_, "list comments",
                     [&](soci::session& sql) -> absl::StatusOr<std::vector<pb::Comment>> {
    std::vector<pb::Comment> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT id::text, COALESCE(account_id::text, ''), artifact, path, line, body,"
                        " created_at FROM artifact_comments WHERE task_id = :t::uuid"
                        " ORDER BY created_at, id LIMIT 1000",
         soci::use(task_id));
    for (const soci::row& r : rows) {
      pb::Comment c;
      c.set_id(r.get<std::string>(0));
      c.set_task_id(task_id);
      c.set_account_id(r.get<std::string>(1));
      c.set_artifact(r.get<std::string>(2));
      c.set_path(r.get<std::string>(3));
      c.set_line(r.get<int>(4));
      c.set_text(r.get<std::string>(5));
      c.set_created_at(r.get<std::string>(6));
      out.push_back(std::move(c));
    }
    return out;
  });
}

SealedSession PgBrokerStore::SealSession(const AgentSession& s) const {
  return SealedSession{s.task_id,        s.provider,
                       s.session_id,     sessions_.Seal(s.data, s.task_id),
                       s.continue_prompt, s.plan};
}

std::string PgBrokerStore::SealTaskCredentials(const std::string& task_id,
                                               const CredentialMap& credentials) const {
  return SealCredentials(sessions_, task_id, credentials);
}

absl::StatusOr<CredentialMap> PgBrokerStore::OpenTaskCredentials(const TaskRecord& task) const {
  return OpenCredentials(sessions_, task.id, task.sealed_credentials);
}

absl::StatusOr<std::optional<AgentSession>> PgBrokerStore::GetSession(const std::string& task_id,
                                                                      bool with_data) {
  return WithSession(pool_, "get session",
                     [&](soci::session& sql) -> absl::StatusOr<std::optional<AgentSession>> {
    soci::rowset<soci::row> rows =
        (sql.prepare << absl::StrCat("SELECT provider, session_id, ",
                                     with_data ? "encode(data, 'base64')" : "''",
                                     ", sealed::int, continue_prompt, plan"
                                     " FROM session_snapshots WHERE task_id = :t"),
         soci::use(task_id));
    for (const soci::row& r : rows) {
      AgentSession s{task_id, r.get<std::string>(0), r.get<std::string>(1), "",
                     r.get<std::string>(4), r.get<std::string>(5)};
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
      s.data = std::move(data);
      return s;
    }
    return std::nullopt;
  });
}

}  // namespace buildd::broker
