#include "services/broker/accounts_client.h"

#include <chrono>

#include <grpcpp/grpcpp.h>

#include "buildd/v1/accounts.grpc.pb.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "common/logging.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

struct AccountsClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::AccountService::Stub> stub;
  absl::Mutex mu;
  grpc::ClientContext* watch_context ABSL_GUARDED_BY(mu) = nullptr;
};

AccountsClient::AccountsClient(const std::string& address,
                               std::shared_ptr<grpc::ChannelCredentials> credentials,
                               std::string service_key,
                               std::function<void(const std::string&)> on_change)
    : impl_(std::make_unique<Impl>()),
      service_key_(std::move(service_key)),
      on_change_(std::move(on_change)) {
  impl_->channel = grpc::CreateCustomChannel(address, std::move(credentials),
                                             StreamChannelArguments());
  impl_->stub = pb::AccountService::NewStub(impl_->channel);
  watch_thread_ = std::thread([this] { WatchLoop(); });
}

AccountsClient::~AccountsClient() {
  stop_ = true;
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->watch_context != nullptr) impl_->watch_context->TryCancel();
  }
  if (watch_thread_.joinable()) watch_thread_.join();
}

absl::StatusOr<std::map<std::string, std::string>> AccountsClient::RunnerCredentials(
    const std::string& api_key) {
  grpc::ClientContext context;
  SetDeadlineMs(context, 5000);
  context.AddMetadata("authorization", "Bearer " + service_key_);
  pb::RunnerCredentialsRequest request;
  request.set_api_key(api_key);
  pb::RunnerCredentialsResponse reply;
  grpc::Status status = impl_->stub->RunnerCredentials(&context, request, &reply);
  if (!status.ok()) return FromGrpcStatus(status);
  return std::map<std::string, std::string>(reply.env().begin(), reply.env().end());
}

absl::StatusOr<std::vector<ActionTarget>> AccountsClient::ActionTargets(
    const std::string& workspace_id) {
  grpc::ClientContext context;
  SetDeadlineMs(context, 5000);
  context.AddMetadata("authorization", "Bearer " + service_key_);
  pb::ActionTargetsRequest request;
  request.set_workspace_id(workspace_id);
  pb::ActionTargetsResponse reply;
  grpc::Status status = impl_->stub->ActionTargets(&context, request, &reply);
  if (!status.ok()) return FromGrpcStatus(status);
  std::vector<ActionTarget> out;
  for (const pb::ActionTarget& t : reply.targets()) {
    out.push_back(ActionTarget{t.account_id(), t.github_id(), t.github_token()});
  }
  return out;
}

absl::StatusOr<Principal> AccountsClient::Authenticate(const std::string& api_key) {
  if (api_key.empty()) {
    return absl::UnauthenticatedError("missing API key (authorization: Bearer …)");
  }
  // How long a refused key is refused without asking again, and how many
  // such keys are remembered.
  constexpr auto kRefusedFor = std::chrono::seconds(5);
  constexpr size_t kMaxRefused = 10000;
  // Changes arrive on the watch; what has no notice (a session's expiry)
  // is seen when the cached answer is this old.
  constexpr auto kCachedFor = std::chrono::seconds(60);
  uint64_t generation;
  const auto now = std::chrono::steady_clock::now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(api_key);
    if (it != cache_.end() && it->second.until > now) return it->second.principal;
    auto refused = refused_.find(api_key);
    if (refused != refused_.end()) {
      if (refused->second > now) return absl::UnauthenticatedError("invalid or revoked API key");
      refused_.erase(refused);
    }
    generation = generation_;
  }
  grpc::ClientContext context;
  SetDeadlineMs(context, 5000);
  pb::AuthenticateRequest request;
  request.set_api_key(api_key);
  pb::Principal reply;
  grpc::Status status = impl_->stub->Authenticate(&context, request, &reply);
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::UnavailableError("accounts service unavailable");
    }
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      absl::MutexLock lock(&mu_);
      if (refused_.size() >= kMaxRefused) {
        for (auto it = refused_.begin(); it != refused_.end();) {
          it = it->second <= now ? refused_.erase(it) : std::next(it);
        }
        if (refused_.size() >= kMaxRefused) refused_.erase(refused_.begin());
      }
      refused_[api_key] = now + kRefusedFor;
    }
    return FromGrpcStatus(status);
  }
  Principal p;
  p.session_id = reply.session_id();
  p.account_id = reply.account_id();
  p.type = pb::Account::Type_Name(reply.type());
  p.is_admin = reply.is_admin();
  p.claim_all = reply.claim_all();
  p.max_concurrent_workers = reply.max_concurrent_workers();
  p.max_cost_per_day = reply.max_cost_per_day();
  for (const pb::Grant& g : reply.grants()) {
    if (g.can_claim()) p.can_claim.insert(g.workspace_id());
    if (g.can_create()) p.can_create.insert(g.workspace_id());
    if (g.share_credentials()) p.share_credentials.insert(g.workspace_id());
    if (g.can_claim() || g.can_create()) p.visible.insert(g.workspace_id());
  }
  absl::MutexLock lock(&mu_);
  if (watching_ && generation == generation_) cache_[api_key] = Cached{p, now + kCachedFor};
  return p;
}

void AccountsClient::WatchLoop() {
  auto delay = std::chrono::milliseconds(100);
  bool connected_once = false;
  while (!stop_) {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&impl_->mu);
      impl_->watch_context = &context;
    }
    if (stop_) break;
    context.AddMetadata("authorization", "Bearer " + service_key_);
    auto reader = impl_->stub->WatchChanges(&context, pb::WatchChangesRequest());
    // The server's first message says it is watching: only then is it safe
    // to cache.
    pb::AccountChange change;
    bool reconnected = false;
    if (reader->Read(&change)) {
      absl::MutexLock lock(&mu_);
      watching_ = true;
      ++generation_;
      reconnected = connected_once;
      connected_once = true;
      delay = std::chrono::milliseconds(100);
    }
    if (reconnected && on_change_) on_change_("");
    while (reader->Read(&change)) {
      {
        absl::MutexLock lock(&mu_);
        ++generation_;
        for (auto it = cache_.begin(); it != cache_.end();) {
          it = it->second.principal.account_id == change.account_id() ? cache_.erase(it)
                                                                       : std::next(it);
        }
      }
      if (on_change_) on_change_(change.account_id());
    }
    const grpc::Status end = reader->Finish();
    if (!stop_ && end.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      Log()->error("accounts refused WatchChanges: {} (is BUILDD_SERVICE_KEY the same?)",
                   end.error_message());
    }
    {
      absl::MutexLock lock(&mu_);
      watching_ = false;
      cache_.clear();
    }
    {
      absl::MutexLock lock(&impl_->mu);
      impl_->watch_context = nullptr;
    }
    if (stop_) break;
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(2000));
  }
}

}  // namespace buildd::broker
