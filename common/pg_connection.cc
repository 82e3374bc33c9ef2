#include "common/pg_connection.h"

#include <libpq-fe.h>

namespace buildd {
namespace {

constexpr char kConnectionLost[] = "08006";

}  // namespace

PgResult::PgResult(PGresult* result) : result_(result, PQclear) {}

int PgResult::rows() const { return PQntuples(result_.get()); }

std::string PgResult::Get(int row, int col) const {
  return std::string(PQgetvalue(result_.get(), row, col),
                     static_cast<size_t>(PQgetlength(result_.get(), row, col)));
}

int PgResult::affected() const {
  const char* n = PQcmdTuples(result_.get());
  return n == nullptr || *n == '\0' ? 0 : std::stoi(n);
}

PgConnection::PgConnection(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
  if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    const std::string message = conn_ == nullptr ? "out of memory" : PQerrorMessage(conn_);
    if (conn_ != nullptr) PQfinish(conn_);
    throw PgError(kConnectionLost, "cannot connect to PostgreSQL: " + message);
  }
}

PgConnection::~PgConnection() { PQfinish(conn_); }

PgResult PgConnection::Check(PGresult* result) {
  const ExecStatusType status = result == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result);
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return PgResult(result);
  std::string state = kConnectionLost;
  std::string message = PQerrorMessage(conn_);
  if (result != nullptr) {
    if (const char* s = PQresultErrorField(result, PG_DIAG_SQLSTATE)) state = s;
    message = PQresultErrorMessage(result);
    PQclear(result);
  }
  if (PQstatus(conn_) != CONNECTION_OK) state = kConnectionLost;
  while (!message.empty() && message.back() == '\n') message.pop_back();
  throw PgError(state, message);
}

PgResult PgConnection::Run(const std::string& name, const std::string& sql,
                           const std::vector<std::string>& params) {
  if (prepared_.count(name) == 0) {
    Check(PQprepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(params.size()), nullptr));
    prepared_.insert(name);
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& p : params) values.push_back(p.c_str());
  return Check(PQexecPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(),
                              nullptr, nullptr, 0));
}

void PgConnection::Exec(const char* sql) { Check(PQexec(conn_, sql)); }

void PgConnection::Reset() {
  prepared_.clear();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    throw PgError(kConnectionLost, std::string("cannot reconnect to PostgreSQL: ") + PQerrorMessage(conn_));
  }
}

int PgConnection::socket() const { return PQsocket(conn_); }

std::vector<PgConnection::Notification> PgConnection::TakeNotifications() {
  if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK) {
    throw PgError(kConnectionLost, std::string("lost the connection to PostgreSQL: ") + PQerrorMessage(conn_));
  }
  std::vector<Notification> out;
  while (PGnotify* n = PQnotifies(conn_)) {
    out.push_back(Notification{n->relname, n->extra});
    PQfreemem(n);
  }
  return out;
}

}  // namespace buildd
