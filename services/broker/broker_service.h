#ifndef BUILDD_SERVICES_BROKER_BROKER_SERVICE_H_
#define BUILDD_SERVICES_BROKER_BROKER_SERVICE_H_

#include <functional>

#include <boost/asio/thread_pool.hpp>

#include "buildd/v1/broker.grpc.pb.h"
#include "services/broker/accounts_client.h"
#include "services/broker/broker_store.h"
#include "services/broker/conversions.h"
#include "services/broker/dispatcher.h"
#include "services/broker/event_hub.h"
#include "services/broker/polling_agents.h"
#include "services/broker/github_webhook.h"
#include "services/broker/subscription.h"

namespace buildd::broker {

// The gRPC adapter of BrokerService: authenticates the caller, validates
// (task_validation.h), calls the store or the dispatcher, converts back.
// Subscribe streams are Subscriptions'. Blocking work runs on the pool it is
// given, never on gRPC's callback threads.
class BrokerServiceImpl final : public pb::BrokerService::CallbackService {
 public:
  struct Options {
    // Subscribe streams one key may hold open at once; one more is refused.
    int max_subscriptions_per_key = 16;
    // GitHub's webhook deliveries; null: DeliverGitHubWebhook refuses all.
    GitHubWebhook* github_webhook = nullptr;
  };
  // `pool` runs unary calls; `stream_pool` the Subscribe streams' reads,
  // so that a long backfill never holds up a unary call.
  BrokerServiceImpl(Authenticator& auth, BrokerStore& store, Dispatcher& dispatcher,
                    PollingAgents& agents, Journal& journal, EventHub& hub,
                    boost::asio::thread_pool& pool, boost::asio::thread_pool& stream_pool,
                    Options options);

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
  grpc::ServerWriteReactor<pb::EventBatch>* SubscribeBatches(
      grpc::CallbackServerContext* ctx, const pb::SubscribeRequest* req) override;

  grpc::ServerUnaryReactor* ListRunners(grpc::CallbackServerContext* ctx,
                                        const pb::ListRunnersRequest* req,
                                        pb::ListRunnersResponse* resp) override;
  grpc::ServerUnaryReactor* GetQueue(grpc::CallbackServerContext* ctx,
                                     const pb::GetQueueRequest* req,
                                     pb::GetQueueResponse* resp) override;
  grpc::ServerUnaryReactor* RetryTask(grpc::CallbackServerContext* ctx,
                                      const pb::RetryTaskRequest* req, pb::Task* resp) override;
  grpc::ServerUnaryReactor* ListUsage(grpc::CallbackServerContext* ctx,
                                      const pb::ListUsageRequest* req,
                                      pb::ListUsageResponse* resp) override;
  grpc::ServerUnaryReactor* ClaimWorkers(grpc::CallbackServerContext* ctx,
                                         const pb::ClaimWorkersRequest* req,
                                         pb::ClaimWorkersResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateWorker(grpc::CallbackServerContext* ctx,
                                         const pb::UpdateWorkerRequest* req,
                                         pb::UpdateWorkerResponse* resp) override;

  grpc::ServerUnaryReactor* CreateWorker(grpc::CallbackServerContext* ctx,
                                         const pb::CreateWorkerRequest* req,
                                         pb::Worker* resp) override;
  grpc::ServerUnaryReactor* StartWorker(grpc::CallbackServerContext* ctx,
                                        const pb::StartWorkerRequest* req,
                                        pb::Worker* resp) override;

  grpc::ServerUnaryReactor* ListMessages(grpc::CallbackServerContext* ctx,
                                         const pb::ListMessagesRequest* req,
                                         pb::ListMessagesResponse* resp) override;
  grpc::ServerUnaryReactor* PostMessage(grpc::CallbackServerContext* ctx,
                                        const pb::PostMessageRequest* req,
                                        pb::Message* resp) override;
  grpc::ServerUnaryReactor* GetAttachment(grpc::CallbackServerContext* ctx,
                                          const pb::GetAttachmentRequest* req,
                                          pb::Attachment* resp) override;
  grpc::ServerUnaryReactor* ListComments(grpc::CallbackServerContext* ctx,
                                         const pb::ListCommentsRequest* req,
                                         pb::ListCommentsResponse* resp) override;
  grpc::ServerUnaryReactor* PostComment(grpc::CallbackServerContext* ctx,
                                        const pb::PostCommentRequest* req,
                                        pb::Comment* resp) override;
  // GitHub. No API key: the delivery's signature is its credential.
  grpc::ServerUnaryReactor* DeliverGitHubWebhook(grpc::CallbackServerContext* ctx,
                                                 const pb::GitHubWebhookRequest* req,
                                                 pb::GitHubWebhookResponse* resp) override;

  // Checks the open Subscribe streams of `account_id` ("" for all) against
  // its keys and grants now (Subscriptions::Refresh).
  void RefreshSubscriptions(const std::string& account_id);

 private:
  // Finishes a call once, with its status; callable from any thread.
  using Reply = std::function<void(const absl::Status&)>;
  // Checks the request's size, authenticates on the pool, runs
  // fn(principal) there and finishes with the status it returns.
  template <typename Fn>
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* ctx,
                                const google::protobuf::Message& request, Fn fn);
  // The same for a call answered later: fn(principal, reply) returns an
  // error to finish with it now, or OK once it handed `reply` on (to be
  // called once, later).
  template <typename Fn>
  grpc::ServerUnaryReactor* RunAsync(grpc::CallbackServerContext* ctx,
                                     const google::protobuf::Message& request, Fn fn);

  // Sets what is derived for the pending tasks among `tasks` (their
  // records, in the same order): queuePosition, waitingReason and
  // waitingDetail, as `p` may see them.
  absl::Status DescribePending(const Principal& p, const std::vector<const TaskRecord*>& records,
                               const std::vector<pb::Task*>& tasks);

  Authenticator& auth_;
  BrokerStore& store_;
  Dispatcher& dispatcher_;
  PollingAgents& agents_;
  Journal& journal_;
  boost::asio::thread_pool& pool_;
  GitHubWebhook* const github_webhook_;
  Subscriptions subscriptions_;
};

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_BROKER_SERVICE_H_
