#include "gateway/accounts_client.h"

#include "buildd/v1/accounts.grpc.pb.h"
#include "gateway/grpc_call.h"

namespace buildd::gateway {
namespace {

class GrpcAccountsClient final : public internal::GrpcClient<AccountsClient, pb::AccountService> {
 public:
  using GrpcClient::GrpcClient;

  BUILDD_FORWARD_UNARY(CreateAccount, pb::CreateAccountRequest, pb::CreateAccountResponse)
  BUILDD_FORWARD_UNARY(ListAccounts, pb::ListAccountsRequest, pb::ListAccountsResponse)
  BUILDD_FORWARD_UNARY(GetAccount, pb::GetAccountRequest, pb::Account)
  BUILDD_FORWARD_UNARY(UpdateAccount, pb::UpdateAccountRequest, pb::Account)
  BUILDD_FORWARD_UNARY(RotateKey, pb::RotateKeyRequest, pb::RotateKeyResponse)
  BUILDD_FORWARD_UNARY(RevokeKey, pb::RevokeKeyRequest, pb::RevokeKeyResponse)
  BUILDD_FORWARD_UNARY(GrantWorkspace, pb::GrantWorkspaceRequest, pb::Grant)
  BUILDD_FORWARD_UNARY(ListGrants, pb::ListGrantsRequest, pb::ListGrantsResponse)
  BUILDD_FORWARD_UNARY(Authenticate, pb::AuthenticateRequest, pb::Principal)
  BUILDD_FORWARD_UNARY(CreateSession, pb::CreateSessionRequest, pb::CreateSessionResponse)
  BUILDD_FORWARD_UNARY(ListSessions, pb::ListSessionsRequest, pb::ListSessionsResponse)
  BUILDD_FORWARD_UNARY(RevokeSession, pb::RevokeSessionRequest, pb::Session)
};


}  // namespace

std::unique_ptr<AccountsClient> NewGrpcAccountsClient(std::shared_ptr<grpc::Channel> channel,
                                                      ClientOptions options) {
  return std::make_unique<GrpcAccountsClient>(std::move(channel), options);
}

}  // namespace buildd::gateway
