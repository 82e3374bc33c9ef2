#include "tests/testing/pg_fixture.h"

#include <cstdio>
#include <cstdlib>

#include <soci/postgresql/soci-postgresql.h>

#include "absl/strings/str_cat.h"
#include "common/db.h"
#include "common/ids.h"

namespace buildd::testing {

std::string AdminDatabaseUrl() {
  const char* url = std::getenv("BUILDD_TEST_DATABASE_URL");
  if (url == nullptr || *url == '\0') {
    std::fprintf(stderr,
                 "BUILDD_TEST_DATABASE_URL is not set: run the tests with `./buildd test`, "
                 "which starts a private PostgreSQL for them\n");
    std::abort();
  }
  return url;
}

TestDatabase::TestDatabase() : admin_url_(AdminDatabaseUrl()) {
  name_ = absl::StrCat("t_", RandomHex(8));
  auto conninfo = ToConninfo(admin_url_);
  if (!conninfo.ok()) {
    std::fprintf(stderr, "%s\n", std::string(conninfo.status().message()).c_str());
    std::abort();
  }
  soci::session admin(soci::postgresql, *conninfo);
  admin << "CREATE DATABASE " + name_;
  // Same server and credentials, other database.
  url_ = *ToConninfo(admin_url_, name_);
}

TestDatabase::~TestDatabase() {
  try {
    soci::session admin(soci::postgresql, *ToConninfo(admin_url_));
    admin << "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dropping %s: %s\n", name_.c_str(), e.what());
  }
}

std::unique_ptr<soci::connection_pool> TestDatabase::Pool(size_t n) const {
  auto pool = OpenPool(url_, n);
  if (!pool.ok()) {
    std::fprintf(stderr, "%s\n", std::string(pool.status().message()).c_str());
    std::abort();
  }
  return *std::move(pool);
}

}  // namespace buildd::testing
