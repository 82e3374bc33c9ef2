#include "gateway/accounts_client.h"

#include "buildd/v1/accounts.grpc.pb.h"
#include "gateway/grpc_call.h"

namespace buildd::gateway {
namespace {

// Forwards one AccountService method through the callback API.
#define BUILDD_ACCOUNTS_UNARY(Method, Request, Response)                                        \
  void Method(const CallMeta& meta, const Request& request, Callback<Response> done) override { \
    internal::CallUnary<Response>(meta, options_.unary_deadline, request, std::move(done),      \
                                  [this](auto* context, auto* req, auto* resp, auto callback) { \
                                    stub_->async()->Method(context, req, resp,                  \
                                                           std::move(callback));                \
                                  });                                                           \
  }

class GrpcAccountsClient final : public AccountsClient {
 public:
  GrpcAccountsClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
      : stub_(pb::AccountService::NewStub(channel)),
        health_(grpc::health::v1::Health::NewStub(channel)),
        options_(options) {}

  BUILDD_ACCOUNTS_UNARY(CreateAccount, pb::CreateAccountRequest, pb::CreateAccountResponse)
  BUILDD_ACCOUNTS_UNARY(ListAccounts, pb::ListAccountsRequest, pb::ListAccountsResponse)
  BUILDD_ACCOUNTS_UNARY(GetAccount, pb::GetAccountRequest, pb::Account)
  BUILDD_ACCOUNTS_UNARY(RotateKey, pb::RotateKeyRequest, pb::RotateKeyResponse)
  BUILDD_ACCOUNTS_UNARY(RevokeKey, pb::RevokeKeyRequest, pb::RevokeKeyResponse)
  BUILDD_ACCOUNTS_UNARY(GrantWorkspace, pb::GrantWorkspaceRequest, pb::Grant)
  BUILDD_ACCOUNTS_UNARY(Authenticate, pb::AuthenticateRequest, pb::Principal)

  void CheckHealth(Callback<std::string> done) override {
    internal::CheckHealth(health_.get(), options_.health_deadline, std::move(done));
  }

 private:
  std::unique_ptr<pb::AccountService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
  ClientOptions options_;
};

#undef BUILDD_ACCOUNTS_UNARY

}  // namespace

std::unique_ptr<AccountsClient> NewGrpcAccountsClient(std::shared_ptr<grpc::Channel> channel,
                                                      ClientOptions options) {
  return std::make_unique<GrpcAccountsClient>(std::move(channel), options);
}

}  // namespace buildd::gateway
