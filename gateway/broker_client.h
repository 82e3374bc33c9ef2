#ifndef BUILDD_GATEWAY_BROKER_CLIENT_H_
#define BUILDD_GATEWAY_BROKER_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "buildd/v1/broker.pb.h"
#include "gateway/call_meta.h"

namespace grpc {
class Channel;
}

namespace buildd::gateway {

namespace pb = ::buildd::v1;

// A running BrokerService.Subscribe call. Thread-safe.
class EventSubscription {
 public:
  virtual ~EventSubscription() = default;
  // Asks for the event after the one last delivered. Events are delivered
  // one at a time, so a slow reader holds the broker back instead of
  // buffering without bound. No effect once the stream ended or was
  // cancelled.
  virtual void Next() = 0;
  // Cancels the call (TryCancel); `on_done` still follows.
  virtual void Cancel() = 0;
};

// What a subscription reports, on gRPC threads, one call at a time; none of
// these may block.
struct EventObserver {
  // The broker accepted the call (its initial metadata arrived). May not
  // come before the first event, or at all when the call fails.
  std::function<void()> on_started;
  // The next events, in id order (one message of the broker's: a few
  // hundred KiB at most); call Next() for the following ones.
  std::function<void(std::vector<pb::Event> events)> on_events;
  // Always last; the observer is released right after.
  std::function<void(absl::Status status)> on_done;
};

// Outbound calls to buildd.v1.BrokerService. Every method returns at once
// and completes `done` later on another thread. Thread-safe.
class BrokerClient {
 public:
  virtual ~BrokerClient() = default;

  virtual void CreateWorkspace(const CallMeta& meta, const pb::CreateWorkspaceRequest& request,
                               Callback<pb::Workspace> done) = 0;
  virtual void ListWorkspaces(const CallMeta& meta, const pb::ListWorkspacesRequest& request,
                              Callback<pb::ListWorkspacesResponse> done) = 0;
  virtual void GetWorkspace(const CallMeta& meta, const pb::GetWorkspaceRequest& request,
                            Callback<pb::Workspace> done) = 0;
  virtual void CreateTask(const CallMeta& meta, const pb::CreateTaskRequest& request,
                          Callback<pb::Task> done) = 0;
  virtual void ListTasks(const CallMeta& meta, const pb::ListTasksRequest& request,
                         Callback<pb::ListTasksResponse> done) = 0;
  virtual void GetTask(const CallMeta& meta, const pb::GetTaskRequest& request,
                       Callback<pb::GetTaskResponse> done) = 0;
  virtual void CancelTask(const CallMeta& meta, const pb::CancelTaskRequest& request,
                          Callback<pb::Task> done) = 0;
  virtual void ListWorkers(const CallMeta& meta, const pb::ListWorkersRequest& request,
                           Callback<pb::ListWorkersResponse> done) = 0;
  virtual void GetWorker(const CallMeta& meta, const pb::GetWorkerRequest& request,
                         Callback<pb::Worker> done) = 0;
  virtual void ControlWorker(const CallMeta& meta, const pb::ControlWorkerRequest& request,
                             Callback<pb::Worker> done) = 0;
  virtual void ClaimWorkers(const CallMeta& meta, const pb::ClaimWorkersRequest& request,
                            Callback<pb::ClaimWorkersResponse> done) = 0;
  virtual void UpdateWorker(const CallMeta& meta, const pb::UpdateWorkerRequest& request,
                            Callback<pb::UpdateWorkerResponse> done) = 0;
  virtual void CreateWorker(const CallMeta& meta, const pb::CreateWorkerRequest& request,
                            Callback<pb::Worker> done) = 0;
  virtual void StartWorker(const CallMeta& meta, const pb::StartWorkerRequest& request,
                           Callback<pb::Worker> done) = 0;
  virtual void ListMessages(const CallMeta& meta, const pb::ListMessagesRequest& request,
                            Callback<pb::ListMessagesResponse> done) = 0;
  virtual void PostMessage(const CallMeta& meta, const pb::PostMessageRequest& request,
                           Callback<pb::Message> done) = 0;
  virtual void GetAttachment(const CallMeta& meta, const pb::GetAttachmentRequest& request,
                             Callback<pb::Attachment> done) = 0;
  virtual void ListComments(const CallMeta& meta, const pb::ListCommentsRequest& request,
                            Callback<pb::ListCommentsResponse> done) = 0;
  virtual void PostComment(const CallMeta& meta, const pb::PostCommentRequest& request,
                           Callback<pb::Comment> done) = 0;

  virtual void ListRunners(const CallMeta& meta, const pb::ListRunnersRequest& request,
                           Callback<pb::ListRunnersResponse> done) = 0;
  virtual void GetQueue(const CallMeta& meta, const pb::GetQueueRequest& request,
                        Callback<pb::GetQueueResponse> done) = 0;
  virtual void RetryTask(const CallMeta& meta, const pb::RetryTaskRequest& request,
                         Callback<pb::Task> done) = 0;
  virtual void ListUsage(const CallMeta& meta, const pb::ListUsageRequest& request,
                         Callback<pb::ListUsageResponse> done) = 0;

  // Starts a Subscribe call (no deadline: it lives until cancelled) and
  // asks for the first event.
  virtual std::shared_ptr<EventSubscription> Subscribe(const CallMeta& meta,
                                                       const pb::SubscribeRequest& request,
                                                       EventObserver observer) = 0;

  // GitHub's webhook deliveries (no API key in `meta`).
  virtual void DeliverGitHubWebhook(const CallMeta& meta, const pb::GitHubWebhookRequest& request,
                                    Callback<pb::GitHubWebhookResponse> done) = 0;

  // grpc.health.v1 Check: "SERVING", "NOT_SERVING", ... or the call's error.
  virtual void CheckHealth(Callback<std::string> done) = 0;
};

std::unique_ptr<BrokerClient> NewGrpcBrokerClient(std::shared_ptr<grpc::Channel> channel,
                                                  ClientOptions options);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_BROKER_CLIENT_H_
