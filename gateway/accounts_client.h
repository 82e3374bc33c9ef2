#ifndef BUILDD_GATEWAY_ACCOUNTS_CLIENT_H_
#define BUILDD_GATEWAY_ACCOUNTS_CLIENT_H_

#include <memory>
#include <string>

#include "buildd/v1/accounts.pb.h"
#include "gateway/call_meta.h"

namespace grpc {
class Channel;
}

namespace buildd::gateway {

namespace pb = ::buildd::v1;

// Outbound calls to buildd.v1.AccountService. Every method returns at once
// and completes `done` later on another thread. Thread-safe.
class AccountsClient {
 public:
  virtual ~AccountsClient() = default;

  virtual void CreateAccount(const CallMeta& meta, const pb::CreateAccountRequest& request,
                             Callback<pb::CreateAccountResponse> done) = 0;
  virtual void ListAccounts(const CallMeta& meta, const pb::ListAccountsRequest& request,
                            Callback<pb::ListAccountsResponse> done) = 0;
  virtual void GetAccount(const CallMeta& meta, const pb::GetAccountRequest& request,
                          Callback<pb::Account> done) = 0;
  virtual void UpdateAccount(const CallMeta& meta, const pb::UpdateAccountRequest& request,
                             Callback<pb::Account> done) = 0;
  virtual void RotateKey(const CallMeta& meta, const pb::RotateKeyRequest& request,
                         Callback<pb::RotateKeyResponse> done) = 0;
  virtual void RevokeKey(const CallMeta& meta, const pb::RevokeKeyRequest& request,
                         Callback<pb::RevokeKeyResponse> done) = 0;
  virtual void GrantWorkspace(const CallMeta& meta, const pb::GrantWorkspaceRequest& request,
                              Callback<pb::Grant> done) = 0;
  virtual void ListGrants(const CallMeta& meta, const pb::ListGrantsRequest& request,
                          Callback<pb::ListGrantsResponse> done) = 0;
  virtual void Authenticate(const CallMeta& meta, const pb::AuthenticateRequest& request,
                            Callback<pb::Principal> done) = 0;
  virtual void CreateSession(const CallMeta& meta, const pb::CreateSessionRequest& request,
                             Callback<pb::CreateSessionResponse> done) = 0;
  virtual void ListSessions(const CallMeta& meta, const pb::ListSessionsRequest& request,
                            Callback<pb::ListSessionsResponse> done) = 0;
  virtual void RevokeSession(const CallMeta& meta, const pb::RevokeSessionRequest& request,
                             Callback<pb::Session> done) = 0;
  // grpc.health.v1 Check: "SERVING", "NOT_SERVING", ... or the call's error.
  virtual void CheckHealth(Callback<std::string> done) = 0;
};

std::unique_ptr<AccountsClient> NewGrpcAccountsClient(std::shared_ptr<grpc::Channel> channel,
                                                      ClientOptions options);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_ACCOUNTS_CLIENT_H_
