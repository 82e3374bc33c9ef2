#ifndef BUILDD_SERVICES_ACCOUNTS_ACCOUNTS_SERVICE_H_
#define BUILDD_SERVICES_ACCOUNTS_ACCOUNTS_SERVICE_H_

#include <memory>
#include <set>

#include <boost/asio/thread_pool.hpp>

#include "absl/synchronization/mutex.h"
#include "buildd/v1/accounts.grpc.pb.h"
#include "common/secret_box.h"
#include "services/accounts/account_store.h"
#include "services/accounts/api_keys.h"

namespace buildd::accounts {

namespace pb = ::buildd::v1;

// The gRPC adapter of the accounts service: proto in, store call, proto out.
// Store calls run on its own pool, never on gRPC's callback threads.
class AccountsService final : public pb::AccountService::CallbackService {
 public:
  // `service_key`: what the broker (and other services) present in
  // `authorization: Bearer …` for WatchChanges and RunnerCredentials; those
  // calls refuse every account key, the admin's included.
  // `session_ttl_seconds`: how long a dashboard session lasts.
  AccountsService(AccountStore& store, KeyHasher hasher, SecretBox box, std::string service_key,
                  size_t threads = 4, int64_t session_ttl_seconds = 12 * 3600);
  ~AccountsService() override;

  grpc::ServerUnaryReactor* CreateAccount(grpc::CallbackServerContext* ctx,
                                          const pb::CreateAccountRequest* req,
                                          pb::CreateAccountResponse* resp) override;
  grpc::ServerUnaryReactor* ListAccounts(grpc::CallbackServerContext* ctx,
                                         const pb::ListAccountsRequest* req,
                                         pb::ListAccountsResponse* resp) override;
  grpc::ServerUnaryReactor* GetAccount(grpc::CallbackServerContext* ctx,
                                       const pb::GetAccountRequest* req,
                                       pb::Account* resp) override;
  grpc::ServerUnaryReactor* UpdateAccount(grpc::CallbackServerContext* ctx,
                                          const pb::UpdateAccountRequest* req,
                                          pb::Account* resp) override;
  grpc::ServerUnaryReactor* RotateKey(grpc::CallbackServerContext* ctx,
                                      const pb::RotateKeyRequest* req,
                                      pb::RotateKeyResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeKey(grpc::CallbackServerContext* ctx,
                                      const pb::RevokeKeyRequest* req,
                                      pb::RevokeKeyResponse* resp) override;
  grpc::ServerUnaryReactor* ListGrants(grpc::CallbackServerContext* ctx,
                                       const pb::ListGrantsRequest* req,
                                       pb::ListGrantsResponse* resp) override;
  grpc::ServerUnaryReactor* GrantWorkspace(grpc::CallbackServerContext* ctx,
                                           const pb::GrantWorkspaceRequest* req,
                                           pb::Grant* resp) override;
  grpc::ServerUnaryReactor* Authenticate(grpc::CallbackServerContext* ctx,
                                         const pb::AuthenticateRequest* req,
                                         pb::Principal* resp) override;
  grpc::ServerWriteReactor<pb::AccountChange>* WatchChanges(
      grpc::CallbackServerContext* ctx, const pb::WatchChangesRequest* req) override;
  grpc::ServerUnaryReactor* RunnerCredentials(grpc::CallbackServerContext* ctx,
                                              const pb::RunnerCredentialsRequest* req,
                                              pb::RunnerCredentialsResponse* resp) override;
  // Services only: the workspace's action accounts with their GitHub tokens.
  grpc::ServerUnaryReactor* ActionTargets(grpc::CallbackServerContext* ctx,
                                          const pb::ActionTargetsRequest* req,
                                          pb::ActionTargetsResponse* resp) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* ctx,
                                          const pb::CreateSessionRequest* req,
                                          pb::CreateSessionResponse* resp) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* ctx,
                                         const pb::ListSessionsRequest* req,
                                         pb::ListSessionsResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeSession(grpc::CallbackServerContext* ctx,
                                          const pb::RevokeSessionRequest* req,
                                          pb::Session* resp) override;

 private:
  class Watcher;

  // Runs `fn` (returning absl::Status) on the pool after checking that the
  // caller holds an admin key, then finishes the call.
  template <typename Fn>
  grpc::ServerUnaryReactor* RunAdmin(grpc::CallbackServerContext* ctx, Fn fn);
  // Runs `fn(principal)` on the pool for any valid key or session.
  template <typename Fn>
  grpc::ServerUnaryReactor* RunAuthenticated(grpc::CallbackServerContext* ctx, Fn fn);
  absl::StatusOr<PrincipalRecord> Resolve(const std::string& key);
  // OK when the call's bearer token is the service key.
  absl::Status CheckService(const grpc::CallbackServerContext& ctx) const;
  void Publish(const std::string& account_id, const std::string& kind);

  AccountStore& store_;
  KeyHasher hasher_;
  SecretBox box_;
  const std::string service_key_;
  const int64_t session_ttl_seconds_;
  boost::asio::thread_pool pool_;
  absl::Mutex mu_;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

// Converts a principal to its proto.
void ToProto(const PrincipalRecord& p, pb::Principal* out);
void ToProto(const AccountRecord& a, pb::Account* out);

}  // namespace buildd::accounts

#endif  // BUILDD_SERVICES_ACCOUNTS_ACCOUNTS_SERVICE_H_
