#ifndef BUILDD_TESTS_TESTING_PG_FIXTURE_H_
#define BUILDD_TESTS_TESTING_PG_FIXTURE_H_

#include <memory>
#include <string>

#include <soci/soci.h>

namespace buildd::testing {

// A fresh PostgreSQL database for one test, made through the server that
// BUILDD_TEST_DATABASE_URL points at (`./buildd test` starts a private one),
// and dropped afterwards. Aborts the test binary with a clear message when
// the variable is unset: store tests never skip.
class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // URL of the new database.
  const std::string& url() const { return url_; }
  // A pool of `n` sessions on it.
  std::unique_ptr<soci::connection_pool> Pool(size_t n = 4) const;

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// BUILDD_TEST_DATABASE_URL, or a fatal error that says how to run tests.
std::string AdminDatabaseUrl();

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_PG_FIXTURE_H_
