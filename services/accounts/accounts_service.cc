#include "services/accounts/accounts_service.h"

#include <cmath>

#include <boost/asio/post.hpp>

#include "absl/strings/str_cat.h"
#include "buildd/v1/runner.pb.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/text.h"
#include "common/write_queue.h"
#include "services/accounts/github_account.h"

namespace buildd::accounts {
void ToProto(const AccountRecord& a, pb::Account* out) {
  out->set_id(a.id);
  pb::Account::Type type = pb::Account::type_unspecified;
  pb::Account::Type_Parse(a.type, &type);
  out->set_type(type);
  out->set_name(a.name);
  pb::Account::AuthType auth = pb::Account::auth_type_unspecified;
  pb::Account::AuthType_Parse(a.auth_type, &auth);
  out->set_auth_type(auth);
  out->set_max_concurrent_workers(a.max_concurrent_workers);
  out->set_max_concurrent_sessions(a.max_concurrent_sessions);
  out->set_max_cost_per_day(a.max_cost_per_day);
  out->set_github_id(a.github_id);
  out->set_is_admin(a.is_admin);
  out->set_has_credentials(a.has_credentials);
  out->set_created_at(a.created_at);
  out->set_claim_all(a.claim_all);
  out->set_has_github_token(a.has_github_token);
}

void ToProto(const PrincipalRecord& p, pb::Principal* out) {
  out->set_account_id(p.account.id);
  pb::Account::Type type = pb::Account::type_unspecified;
  pb::Account::Type_Parse(p.account.type, &type);
  out->set_type(type);
  out->set_is_admin(p.account.is_admin);
  out->set_key_id(p.key_id);
  out->set_max_concurrent_workers(p.account.max_concurrent_workers);
  out->set_max_cost_per_day(p.account.max_cost_per_day);
  out->set_claim_all(p.account.claim_all);
  out->set_session_id(p.session_id);
  for (const GrantRecord& g : p.grants) {
    pb::Grant* grant = out->add_grants();
    grant->set_account_id(g.account_id);
    grant->set_workspace_id(g.workspace_id);
    grant->set_can_claim(g.can_claim);
    grant->set_can_create(g.can_create);
    grant->set_share_credentials(g.share_credentials);
  }
}

void ToProto(const SessionRecord& s, pb::Session* out) {
  out->set_id(s.id);
  out->set_account_id(s.account_id);
  out->set_key_id(s.key_id);
  out->set_user_agent(s.user_agent);
  out->set_created_at(s.created_at);
  out->set_expires_at(s.expires_at);
  out->set_revoked(s.revoked);
}

namespace {

// The rules an account's name and limits follow, on creation and update.
absl::Status CheckName(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("name is required");
  if (name.size() > 200) return absl::InvalidArgumentError("name is longer than 200 characters");
  return CheckText("name", name);
}

absl::Status CheckLimit(absl::string_view field, int value) {
  if (value < 0) return absl::InvalidArgumentError(absl::StrCat(field, " must not be negative"));
  return absl::OkStatus();
}

absl::Status CheckCost(double value) {
  if (!std::isfinite(value)) return absl::InvalidArgumentError("maxCostPerDay must be a finite number");
  if (value < 0) return absl::InvalidArgumentError("maxCostPerDay must not be negative");
  return absl::OkStatus();
}

// A WatchChanges call refused before it starts.
class Refusal final : public grpc::ServerWriteReactor<pb::AccountChange> {
 public:
  explicit Refusal(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::Status AccountsService::CheckService(const grpc::CallbackServerContext& ctx) const {
  const std::string token = BearerToken(ctx);
  if (token.empty()) {
    return absl::UnauthenticatedError("this call needs the service key (authorization: Bearer …)");
  }
  if (service_key_.empty() || !KeyHasher::Equal(token, service_key_)) {
    return absl::PermissionDeniedError("this call is for buildd's services only, not account keys");
  }
  return absl::OkStatus();
}

class AccountsService::Watcher final : public QueuedWriteReactor<pb::AccountChange> {
 public:
  explicit Watcher(AccountsService* service) : service_(service) {
    // The first message tells the client the watch is in place.
    pb::AccountChange hello;
    hello.set_kind("watching");
    Send(std::move(hello));
  }

 protected:
  void OnClosed() override {
    absl::MutexLock lock(&service_->mu_);
    service_->watchers_.erase(this);
  }

 private:
  AccountsService* service_;
};

AccountsService::AccountsService(AccountStore& store, KeyHasher hasher, SecretBox box,
                                 std::string service_key, size_t threads,
                                 int64_t session_ttl_seconds)
    : store_(store),
      hasher_(std::move(hasher)),
      box_(std::move(box)),
      service_key_(std::move(service_key)),
      session_ttl_seconds_(session_ttl_seconds),
      pool_(threads) {}

AccountsService::~AccountsService() {
  pool_.join();
}

absl::StatusOr<PrincipalRecord> AccountsService::Resolve(const std::string& key) {
  if (key.empty()) return absl::UnauthenticatedError("missing API key (authorization: Bearer …)");
  if (!LooksLikeKey(key)) return absl::UnauthenticatedError("invalid or revoked API key");
  if (IsSessionToken(key)) return store_.FindBySessionHash(hasher_.Hash(key));
  return store_.FindByKeyHash(hasher_.Hash(key));
}

template <typename Fn>
grpc::ServerUnaryReactor* AccountsService::RunAuthenticated(grpc::CallbackServerContext* ctx, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  boost::asio::post(pool_, [this, reactor, key = BearerToken(*ctx), fn = std::move(fn)]() mutable {
    absl::Status status = [&]() -> absl::Status {
      BUILDD_ASSIGN_OR_RETURN(PrincipalRecord principal, Resolve(key));
      return fn(principal);
    }();
    reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

template <typename Fn>
grpc::ServerUnaryReactor* AccountsService::RunAdmin(grpc::CallbackServerContext* ctx, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  boost::asio::post(pool_, [this, reactor, key = BearerToken(*ctx), fn = std::move(fn)]() mutable {
    absl::Status status = [&]() -> absl::Status {
      BUILDD_ASSIGN_OR_RETURN(PrincipalRecord principal, Resolve(key));
      if (!principal.account.is_admin) {
        return absl::PermissionDeniedError("this call needs an admin key");
      }
      return fn();
    }();
    reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

void AccountsService::Publish(const std::string& account_id, const std::string& kind) {
  pb::AccountChange change;
  change.set_account_id(account_id);
  change.set_kind(kind);
  absl::MutexLock lock(&mu_);
  for (Watcher* w : watchers_) w->Send(change);
}

grpc::ServerUnaryReactor* AccountsService::CreateAccount(grpc::CallbackServerContext* ctx,
                                                         const pb::CreateAccountRequest* req,
                                                         pb::CreateAccountResponse* resp) {
  return RunAdmin(ctx, [this, req, resp]() -> absl::Status {
    if (!pb::Account::Type_IsValid(req->type()) || !pb::Account::AuthType_IsValid(req->auth_type())) {
      return absl::InvalidArgumentError("type must be user, service or action and authType oauth or api");
    }
    if (req->type() == pb::Account::type_unspecified) {
      return absl::InvalidArgumentError("type is required: user, service or action");
    }
    BUILDD_RETURN_IF_ERROR(CheckName(req->name()));
    BUILDD_RETURN_IF_ERROR(CheckLimit("maxConcurrentWorkers", req->max_concurrent_workers()));
    BUILDD_RETURN_IF_ERROR(CheckLimit("maxConcurrentSessions", req->max_concurrent_sessions()));
    BUILDD_RETURN_IF_ERROR(CheckCost(req->max_cost_per_day()));
    AccountRecord account;
    account.id = NewUuid();
    account.type = pb::Account::Type_Name(req->type());
    account.name = req->name();
    pb::Account::AuthType auth = req->auth_type();
    if (auth == pb::Account::auth_type_unspecified) {
      auth = req->type() == pb::Account::user ? pb::Account::oauth : pb::Account::api;
    }
    if (req->type() == pb::Account::action && auth == pb::Account::oauth) {
      return absl::InvalidArgumentError("authType oauth is not possible for action accounts");
    }
    account.auth_type = pb::Account::AuthType_Name(auth);
    account.max_concurrent_workers = req->max_concurrent_workers() > 0 ? req->max_concurrent_workers() : 3;
    account.max_concurrent_sessions = req->max_concurrent_sessions() > 0 ? req->max_concurrent_sessions() : 1;
    account.max_cost_per_day = req->max_cost_per_day();
    BUILDD_RETURN_IF_ERROR(CheckGitHubId(req->github_id()));
    account.github_id = req->github_id();
    account.claim_all = req->claim_all();
    if (!req->github_token().empty()) {
      BUILDD_RETURN_IF_ERROR(CheckGitHubToken(req->github_token(), account.type));
      if (account.github_id.empty()) {
        return absl::InvalidArgumentError("githubToken needs githubId: the repository it is for");
      }
    }

    pb::Credentials creds;
    if (!req->anthropic_api_key().empty()) (*creds.mutable_env())["ANTHROPIC_API_KEY"] = req->anthropic_api_key();
    if (!req->oauth_token().empty()) (*creds.mutable_env())["CLAUDE_CODE_OAUTH_TOKEN"] = req->oauth_token();
    if (!req->openai_api_key().empty()) (*creds.mutable_env())["OPENAI_API_KEY"] = req->openai_api_key();
    std::string sealed;
    if (!creds.env().empty()) sealed = box_.Seal(creds.SerializeAsString(), account.id);

    const std::string key = KeyHasher::NewKey(account.type);
    const std::string key_id = NewUuid();
    BUILDD_ASSIGN_OR_RETURN(AccountRecord created,
                            store_.CreateAccount(account, sealed, key_id, hasher_.Hash(key)));
    if (!req->github_token().empty()) {
      AccountUpdate token;
      token.sealed_github_token = box_.Seal(req->github_token(), GitHubTokenContext(created.id));
      BUILDD_ASSIGN_OR_RETURN(created, store_.UpdateAccount(created.id, token));
    }
    resp->set_id(created.id);
    resp->set_api_key(key);
    resp->set_key_id(key_id);
    ToProto(created, resp->mutable_account());
    Log()->info("account created account={} type={}", created.id, created.type);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::ListAccounts(grpc::CallbackServerContext* ctx,
                                                        const pb::ListAccountsRequest* req,
                                                        pb::ListAccountsResponse* resp) {
  return RunAdmin(ctx, [this, resp]() -> absl::Status {
    BUILDD_ASSIGN_OR_RETURN(std::vector<AccountRecord> accounts, store_.ListAccounts());
    for (const AccountRecord& a : accounts) ToProto(a, resp->add_accounts());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::GetAccount(grpc::CallbackServerContext* ctx,
                                                      const pb::GetAccountRequest* req,
                                                      pb::Account* resp) {
  // An admin reads any account; a key its own (who the dashboard says it is).
  return RunAuthenticated(ctx, [this, req, resp](const PrincipalRecord& p) -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->id(), "id"));
    if (!p.account.is_admin && req->id() != p.account.id) {
      return absl::PermissionDeniedError("reading another account needs an admin key");
    }
    BUILDD_ASSIGN_OR_RETURN(AccountRecord account, store_.GetAccount(req->id()));
    ToProto(account, resp);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::UpdateAccount(grpc::CallbackServerContext* ctx,
                                                         const pb::UpdateAccountRequest* req,
                                                         pb::Account* resp) {
  return RunAdmin(ctx, [this, req, resp]() -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->id(), "id"));
    AccountUpdate update;
    if (req->has_name()) {
      BUILDD_RETURN_IF_ERROR(CheckName(req->name()));
      update.name = req->name();
    }
    if (req->has_max_concurrent_workers()) {
      BUILDD_RETURN_IF_ERROR(CheckLimit("maxConcurrentWorkers", req->max_concurrent_workers()));
      update.max_concurrent_workers = req->max_concurrent_workers();
    }
    if (req->has_max_concurrent_sessions()) {
      BUILDD_RETURN_IF_ERROR(CheckLimit("maxConcurrentSessions", req->max_concurrent_sessions()));
      update.max_concurrent_sessions = req->max_concurrent_sessions();
    }
    if (req->has_max_cost_per_day()) {
      BUILDD_RETURN_IF_ERROR(CheckCost(req->max_cost_per_day()));
      update.max_cost_per_day = req->max_cost_per_day();
    }
    if (req->has_github_id()) {
      BUILDD_RETURN_IF_ERROR(CheckGitHubId(req->github_id()));
      update.github_id = req->github_id();
    }
    if (req->has_github_token()) {
      if (req->github_token().empty()) {
        update.sealed_github_token = "";
      } else {
        BUILDD_ASSIGN_OR_RETURN(AccountRecord current, store_.GetAccount(req->id()));
        BUILDD_RETURN_IF_ERROR(CheckGitHubToken(req->github_token(), current.type));
        if (update.github_id.value_or(current.github_id).empty()) {
          return absl::InvalidArgumentError("githubToken needs githubId: the repository it is for");
        }
        update.sealed_github_token = box_.Seal(req->github_token(), GitHubTokenContext(req->id()));
      }
    }
    if (update.empty()) {
      return absl::InvalidArgumentError(
          "nothing to change: give name, maxConcurrentWorkers, maxConcurrentSessions, "
          "maxCostPerDay, githubId or githubToken");
    }
    BUILDD_ASSIGN_OR_RETURN(AccountRecord account, store_.UpdateAccount(req->id(), update));
    ToProto(account, resp);
    // Whoever cached the account's principal (the broker, for its runners'
    // limits) asks again.
    Publish(account.id, "limits_changed");
    Log()->info("account updated account={} maxConcurrentWorkers={} maxConcurrentSessions={} "
                "maxCostPerDay={}",
                account.id, account.max_concurrent_workers, account.max_concurrent_sessions,
                account.max_cost_per_day);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::RotateKey(grpc::CallbackServerContext* ctx,
                                                     const pb::RotateKeyRequest* req,
                                                     pb::RotateKeyResponse* resp) {
  return RunAdmin(ctx, [this, req, resp]() -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->account_id(), "accountId"));
    BUILDD_ASSIGN_OR_RETURN(AccountRecord account, store_.GetAccount(req->account_id()));
    const std::string key = KeyHasher::NewKey(account.type);
    const std::string key_id = NewUuid();
    BUILDD_RETURN_IF_ERROR(
        store_.AddKey(account.id, key_id, hasher_.Hash(key), req->revoke_others()));
    resp->set_api_key(key);
    resp->set_key_id(key_id);
    if (req->revoke_others()) Publish(account.id, "key_revoked");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::RevokeKey(grpc::CallbackServerContext* ctx,
                                                     const pb::RevokeKeyRequest* req,
                                                     pb::RevokeKeyResponse* resp) {
  return RunAdmin(ctx, [this, req, resp]() -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->account_id(), "accountId"));
    if (!req->key_id().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(req->key_id(), "keyId"));
    BUILDD_ASSIGN_OR_RETURN(int revoked, store_.RevokeKeys(req->account_id(), req->key_id()));
    resp->set_revoked(revoked);
    Publish(req->account_id(), "key_revoked");
    Log()->info("keys revoked account={} count={}", req->account_id(), revoked);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::GrantWorkspace(grpc::CallbackServerContext* ctx,
                                                          const pb::GrantWorkspaceRequest* req,
                                                          pb::Grant* resp) {
  return RunAdmin(ctx, [this, req, resp]() -> absl::Status {
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->account_id(), "accountId"));
    BUILDD_RETURN_IF_ERROR(CheckUuid(req->workspace_id(), "workspaceId"));
    GrantRecord grant{req->account_id(), req->workspace_id(), req->can_claim(), req->can_create(),
                      req->share_credentials()};
    BUILDD_ASSIGN_OR_RETURN(GrantRecord saved, store_.UpsertGrant(grant));
    resp->set_account_id(saved.account_id);
    resp->set_workspace_id(saved.workspace_id);
    resp->set_can_claim(saved.can_claim);
    resp->set_can_create(saved.can_create);
    resp->set_share_credentials(saved.share_credentials);
    Publish(saved.account_id, "grant_changed");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::ListGrants(grpc::CallbackServerContext* ctx,
                                                      const pb::ListGrantsRequest* req,
                                                      pb::ListGrantsResponse* resp) {
  return RunAuthenticated(ctx, [this, req, resp](const PrincipalRecord& p) -> absl::Status {
    if (req->account_id().empty() == req->workspace_id().empty()) {
      return absl::InvalidArgumentError("give one of accountId and workspaceId");
    }
    if (!req->account_id().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(req->account_id(), "accountId"));
    if (!req->workspace_id().empty()) BUILDD_RETURN_IF_ERROR(CheckUuid(req->workspace_id(), "workspaceId"));
    if (!p.account.is_admin && (req->account_id().empty() || req->account_id() != p.account.id)) {
      return absl::PermissionDeniedError(
          "listing grants needs an admin key, or the key of the account they are of");
    }
    BUILDD_ASSIGN_OR_RETURN(std::vector<GrantRecord> grants,
                            store_.ListGrants(req->account_id(), req->workspace_id()));
    for (const GrantRecord& g : grants) {
      pb::Grant* grant = resp->add_grants();
      grant->set_account_id(g.account_id);
      grant->set_workspace_id(g.workspace_id);
      grant->set_can_claim(g.can_claim);
      grant->set_can_create(g.can_create);
      grant->set_share_credentials(g.share_credentials);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::Authenticate(grpc::CallbackServerContext* ctx,
                                                        const pb::AuthenticateRequest* req,
                                                        pb::Principal* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  boost::asio::post(pool_, [this, reactor, req, resp] {
    absl::StatusOr<PrincipalRecord> principal = Resolve(req->api_key());
    if (principal.ok()) ToProto(*principal, resp);
    reactor->Finish(ToGrpcStatus(principal.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* AccountsService::RunnerCredentials(
    grpc::CallbackServerContext* ctx, const pb::RunnerCredentialsRequest* req,
    pb::RunnerCredentialsResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status denied = CheckService(*ctx); !denied.ok()) {
    reactor->Finish(ToGrpcStatus(denied));
    return reactor;
  }
  boost::asio::post(pool_, [this, reactor, req, resp] {
    absl::Status status = [&]() -> absl::Status {
      if (IsSessionToken(req->api_key())) {
        return absl::PermissionDeniedError("a dashboard session has no provider credentials");
      }
      BUILDD_ASSIGN_OR_RETURN(PrincipalRecord principal, Resolve(req->api_key()));
      BUILDD_ASSIGN_OR_RETURN(std::string sealed,
                              store_.SealedCredentials(principal.account.id));
      if (sealed.empty()) return absl::OkStatus();
      BUILDD_ASSIGN_OR_RETURN(std::string plain, box_.Open(sealed, principal.account.id));
      pb::Credentials creds;
      if (!creds.ParseFromString(plain)) {
        return absl::DataLossError("stored credentials do not parse");
      }
      resp->mutable_env()->insert(creds.env().begin(), creds.env().end());
      return absl::OkStatus();
    }();
    reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

grpc::ServerUnaryReactor* AccountsService::ActionTargets(grpc::CallbackServerContext* ctx,
                                                         const pb::ActionTargetsRequest* req,
                                                         pb::ActionTargetsResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status denied = CheckService(*ctx); !denied.ok()) {
    reactor->Finish(ToGrpcStatus(denied));
    return reactor;
  }
  boost::asio::post(pool_, [this, reactor, req, resp] {
    absl::Status status = [&]() -> absl::Status {
      BUILDD_RETURN_IF_ERROR(CheckUuid(req->workspace_id(), "workspaceId"));
      BUILDD_ASSIGN_OR_RETURN(std::vector<ActionTargetRecord> targets,
                              store_.ActionTargets(req->workspace_id()));
      for (const ActionTargetRecord& t : targets) {
        BUILDD_ASSIGN_OR_RETURN(std::string token,
                                box_.Open(t.sealed_github_token, GitHubTokenContext(t.account_id)));
        pb::ActionTarget* target = resp->add_targets();
        target->set_account_id(t.account_id);
        target->set_github_id(t.github_id);
        target->set_github_token(std::move(token));
      }
      return absl::OkStatus();
    }();
    reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

grpc::ServerUnaryReactor* AccountsService::CreateSession(grpc::CallbackServerContext* ctx,
                                                         const pb::CreateSessionRequest* req,
                                                         pb::CreateSessionResponse* resp) {
  const bool by_session = IsSessionToken(BearerToken(*ctx));
  return RunAuthenticated(ctx, [this, req, resp, by_session](const PrincipalRecord& p) -> absl::Status {
    // A session lives no longer than it was given: it makes no others.
    if (by_session) return absl::PermissionDeniedError("a session is made with an API key, not a session");
    std::string user_agent = req->user_agent().substr(0, 200);
    for (char& c : user_agent) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    const std::string token = KeyHasher::NewKey(kSessionTokenType);
    BUILDD_ASSIGN_OR_RETURN(SessionRecord session,
                            store_.CreateSession(p.key_id, NewUuid(), hasher_.Hash(token),
                                                 session_ttl_seconds_, user_agent));
    ToProto(session, resp->mutable_session());
    resp->set_token(token);
    PrincipalRecord principal = p;
    principal.session_id = session.id;
    ToProto(principal, resp->mutable_principal());
    Log()->info("session created account={} session={}", p.account.id, session.id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::ListSessions(grpc::CallbackServerContext* ctx,
                                                        const pb::ListSessionsRequest* req,
                                                        pb::ListSessionsResponse* resp) {
  return RunAuthenticated(ctx, [this, req, resp](const PrincipalRecord& p) -> absl::Status {
    std::string account_id = p.account.id;
    if (!req->account_id().empty() && req->account_id() != account_id) {
      if (!p.account.is_admin) return absl::PermissionDeniedError("listing another account's sessions needs an admin key");
      BUILDD_RETURN_IF_ERROR(CheckUuid(req->account_id(), "accountId"));
      account_id = req->account_id();
    }
    BUILDD_ASSIGN_OR_RETURN(std::vector<SessionRecord> sessions, store_.ListSessions(account_id));
    for (const SessionRecord& s : sessions) ToProto(s, resp->add_sessions());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AccountsService::RevokeSession(grpc::CallbackServerContext* ctx,
                                                         const pb::RevokeSessionRequest* req,
                                                         pb::Session* resp) {
  return RunAuthenticated(ctx, [this, req, resp](const PrincipalRecord& p) -> absl::Status {
    std::string id = req->id();
    if (id.empty()) {
      if (p.session_id.empty()) return absl::InvalidArgumentError("id is required: this call is not made with a session");
      id = p.session_id;
    }
    BUILDD_RETURN_IF_ERROR(CheckUuid(id, "id"));
    BUILDD_ASSIGN_OR_RETURN(SessionRecord session, store_.RevokeSession(p.account.id, id));
    ToProto(session, resp);
    Publish(p.account.id, "session_revoked");
    Log()->info("session revoked account={} session={}", p.account.id, id);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<pb::AccountChange>* AccountsService::WatchChanges(
    grpc::CallbackServerContext* ctx, const pb::WatchChangesRequest* /*req*/) {
  if (absl::Status denied = CheckService(*ctx); !denied.ok()) {
    return new Refusal(ToGrpcStatus(denied));
  }
  auto* watcher = new Watcher(this);
  absl::MutexLock lock(&mu_);
  watchers_.insert(watcher);
  return watcher;
}

}  // namespace buildd::accounts
