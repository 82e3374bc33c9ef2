#ifndef BUILDD_COMMON_PG_CONNECTION_H_
#define BUILDD_COMMON_PG_CONNECTION_H_

// One libpq connection whose statements are prepared once and then run by
// name: one round trip per execution, planned once. For a hot path that
// SOCI's prepare-execute-deallocate per statement would slow down. Not
// thread-safe.

#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

namespace buildd {

// A failed statement or a lost connection; sqlstate "08006" for the latter.
class PgError : public std::runtime_error {
 public:
  PgError(std::string sqlstate, const std::string& message)
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const { return sqlstate_; }

 private:
  std::string sqlstate_;
};

// The rows of a statement, as text.
class PgResult {
 public:
  explicit PgResult(PGresult* result);
  int rows() const;
  // The value in row `row`, column `col` ("" for NULL).
  std::string Get(int row, int col) const;
  // The number of rows an UPDATE or DELETE changed.
  int affected() const;

 private:
  std::shared_ptr<PGresult> result_;
};

class PgConnection {
 public:
  // Connects; throws PgError.
  explicit PgConnection(const std::string& conninfo);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs `sql` (with $1… text parameters) as the statement `name`, which is
  // prepared on first use. Throws PgError.
  PgResult Run(const std::string& name, const std::string& sql,
               const std::vector<std::string>& params = {});
  // A statement without parameters, not prepared (BEGIN, COMMIT…).
  void Exec(const char* sql);
  // Connects again; prepared statements are prepared again on next use.
  void Reset();

  // LISTEN notifications (after Exec("LISTEN …")).
  struct Notification {
    std::string channel;
    std::string payload;
  };
  // The socket to wait on for input.
  int socket() const;
  // Reads what arrived and returns the notifications received. Throws
  // PgError when the connection is lost.
  std::vector<Notification> TakeNotifications();

 private:
  PgResult Check(PGresult* result);
  PGconn* conn_;
  std::set<std::string> prepared_;
};

}  // namespace buildd

#endif  // BUILDD_COMMON_PG_CONNECTION_H_
