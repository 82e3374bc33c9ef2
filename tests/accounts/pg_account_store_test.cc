#include "services/accounts/pg_account_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/db.h"
#include "common/ids.h"
#include "tests/testing/matchers.h"
#include "tests/testing/pg_fixture.h"

namespace buildd::accounts {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::StatusIs;

class PgAccountStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = db_.Pool(2);
    ASSERT_THAT(ApplyMigrations(*pool_, "accounts", AccountsMigrations()), IsOk());
    store_ = std::make_unique<PgAccountStore>(*pool_);
  }

  AccountRecord NewAccount(const std::string& type = "service") {
    AccountRecord a;
    a.id = NewUuid();
    a.type = type;
    a.name = "worker " + a.id.substr(0, 4);
    a.auth_type = "api";
    a.max_concurrent_workers = 10;
    a.max_cost_per_day = 500;
    return a;
  }

  buildd::testing::TestDatabase db_;
  std::unique_ptr<soci::connection_pool> pool_;
  std::unique_ptr<PgAccountStore> store_;
};

TEST_F(PgAccountStoreTest, MigrationsApplyOnce) {
  EXPECT_THAT(ApplyMigrations(*pool_, "accounts", AccountsMigrations()), IsOk());
  soci::session sql(*pool_);
  int n = 0;
  sql << "SELECT count(*) FROM schema_migrations WHERE service = 'accounts'", soci::into(n);
  EXPECT_EQ(n, static_cast<int>(AccountsMigrations().size()));
}

TEST_F(PgAccountStoreTest, CreatedAccountIsFoundByItsKeyHash) {
  AccountRecord a = NewAccount();
  auto created = store_->CreateAccount(a, "sealed-bytes", NewUuid(), "hash-1");
  ASSERT_THAT(created, IsOk());
  EXPECT_EQ(created->name, a.name);
  EXPECT_EQ(created->max_cost_per_day, 500);
  EXPECT_TRUE(created->has_credentials);
  EXPECT_FALSE(created->created_at.empty());

  auto principal = store_->FindByKeyHash("hash-1");
  ASSERT_THAT(principal, IsOk());
  EXPECT_EQ(principal->account.id, a.id);
  EXPECT_THAT(store_->FindByKeyHash("hash-2"), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(PgAccountStoreTest, CredentialsAreStoredOnlyAsTheSealedBytes) {
  AccountRecord a = NewAccount();
  ASSERT_THAT(store_->CreateAccount(a, "\x01\x02sealed", NewUuid(), "hash-c"), IsOk());
  soci::session sql(*pool_);
  std::string hex;
  sql << "SELECT encode(credentials, 'hex') FROM accounts WHERE id = :id", soci::use(a.id),
      soci::into(hex);
  EXPECT_EQ(hex, "01027365616c6564");
}

TEST_F(PgAccountStoreTest, UpdateSetsOnlyTheGivenFields) {
  AccountRecord a = NewAccount();
  a.max_concurrent_sessions = 2;
  ASSERT_THAT(store_->CreateAccount(a, "sealed", NewUuid(), "hash-u"), IsOk());
  AccountUpdate update;
  update.max_cost_per_day = 2.5;
  update.max_concurrent_workers = 0;
  auto updated = store_->UpdateAccount(a.id, update);
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->id, a.id);
  EXPECT_DOUBLE_EQ(updated->max_cost_per_day, 2.5);
  EXPECT_EQ(updated->max_concurrent_workers, 0);
  EXPECT_EQ(updated->max_concurrent_sessions, 2);
  EXPECT_EQ(updated->name, a.name);
  EXPECT_TRUE(updated->has_credentials);
  EXPECT_FALSE(updated->created_at.empty());

  AccountUpdate rename;
  rename.name = "renamed";
  rename.max_concurrent_sessions = 7;
  ASSERT_THAT(store_->UpdateAccount(a.id, rename), IsOk());
  auto got = store_->GetAccount(a.id);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->name, "renamed");
  EXPECT_EQ(got->max_concurrent_sessions, 7);
  EXPECT_DOUBLE_EQ(got->max_cost_per_day, 2.5);
  // The principal a key resolves to carries the new limits.
  auto principal = store_->FindByKeyHash("hash-u");
  ASSERT_THAT(principal, IsOk());
  EXPECT_DOUBLE_EQ(principal->account.max_cost_per_day, 2.5);
  EXPECT_EQ(principal->account.max_concurrent_workers, 0);
}

TEST_F(PgAccountStoreTest, UpdateOfAnUnknownAccountIsNotFound) {
  AccountUpdate update;
  update.max_cost_per_day = 1;
  EXPECT_THAT(store_->UpdateAccount(NewUuid(), update), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PgAccountStoreTest, RevokedKeysStopResolving) {
  AccountRecord a = NewAccount();
  const std::string k1 = NewUuid();
  ASSERT_THAT(store_->CreateAccount(a, "", k1, "hash-r1"), IsOk());
  ASSERT_THAT(store_->AddKey(a.id, NewUuid(), "hash-r2", false), IsOk());
  auto revoked = store_->RevokeKeys(a.id, k1);
  ASSERT_THAT(revoked, IsOk());
  EXPECT_EQ(*revoked, 1);
  EXPECT_THAT(store_->FindByKeyHash("hash-r1"), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(store_->FindByKeyHash("hash-r2"), IsOk());
  EXPECT_THAT(store_->RevokeKeys(a.id, k1), StatusIs(absl::StatusCode::kNotFound));
  auto all = store_->RevokeKeys(a.id, "");
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(*all, 1);
  EXPECT_THAT(store_->FindByKeyHash("hash-r2"), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(PgAccountStoreTest, RotationCanRevokeTheOtherKeysAtomically) {
  AccountRecord a = NewAccount();
  ASSERT_THAT(store_->CreateAccount(a, "", NewUuid(), "hash-o1"), IsOk());
  ASSERT_THAT(store_->AddKey(a.id, NewUuid(), "hash-o2", true), IsOk());
  EXPECT_THAT(store_->FindByKeyHash("hash-o1"), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(store_->FindByKeyHash("hash-o2"), IsOk());
}

TEST_F(PgAccountStoreTest, GrantsAreUpsertedAndReturnedWithThePrincipal) {
  AccountRecord a = NewAccount();
  ASSERT_THAT(store_->CreateAccount(a, "", NewUuid(), "hash-g"), IsOk());
  const std::string ws = NewUuid();
  ASSERT_THAT(store_->UpsertGrant({a.id, ws, true, false}), IsOk());
  ASSERT_THAT(store_->UpsertGrant({a.id, ws, true, true}), IsOk());
  auto p = store_->FindByKeyHash("hash-g");
  ASSERT_THAT(p, IsOk());
  ASSERT_EQ(p->grants.size(), 1u);
  EXPECT_EQ(p->grants[0].workspace_id, ws);
  EXPECT_TRUE(p->grants[0].can_claim);
  EXPECT_TRUE(p->grants[0].can_create);
  EXPECT_THAT(store_->UpsertGrant({NewUuid(), ws, true, true}),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PgAccountStoreTest, DuplicateKeyHashIsAlreadyExists) {
  ASSERT_THAT(store_->CreateAccount(NewAccount(), "", NewUuid(), "hash-d"), IsOk());
  EXPECT_THAT(store_->CreateAccount(NewAccount(), "", NewUuid(), "hash-d"),
              StatusIs(absl::StatusCode::kAlreadyExists));
  // Nothing of the failed account was kept.
  auto list = store_->ListAccounts();
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(PgAccountStoreTest, AdminBootstrapIsIdempotent) {
  ASSERT_THAT(store_->EnsureAdminKey("admin-hash"), IsOk());
  ASSERT_THAT(store_->EnsureAdminKey("admin-hash"), IsOk());
  auto p = store_->FindByKeyHash("admin-hash");
  ASSERT_THAT(p, IsOk());
  EXPECT_TRUE(p->account.is_admin);
  // A second bootstrap key joins the same admin account.
  ASSERT_THAT(store_->EnsureAdminKey("admin-hash-2"), IsOk());
  auto p2 = store_->FindByKeyHash("admin-hash-2");
  ASSERT_THAT(p2, IsOk());
  EXPECT_EQ(p2->account.id, p->account.id);
  auto list = store_->ListAccounts();
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(PgAccountStoreTest, RunnerBootstrapMakesOneClaimAllAccountThatIsNotAnAdmin) {
  ASSERT_THAT(store_->EnsureAdminKey("admin-hash"), IsOk());
  ASSERT_THAT(store_->EnsureRunnerKey("local runner", "runner-hash"), IsOk());
  ASSERT_THAT(store_->EnsureRunnerKey("local runner", "runner-hash"), IsOk());
  auto p = store_->FindByKeyHash("runner-hash");
  ASSERT_THAT(p, IsOk());
  EXPECT_TRUE(p->account.claim_all);
  EXPECT_FALSE(p->account.is_admin);
  EXPECT_EQ(p->account.name, "local runner");
  // A new key (rotated secrets) joins the same account, not the admin's.
  ASSERT_THAT(store_->EnsureRunnerKey("local runner", "runner-hash-2"), IsOk());
  auto p2 = store_->FindByKeyHash("runner-hash-2");
  ASSERT_THAT(p2, IsOk());
  EXPECT_EQ(p2->account.id, p->account.id);
  EXPECT_NE(p2->account.id, store_->FindByKeyHash("admin-hash")->account.id);
  auto list = store_->ListAccounts();
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(list->size(), 2u);
}

TEST_F(PgAccountStoreTest, ShareCredentialsIsKeptWithTheGrant) {
  auto a = store_->CreateAccount(NewAccount(), "", NewUuid(), "hash-share");
  ASSERT_THAT(a, IsOk());
  const std::string ws = NewUuid();
  ASSERT_THAT(store_->UpsertGrant({a->id, ws, true, false, true}), IsOk());
  auto p = store_->FindByKeyHash("hash-share");
  ASSERT_THAT(p, IsOk());
  ASSERT_EQ(p->grants.size(), 1u);
  EXPECT_TRUE(p->grants[0].share_credentials);
  ASSERT_THAT(store_->UpsertGrant({a->id, ws, true, false, false}), IsOk());
  EXPECT_FALSE(store_->FindByKeyHash("hash-share")->grants[0].share_credentials);
}

}  // namespace
}  // namespace buildd::accounts
