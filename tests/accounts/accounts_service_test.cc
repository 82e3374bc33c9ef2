// The accounts service's gRPC API in-process, over a real PostgreSQL store.
#include "services/accounts/accounts_service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/db.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "services/accounts/pg_account_store.h"
#include "tests/testing/matchers.h"
#include "tests/testing/pg_fixture.h"

namespace buildd::accounts {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kServiceKey[] = "service-key-for-the-accounts-service-test";

class AccountsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = db_.Pool(4);
    ASSERT_THAT(ApplyMigrations(*pool_, "accounts", AccountsMigrations()), IsOk());
    store_ = std::make_unique<PgAccountStore>(*pool_);
    ASSERT_THAT(store_->EnsureAdminKey(hasher_.Hash(admin_key_)), IsOk());
    auto box = SecretBox::FromHex(std::string(64, 'a'));
    ASSERT_THAT(box.status(), IsOk());
    service_ = std::make_unique<AccountsService>(*store_, hasher_, *std::move(box), kServiceKey, 2);
    int port = 0;
    auto server = StartGrpcServer("127.0.0.1:0", {service_.get()}, &port);
    ASSERT_THAT(server.status(), IsOk());
    server_ = *std::move(server);
    stub_ = pb::AccountService::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& key) {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!key.empty()) context->AddMetadata("authorization", "Bearer " + key);
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return context;
  }

  // A service account with a 500 a day budget; its id and key.
  pb::CreateAccountResponse CreateAccount() {
    pb::CreateAccountRequest request;
    request.set_type(pb::Account::service);
    request.set_name("ci");
    request.set_max_concurrent_workers(10);
    request.set_max_concurrent_sessions(2);
    request.set_max_cost_per_day(500);
    pb::CreateAccountResponse response;
    grpc::Status status = stub_->CreateAccount(Context(admin_key_).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  absl::StatusOr<pb::Account> Update(const pb::UpdateAccountRequest& request,
                                     const std::string& key) {
    pb::Account account;
    grpc::Status status = stub_->UpdateAccount(Context(key).get(), request, &account);
    if (!status.ok()) return FromGrpcStatus(status);
    return account;
  }
  absl::StatusOr<pb::Account> Update(const pb::UpdateAccountRequest& request) {
    return Update(request, admin_key_);
  }

  absl::StatusOr<pb::Principal> Authenticate(const std::string& key) {
    pb::AuthenticateRequest request;
    request.set_api_key(key);
    pb::Principal principal;
    grpc::Status status = stub_->Authenticate(Context(key).get(), request, &principal);
    if (!status.ok()) return FromGrpcStatus(status);
    return principal;
  }

  buildd::testing::TestDatabase db_;
  std::unique_ptr<soci::connection_pool> pool_;
  std::unique_ptr<PgAccountStore> store_;
  KeyHasher hasher_{"pepper-of-the-accounts-service-test"};
  const std::string admin_key_ = KeyHasher::NewKey("service");
  std::unique_ptr<AccountsService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pb::AccountService::Stub> stub_;
};

TEST_F(AccountsServiceTest, AdminChangesTheGivenFieldsAndAuthenticateSeesThem) {
  pb::CreateAccountResponse created = CreateAccount();
  ASSERT_THAT(Authenticate(created.api_key()), IsOk());

  pb::UpdateAccountRequest request;
  request.set_id(created.id());
  request.set_max_cost_per_day(2.5);
  request.set_max_concurrent_workers(4);
  auto updated = Update(request);
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->id(), created.id());
  EXPECT_DOUBLE_EQ(updated->max_cost_per_day(), 2.5);
  EXPECT_EQ(updated->max_concurrent_workers(), 4);
  // What the request left out is kept.
  EXPECT_EQ(updated->name(), "ci");
  EXPECT_EQ(updated->max_concurrent_sessions(), 2);
  EXPECT_EQ(updated->created_at(), created.account().created_at());

  pb::GetAccountRequest get;
  get.set_id(created.id());
  pb::Account got;
  ASSERT_TRUE(stub_->GetAccount(Context(admin_key_).get(), get, &got).ok());
  EXPECT_DOUBLE_EQ(got.max_cost_per_day(), 2.5);
  // Its own key reads it too (who it is), never another's.
  pb::Account own;
  ASSERT_TRUE(stub_->GetAccount(Context(created.api_key()).get(), get, &own).ok());
  EXPECT_EQ(own.name(), "ci");
  pb::CreateAccountResponse other = CreateAccount();
  pb::Account theirs;
  pb::GetAccountRequest get_other;
  get_other.set_id(other.id());
  EXPECT_EQ(stub_->GetAccount(Context(created.api_key()).get(), get_other, &theirs).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // The account's key resolves to the new limits at once.
  auto principal = Authenticate(created.api_key());
  ASSERT_THAT(principal, IsOk());
  EXPECT_DOUBLE_EQ(principal->max_cost_per_day(), 2.5);
  EXPECT_EQ(principal->max_concurrent_workers(), 4);
}

TEST_F(AccountsServiceTest, ZeroIsSetAndNotTakenAsAbsent) {
  pb::CreateAccountResponse created = CreateAccount();
  pb::UpdateAccountRequest request;
  request.set_id(created.id());
  request.set_max_cost_per_day(0);
  request.set_max_concurrent_workers(0);
  auto updated = Update(request);
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->max_cost_per_day(), 0);
  EXPECT_EQ(updated->max_concurrent_workers(), 0);
  EXPECT_EQ(updated->max_concurrent_sessions(), 2);

  pb::UpdateAccountRequest rename;
  rename.set_id(created.id());
  rename.set_name("nightly");
  updated = Update(rename);
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->name(), "nightly");
  EXPECT_EQ(updated->max_cost_per_day(), 0);
}

TEST_F(AccountsServiceTest, UpdateNeedsAnAdmin) {
  pb::CreateAccountResponse created = CreateAccount();
  pb::UpdateAccountRequest request;
  request.set_id(created.id());
  request.set_max_cost_per_day(1e6);
  EXPECT_THAT(Update(request, created.api_key()), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(Update(request, ""), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(Update(request, KeyHasher::NewKey("service")),
              StatusIs(absl::StatusCode::kUnauthenticated));
  auto principal = Authenticate(created.api_key());
  ASSERT_THAT(principal, IsOk());
  EXPECT_EQ(principal->max_cost_per_day(), 500);
}

TEST_F(AccountsServiceTest, AnAdminsDashboardSessionMayUpdate) {
  pb::CreateSessionResponse session;
  ASSERT_TRUE(
      stub_->CreateSession(Context(admin_key_).get(), pb::CreateSessionRequest(), &session).ok());
  pb::CreateAccountResponse created = CreateAccount();
  pb::UpdateAccountRequest request;
  request.set_id(created.id());
  request.set_max_concurrent_sessions(5);
  auto updated = Update(request, session.token());
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->max_concurrent_sessions(), 5);
}

TEST_F(AccountsServiceTest, BadValuesAreInvalidArgumentNamingTheField) {
  pb::CreateAccountResponse created = CreateAccount();
  auto with = [&](auto set) {
    pb::UpdateAccountRequest request;
    request.set_id(created.id());
    set(request);
    return Update(request);
  };
  EXPECT_THAT(with([](auto& r) { r.set_max_concurrent_workers(-1); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("maxConcurrentWorkers")));
  EXPECT_THAT(with([](auto& r) { r.set_max_concurrent_sessions(-2); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("maxConcurrentSessions")));
  EXPECT_THAT(with([](auto& r) { r.set_max_cost_per_day(-0.01); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("maxCostPerDay")));
  EXPECT_THAT(with([](auto& r) { r.set_max_cost_per_day(std::nan("")); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("maxCostPerDay")));
  EXPECT_THAT(with([](auto& r) { r.set_max_cost_per_day(std::numeric_limits<double>::infinity()); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("maxCostPerDay")));
  EXPECT_THAT(with([](auto& r) { r.set_name(""); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(with([](auto& r) { r.set_name(std::string(201, 'n')); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(with([](auto& r) { r.set_name("bad\x01name"); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  // One bad field refuses the whole update.
  EXPECT_THAT(with([](auto& r) {
                r.set_max_concurrent_workers(7);
                r.set_max_cost_per_day(-1);
              }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("maxCostPerDay")));
  EXPECT_THAT(with([](auto&) {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nothing to change")));
  auto principal = Authenticate(created.api_key());
  ASSERT_THAT(principal, IsOk());
  EXPECT_EQ(principal->max_concurrent_workers(), 10);
  EXPECT_EQ(principal->max_cost_per_day(), 500);
}

TEST_F(AccountsServiceTest, UnknownOrMalformedIdIsRefused) {
  pb::UpdateAccountRequest request;
  request.set_id(NewUuid());
  request.set_max_cost_per_day(1);
  EXPECT_THAT(Update(request), StatusIs(absl::StatusCode::kNotFound));
  request.set_id("not-a-uuid");
  EXPECT_THAT(Update(request), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id")));
}

TEST_F(AccountsServiceTest, WatchChangesAnnouncesAnUpdateOfTheAccount) {
  pb::CreateAccountResponse created = CreateAccount();
  grpc::ClientContext watch;
  watch.AddMetadata("authorization", std::string("Bearer ") + kServiceKey);
  watch.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = stub_->WatchChanges(&watch, pb::WatchChangesRequest());
  pb::AccountChange change;
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.kind(), "watching");

  // A refused update changes nothing and announces nothing.
  pb::UpdateAccountRequest bad;
  bad.set_id(created.id());
  bad.set_max_concurrent_workers(-1);
  EXPECT_THAT(Update(bad), StatusIs(absl::StatusCode::kInvalidArgument));

  pb::UpdateAccountRequest request;
  request.set_id(created.id());
  request.set_max_cost_per_day(2.5);
  ASSERT_THAT(Update(request), IsOk());
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.account_id(), created.id());
  EXPECT_EQ(change.kind(), "limits_changed");

  watch.TryCancel();
  while (reader->Read(&change)) {
  }
  (void)reader->Finish();
}

}  // namespace
}  // namespace buildd::accounts
