#ifndef BUILDD_TESTS_GATEWAY_FAKE_SERVICES_H_
#define BUILDD_TESTS_GATEWAY_FAKE_SERVICES_H_

// In-process fakes of buildd.v1.AccountService and BrokerService for the
// gateway's tests: they record every call (request and metadata) and answer
// what the test told them to. The real services are tested elsewhere.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "buildd/v1/accounts.grpc.pb.h"
#include "buildd/v1/broker.grpc.pb.h"
#include "common/health_service.h"

namespace buildd::gateway::fake {

namespace pb = ::buildd::v1;

struct RecordedCall {
  std::string method;
  std::string authorization;  // The `authorization` metadata, "" if none.
  std::string request_id;     // The `x-request-id` metadata.
  std::string request;        // The serialized request.

  template <typename T>
  T Request() const {
    T message;
    message.ParseFromString(request);
    return message;
  }
};

// Records calls and holds the programmed answers. Thread-safe.
class CallLog {
 public:
  // Calls of `method` fail with `status` from now on.
  void FailWith(const std::string& method, grpc::Status status);
  // Calls of `method` answer `response` from now on (default: an empty one).
  void RespondWith(const std::string& method, const google::protobuf::Message& response);

  std::vector<RecordedCall> Calls() const;
  size_t CallCount() const;
  // The last call of `method`; an empty record when there was none.
  RecordedCall Last(const std::string& method) const;

 protected:
  // Records the call and fills `response`; returns the status to finish with.
  grpc::Status Handle(const std::string& method, const grpc::CallbackServerContext& context,
                      const google::protobuf::Message& request,
                      google::protobuf::Message* response);
  // Handle() as a finished unary reactor.
  grpc::ServerUnaryReactor* Unary(const std::string& method, grpc::CallbackServerContext* context,
                                  const google::protobuf::Message& request,
                                  google::protobuf::Message* response);

 private:
  mutable absl::Mutex mu_;
  std::vector<RecordedCall> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, grpc::Status> failures_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> responses_ ABSL_GUARDED_BY(mu_);
};

class FakeAccountService final : public pb::AccountService::CallbackService, public CallLog {
 public:
  grpc::ServerUnaryReactor* CreateAccount(grpc::CallbackServerContext* context,
                                          const pb::CreateAccountRequest* request,
                                          pb::CreateAccountResponse* response) override;
  grpc::ServerUnaryReactor* ListAccounts(grpc::CallbackServerContext* context,
                                         const pb::ListAccountsRequest* request,
                                         pb::ListAccountsResponse* response) override;
  grpc::ServerUnaryReactor* GetAccount(grpc::CallbackServerContext* context,
                                       const pb::GetAccountRequest* request,
                                       pb::Account* response) override;
  grpc::ServerUnaryReactor* UpdateAccount(grpc::CallbackServerContext* context,
                                          const pb::UpdateAccountRequest* request,
                                          pb::Account* response) override;
  grpc::ServerUnaryReactor* RotateKey(grpc::CallbackServerContext* context,
                                      const pb::RotateKeyRequest* request,
                                      pb::RotateKeyResponse* response) override;
  grpc::ServerUnaryReactor* RevokeKey(grpc::CallbackServerContext* context,
                                      const pb::RevokeKeyRequest* request,
                                      pb::RevokeKeyResponse* response) override;
  grpc::ServerUnaryReactor* GrantWorkspace(grpc::CallbackServerContext* context,
                                           const pb::GrantWorkspaceRequest* request,
                                           pb::Grant* response) override;
  grpc::ServerUnaryReactor* Authenticate(grpc::CallbackServerContext* context,
                                         const pb::AuthenticateRequest* request,
                                         pb::Principal* response) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* context,
                                          const pb::CreateSessionRequest* request,
                                          pb::CreateSessionResponse* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const pb::ListSessionsRequest* request,
                                         pb::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* RevokeSession(grpc::CallbackServerContext* context,
                                          const pb::RevokeSessionRequest* request,
                                          pb::Session* response) override;
};

class FakeSubscription;

class FakeBrokerService final : public pb::BrokerService::CallbackService, public CallLog {
 public:
  grpc::ServerUnaryReactor* CreateWorkspace(grpc::CallbackServerContext* context,
                                            const pb::CreateWorkspaceRequest* request,
                                            pb::Workspace* response) override;
  grpc::ServerUnaryReactor* ListWorkspaces(grpc::CallbackServerContext* context,
                                           const pb::ListWorkspacesRequest* request,
                                           pb::ListWorkspacesResponse* response) override;
  grpc::ServerUnaryReactor* GetWorkspace(grpc::CallbackServerContext* context,
                                         const pb::GetWorkspaceRequest* request,
                                         pb::Workspace* response) override;
  grpc::ServerUnaryReactor* CreateTask(grpc::CallbackServerContext* context,
                                       const pb::CreateTaskRequest* request,
                                       pb::Task* response) override;
  grpc::ServerUnaryReactor* ListTasks(grpc::CallbackServerContext* context,
                                      const pb::ListTasksRequest* request,
                                      pb::ListTasksResponse* response) override;
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext* context,
                                    const pb::GetTaskRequest* request,
                                    pb::GetTaskResponse* response) override;
  grpc::ServerUnaryReactor* CancelTask(grpc::CallbackServerContext* context,
                                       const pb::CancelTaskRequest* request,
                                       pb::Task* response) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const pb::ListWorkersRequest* request,
                                        pb::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* GetWorker(grpc::CallbackServerContext* context,
                                      const pb::GetWorkerRequest* request,
                                      pb::Worker* response) override;
  grpc::ServerUnaryReactor* ControlWorker(grpc::CallbackServerContext* context,
                                          const pb::ControlWorkerRequest* request,
                                          pb::Worker* response) override;
  grpc::ServerUnaryReactor* ListRunners(grpc::CallbackServerContext* context,
                                        const pb::ListRunnersRequest* request,
                                        pb::ListRunnersResponse* response) override;

  // SubscribeBatches (what the gateway calls) fails with the
  // FailWith("Subscribe") status if one was set; otherwise the stream stays
  // open and the test drives it with Publish (a batch of one event each) and
  // EndSubscriptions.
  grpc::ServerWriteReactor<pb::EventBatch>* SubscribeBatches(
      grpc::CallbackServerContext* context, const pb::SubscribeRequest* request) override;

  // Whether an accepted Subscribe sends its initial metadata at once (as a
  // broker should) or only with the first event.
  void set_send_initial_metadata(bool send) { send_initial_metadata_ = send; }
  // Writes `event` to every open subscription.
  void Publish(const pb::Event& event);
  // Finishes every open subscription with `status`.
  void EndSubscriptions(grpc::Status status);
  // Waits until at least `n` subscriptions are open.
  bool WaitForOpenSubscriptions(int n, absl::Duration timeout);
  // Waits until at least `n` subscriptions were cancelled by the client.
  bool WaitForCancelledSubscriptions(int n, absl::Duration timeout);
  // Waits until no subscription is open.
  bool WaitForNoOpenSubscriptions(absl::Duration timeout);
  int cancelled_subscriptions() const;

 private:
  friend class FakeSubscription;
  void OnSubscriptionCancelled();
  void OnSubscriptionDone(FakeSubscription* subscription);

  std::atomic<bool> send_initial_metadata_{true};
  mutable absl::Mutex mu_;
  std::set<FakeSubscription*> open_ ABSL_GUARDED_BY(mu_);
  int cancelled_ ABSL_GUARDED_BY(mu_) = 0;
};

// A gRPC server on 127.0.0.1:0 with one service and a health service whose
// status the test sets.
class FakeServer {
 public:
  explicit FakeServer(grpc::Service* service);
  ~FakeServer();
  std::string address() const;
  void set_serving(bool serving) { serving_ = serving; }

 private:
  std::atomic<bool> serving_{true};
  HealthService health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace buildd::gateway::fake

#endif  // BUILDD_TESTS_GATEWAY_FAKE_SERVICES_H_
