#include "tests/gateway/fake_services.h"

#include <deque>
#include <optional>

#include "common/grpc_server.h"

namespace buildd::gateway::fake {

void CallLog::FailWith(const std::string& method, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  failures_[method] = std::move(status);
}

void CallLog::RespondWith(const std::string& method, const google::protobuf::Message& response) {
  absl::MutexLock lock(&mu_);
  responses_[method] = response.SerializeAsString();
}

std::vector<RecordedCall> CallLog::Calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

size_t CallLog::CallCount() const {
  absl::MutexLock lock(&mu_);
  return calls_.size();
}

RecordedCall CallLog::Last(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  for (auto it = calls_.rbegin(); it != calls_.rend(); ++it) {
    if (it->method == method) return *it;
  }
  return RecordedCall();
}

grpc::Status CallLog::Handle(const std::string& method, const grpc::CallbackServerContext& context,
                             const google::protobuf::Message& request,
                             google::protobuf::Message* response) {
  RecordedCall call;
  call.method = method;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    call.authorization = std::string(it->second.data(), it->second.size());
  }
  if (auto it = metadata.find("x-request-id"); it != metadata.end()) {
    call.request_id = std::string(it->second.data(), it->second.size());
  }
  call.request = request.SerializeAsString();
  absl::MutexLock lock(&mu_);
  calls_.push_back(std::move(call));
  if (auto it = failures_.find(method); it != failures_.end()) return it->second;
  if (auto it = responses_.find(method); it != responses_.end() && response != nullptr) {
    response->ParseFromString(it->second);
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* CallLog::Unary(const std::string& method,
                                         grpc::CallbackServerContext* context,
                                         const google::protobuf::Message& request,
                                         google::protobuf::Message* response) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(Handle(method, *context, request, response));
  return reactor;
}

// --- AccountService ---------------------------------------------------------

#define BUILDD_FAKE_UNARY(Service, Method, Request, Response)                             \
  grpc::ServerUnaryReactor* Service::Method(grpc::CallbackServerContext* context,         \
                                            const Request* request, Response* response) { \
    return Unary(#Method, context, *request, response);                                   \
  }

BUILDD_FAKE_UNARY(FakeAccountService, CreateAccount, pb::CreateAccountRequest,
                  pb::CreateAccountResponse)
BUILDD_FAKE_UNARY(FakeAccountService, ListAccounts, pb::ListAccountsRequest,
                  pb::ListAccountsResponse)
BUILDD_FAKE_UNARY(FakeAccountService, GetAccount, pb::GetAccountRequest, pb::Account)
BUILDD_FAKE_UNARY(FakeAccountService, UpdateAccount, pb::UpdateAccountRequest, pb::Account)
BUILDD_FAKE_UNARY(FakeAccountService, RotateKey, pb::RotateKeyRequest, pb::RotateKeyResponse)
BUILDD_FAKE_UNARY(FakeAccountService, RevokeKey, pb::RevokeKeyRequest, pb::RevokeKeyResponse)
BUILDD_FAKE_UNARY(FakeAccountService, GrantWorkspace, pb::GrantWorkspaceRequest, pb::Grant)
BUILDD_FAKE_UNARY(FakeAccountService, Authenticate, pb::AuthenticateRequest, pb::Principal)
BUILDD_FAKE_UNARY(FakeAccountService, CreateSession, pb::CreateSessionRequest,
                  pb::CreateSessionResponse)
BUILDD_FAKE_UNARY(FakeAccountService, ListSessions, pb::ListSessionsRequest,
                  pb::ListSessionsResponse)
BUILDD_FAKE_UNARY(FakeAccountService, RevokeSession, pb::RevokeSessionRequest, pb::Session)

// --- BrokerService ----------------------------------------------------------

BUILDD_FAKE_UNARY(FakeBrokerService, CreateWorkspace, pb::CreateWorkspaceRequest, pb::Workspace)
BUILDD_FAKE_UNARY(FakeBrokerService, ListWorkspaces, pb::ListWorkspacesRequest,
                  pb::ListWorkspacesResponse)
BUILDD_FAKE_UNARY(FakeBrokerService, GetWorkspace, pb::GetWorkspaceRequest, pb::Workspace)
BUILDD_FAKE_UNARY(FakeBrokerService, CreateTask, pb::CreateTaskRequest, pb::Task)
BUILDD_FAKE_UNARY(FakeBrokerService, ListTasks, pb::ListTasksRequest, pb::ListTasksResponse)
BUILDD_FAKE_UNARY(FakeBrokerService, GetTask, pb::GetTaskRequest, pb::GetTaskResponse)
BUILDD_FAKE_UNARY(FakeBrokerService, CancelTask, pb::CancelTaskRequest, pb::Task)
BUILDD_FAKE_UNARY(FakeBrokerService, ListWorkers, pb::ListWorkersRequest, pb::ListWorkersResponse)
BUILDD_FAKE_UNARY(FakeBrokerService, GetWorker, pb::GetWorkerRequest, pb::Worker)
BUILDD_FAKE_UNARY(FakeBrokerService, ControlWorker, pb::ControlWorkerRequest, pb::Worker)
BUILDD_FAKE_UNARY(FakeBrokerService, ListRunners, pb::ListRunnersRequest, pb::ListRunnersResponse)

#undef BUILDD_FAKE_UNARY

// One open Subscribe stream: a queue of events written one at a time.
// StartWrite and Finish are called outside the lock.
class FakeSubscription final : public grpc::ServerWriteReactor<pb::EventBatch> {
 public:
  FakeSubscription(FakeBrokerService* owner, bool send_initial_metadata) : owner_(owner) {
    if (send_initial_metadata) StartSendInitialMetadata();
  }

  void Send(const pb::Event& event) {
    const pb::EventBatch* first = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      queue_.emplace_back();
      *queue_.back().add_events() = event;
      if (writing_) return;
      writing_ = true;
      first = &queue_.front();
    }
    StartWrite(first);
  }

  void End(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      finishing_ = true;
      if (writing_) {
        final_status_ = std::move(status);
        return;
      }
    }
    Finish(status);
  }

  void OnWriteDone(bool ok) override {
    const pb::EventBatch* next = nullptr;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      if (!ok) queue_.clear();
      if (!queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        if (final_status_) finish = std::move(final_status_);
        final_status_.reset();
      }
    }
    if (next != nullptr) return StartWrite(next);
    if (finish) Finish(*finish);
  }

  void OnCancel() override {
    owner_->OnSubscriptionCancelled();
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      if (!finishing_ && !writing_) finish = true;
      if (writing_ && !finishing_) final_status_ = grpc::Status::CANCELLED;
      finishing_ = true;
    }
    if (finish) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    owner_->OnSubscriptionDone(this);
    delete this;
  }

 private:
  FakeBrokerService* owner_;
  absl::Mutex mu_;
  std::deque<pb::EventBatch> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerWriteReactor<pb::EventBatch>* FakeBrokerService::SubscribeBatches(
    grpc::CallbackServerContext* context, const pb::SubscribeRequest* request) {
  const grpc::Status status = Handle("Subscribe", *context, *request, nullptr);
  if (!status.ok()) {
    auto* subscription = new FakeSubscription(this, /*send_initial_metadata=*/false);
    {
      absl::MutexLock lock(&mu_);
      open_.insert(subscription);
    }
    subscription->End(status);
    return subscription;
  }
  auto* subscription = new FakeSubscription(this, send_initial_metadata_);
  absl::MutexLock lock(&mu_);
  open_.insert(subscription);
  return subscription;
}

void FakeBrokerService::Publish(const pb::Event& event) {
  absl::MutexLock lock(&mu_);
  for (FakeSubscription* subscription : open_) subscription->Send(event);
}

void FakeBrokerService::EndSubscriptions(grpc::Status status) {
  absl::MutexLock lock(&mu_);
  for (FakeSubscription* subscription : open_) subscription->End(status);
}

bool FakeBrokerService::WaitForOpenSubscriptions(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(open_.size()) >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

bool FakeBrokerService::WaitForCancelledSubscriptions(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return cancelled_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

bool FakeBrokerService::WaitForNoOpenSubscriptions(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return open_.empty(); };
  return mu_.AwaitWithTimeout(absl::Condition(&none), timeout);
}

int FakeBrokerService::cancelled_subscriptions() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

void FakeBrokerService::OnSubscriptionCancelled() {
  absl::MutexLock lock(&mu_);
  ++cancelled_;
}

void FakeBrokerService::OnSubscriptionDone(FakeSubscription* subscription) {
  absl::MutexLock lock(&mu_);
  open_.erase(subscription);
}

// --- FakeServer -------------------------------------------------------------

FakeServer::FakeServer(grpc::Service* service) : health_({}, [this] { return serving_.load(); }) {
  auto server = StartGrpcServer("127.0.0.1:0", {service, &health_}, &port_);
  if (server.ok()) server_ = std::move(*server);
}

FakeServer::~FakeServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

std::string FakeServer::address() const { return "127.0.0.1:" + std::to_string(port_); }

}  // namespace buildd::gateway::fake
