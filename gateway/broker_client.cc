#include "gateway/broker_client.h"

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "buildd/v1/broker.grpc.pb.h"
#include "gateway/grpc_call.h"

namespace buildd::gateway {
namespace {

// One SubscribeBatches call. Hands the observer one batch at a time: the
// next read starts only when the observer asks for it (Next), which is what
// bounds the memory a slow HTTP client can make us hold. A hold keeps OnDone
// away between a batch and the following Next, so that StartRead never races
// the end of the call. Owns itself from Start until OnDone.
class SubscribeReactor final : public grpc::ClientReadReactor<pb::EventBatch>,
                               public EventSubscription,
                               public std::enable_shared_from_this<SubscribeReactor> {
 public:
  SubscribeReactor(const pb::SubscribeRequest& request, EventObserver observer)
      : request_(request), observer_(std::move(observer)) {}

  void Start(pb::BrokerService::Stub* stub, const CallMeta& meta) {
    self_ = shared_from_this();
    internal::ApplyMeta(meta, absl::InfiniteDuration(), &context_);
    stub->async()->SubscribeBatches(&context_, &request_, this);
    AddHold();
    {
      absl::MutexLock lock(&mu_);
      state_ = State::kReading;
    }
    StartRead(&batch_);
    StartCall();
  }

  void Next() override {
    {
      absl::MutexLock lock(&mu_);
      if (state_ != State::kDelivered || cancelled_) return;
      state_ = State::kReading;
    }
    StartRead(&batch_);
  }

  void Cancel() override {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_ || done_) return;
      cancelled_ = true;
      if (state_ == State::kDelivered) {
        state_ = State::kFinished;
        release = true;
      }
    }
    context_.TryCancel();
    if (release) RemoveHold();
  }

  void OnReadInitialMetadataDone(bool ok) override {
    if (ok && observer_.on_started) observer_.on_started();
  }

  void OnReadDone(bool ok) override {
    // Take the events out before the state lets Next() start the following
    // read into the same buffer.
    std::vector<pb::Event> events;
    if (ok) {
      events.reserve(batch_.events_size());
      for (pb::Event& e : *batch_.mutable_events()) events.push_back(std::move(e));
      batch_.Clear();
    }
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      if (!ok || cancelled_) {
        state_ = State::kFinished;
        release = true;
      } else {
        state_ = State::kDelivered;
      }
    }
    if (release) {
      RemoveHold();
      return;
    }
    observer_.on_events(std::move(events));
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    EventObserver observer = std::move(observer_);
    observer_ = EventObserver();
    observer.on_done(FromGrpcStatus(status));
    // May destroy this object, if the subscriber already let go of it.
    std::shared_ptr<SubscribeReactor> self = std::move(self_);
  }

 private:
  enum class State { kIdle, kReading, kDelivered, kFinished };

  grpc::ClientContext context_;
  pb::SubscribeRequest request_;
  pb::EventBatch batch_;
  EventObserver observer_;
  std::shared_ptr<SubscribeReactor> self_;

  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kIdle;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

class GrpcBrokerClient final : public internal::GrpcClient<BrokerClient, pb::BrokerService> {
 public:
  using GrpcClient::GrpcClient;

  BUILDD_FORWARD_UNARY(CreateWorkspace, pb::CreateWorkspaceRequest, pb::Workspace)
  BUILDD_FORWARD_UNARY(ListWorkspaces, pb::ListWorkspacesRequest, pb::ListWorkspacesResponse)
  BUILDD_FORWARD_UNARY(GetWorkspace, pb::GetWorkspaceRequest, pb::Workspace)
  BUILDD_FORWARD_UNARY(CreateTask, pb::CreateTaskRequest, pb::Task)
  BUILDD_FORWARD_UNARY(ListTasks, pb::ListTasksRequest, pb::ListTasksResponse)
  BUILDD_FORWARD_UNARY(GetTask, pb::GetTaskRequest, pb::GetTaskResponse)
  BUILDD_FORWARD_UNARY(CancelTask, pb::CancelTaskRequest, pb::Task)
  BUILDD_FORWARD_UNARY(ListWorkers, pb::ListWorkersRequest, pb::ListWorkersResponse)
  BUILDD_FORWARD_UNARY(GetWorker, pb::GetWorkerRequest, pb::Worker)
  BUILDD_FORWARD_UNARY(ControlWorker, pb::ControlWorkerRequest, pb::Worker)
  BUILDD_FORWARD_UNARY(ListRunners, pb::ListRunnersRequest, pb::ListRunnersResponse)
  BUILDD_FORWARD_UNARY(GetQueue, pb::GetQueueRequest, pb::GetQueueResponse)
  BUILDD_FORWARD_UNARY(RetryTask, pb::RetryTaskRequest, pb::Task)
  BUILDD_FORWARD_UNARY(ListUsage, pb::ListUsageRequest, pb::ListUsageResponse)
  BUILDD_FORWARD_UNARY(ClaimWorkers, pb::ClaimWorkersRequest, pb::ClaimWorkersResponse)
  BUILDD_FORWARD_UNARY(UpdateWorker, pb::UpdateWorkerRequest, pb::UpdateWorkerResponse)
  BUILDD_FORWARD_UNARY(CreateWorker, pb::CreateWorkerRequest, pb::Worker)
  BUILDD_FORWARD_UNARY(StartWorker, pb::StartWorkerRequest, pb::Worker)
  BUILDD_FORWARD_UNARY(ListMessages, pb::ListMessagesRequest, pb::ListMessagesResponse)
  BUILDD_FORWARD_UNARY(PostMessage, pb::PostMessageRequest, pb::Message)
  BUILDD_FORWARD_UNARY(GetAttachment, pb::GetAttachmentRequest, pb::Attachment)
  BUILDD_FORWARD_UNARY(ListComments, pb::ListCommentsRequest, pb::ListCommentsResponse)
  BUILDD_FORWARD_UNARY(PostComment, pb::PostCommentRequest, pb::Comment)
  BUILDD_FORWARD_UNARY(DeliverGitHubWebhook, pb::GitHubWebhookRequest, pb::GitHubWebhookResponse)

  std::shared_ptr<EventSubscription> Subscribe(const CallMeta& meta,
                                               const pb::SubscribeRequest& request,
                                               EventObserver observer) override {
    auto reactor = std::make_shared<SubscribeReactor>(request, std::move(observer));
    reactor->Start(stub_.get(), meta);
    return reactor;
  }
};


}  // namespace

std::unique_ptr<BrokerClient> NewGrpcBrokerClient(std::shared_ptr<grpc::Channel> channel,
                                                  ClientOptions options) {
  return std::make_unique<GrpcBrokerClient>(std::move(channel), options);
}

}  // namespace buildd::gateway
