#ifndef BUILDD_SERVICES_BROKER_BROKER_SERVICE_H_
#define BUILDD_SERVICES_BROKER_BROKER_SERVICE_H_

#include <boost/asio/thread_pool.hpp>

#include "buildd/v1/broker.grpc.pb.h"
#include "services/broker/accounts_client.h"
#include "services/broker/broker_store.h"
#include "services/broker/conversions.h"
#include "services/broker/dispatcher.h"
#include "services/broker/event_hub.h"

namespace buildd::broker {

// The gRPC adapter of BrokerService: authenticates the caller, validates,
// calls the store or the dispatcher, converts back. Blocking work runs on
// the pool it is given, never on gRPC's callback threads.
class BrokerServiceImpl final : public pb::BrokerService::CallbackService {
 public:
  struct Options {
    // Subscribe streams one key may hold open at once; one more is refused.
    int max_subscriptions_per_key = 16;
  };
  // `pool` runs unary calls; `stream_pool` the Subscribe streams' reads,
  // so that a long backfill never holds up a unary call.
  BrokerServiceImpl(Authenticator& auth, BrokerStore& store, Dispatcher& dispatcher,
                    Journal& journal, EventHub& hub, boost::asio::thread_pool& pool,
                    boost::asio::thread_pool& stream_pool, Options options);

  grpc::ServerUnaryReactor* CreateWorkspace(grpc::CallbackServerContext* ctx,
                                            const pb::CreateWorkspaceRequest* req,
                                            pb::Workspace* resp) override;
  grpc::ServerUnaryReactor* ListWorkspaces(grpc::CallbackServerContext* ctx,
                                           const pb::ListWorkspacesRequest* req,
                                           pb::ListWorkspacesResponse* resp) override;
  grpc::ServerUnaryReactor* GetWorkspace(grpc::CallbackServerContext* ctx,
                                         const pb::GetWorkspaceRequest* req,
                                         pb::Workspace* resp) override;
  grpc::ServerUnaryReactor* CreateTask(grpc::CallbackServerContext* ctx,
                                       const pb::CreateTaskRequest* req, pb::Task* resp) override;
  grpc::ServerUnaryReactor* ListTasks(grpc::CallbackServerContext* ctx,
                                      const pb::ListTasksRequest* req,
                                      pb::ListTasksResponse* resp) override;
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext* ctx,
                                    const pb::GetTaskRequest* req,
                                    pb::GetTaskResponse* resp) override;
  grpc::ServerUnaryReactor* CancelTask(grpc::CallbackServerContext* ctx,
                                       const pb::CancelTaskRequest* req, pb::Task* resp) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx,
                                        const pb::ListWorkersRequest* req,
                                        pb::ListWorkersResponse* resp) override;
  grpc::ServerUnaryReactor* GetWorker(grpc::CallbackServerContext* ctx,
                                      const pb::GetWorkerRequest* req, pb::Worker* resp) override;
  grpc::ServerUnaryReactor* ControlWorker(grpc::CallbackServerContext* ctx,
                                          const pb::ControlWorkerRequest* req,
                                          pb::Worker* resp) override;
  grpc::ServerWriteReactor<pb::Event>* Subscribe(grpc::CallbackServerContext* ctx,
                                                 const pb::SubscribeRequest* req) override;

  // Checks the open Subscribe streams of `account_id` ("" for all) against
  // its keys and grants now: a stream whose key (or session) stopped
  // working, or that lost a workspace grant, ends; others follow the
  // grants as they are.
  void RefreshSubscriptions(const std::string& account_id);

 private:
  // Authenticates on the pool, runs fn(principal) there and finishes.
  template <typename Fn>
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* ctx,
                                const google::protobuf::Message& request, Fn fn);
  // For a task with resume_from: checks the earlier task (visible, same
  // workspace and provider, a stored session) and takes its provider and
  // branches where the new task names none.
  absl::Status ResolveResumeFrom(const Principal& p, pb::Task& task);

  Authenticator& auth_;
  BrokerStore& store_;
  Dispatcher& dispatcher_;
  Journal& journal_;
  EventHub& hub_;
  boost::asio::thread_pool& pool_;
  boost::asio::thread_pool& stream_pool_;
  const Options options_;

  struct Watched;
  // Registers an open stream, unless its key holds too many; its id.
  absl::StatusOr<int64_t> Watch(std::shared_ptr<Watched> watched);
  absl::Mutex watched_mu_;
  std::map<int64_t, std::shared_ptr<Watched>> watched_ ABSL_GUARDED_BY(watched_mu_);
  int64_t next_watched_ ABSL_GUARDED_BY(watched_mu_) = 0;
};

// Bounds of a task's priority and attempts.
inline constexpr int kMinPriority = -100;
inline constexpr int kMaxPriority = 100;
inline constexpr int kMaxAttempts = 10;
inline constexpr int kDefaultMaxAttempts = 3;

// Checks a new task's fields; fills defaults. The message names the field.
absl::Status ValidateNewTask(pb::Task& task);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_BROKER_SERVICE_H_
