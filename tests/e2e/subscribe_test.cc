// The broker's event streams over real gRPC against the real binaries:
// SubscribeBatches (what the gateway follows) carries exactly the events of
// Subscribe, several to a message, and checks the caller as Subscribe does.
#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "buildd/v1/broker.grpc.pb.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/matchers.h"

namespace buildd {
namespace {

namespace pb = ::buildd::v1;
using ::buildd::testing::IsOk;

class SubscribeTest : public MeshTest {
 protected:
  std::unique_ptr<pb::BrokerService::Stub> Broker() {
    return pb::BrokerService::NewStub(
        grpc::CreateChannel(mesh_.broker_addr(), grpc::InsecureChannelCredentials()));
  }

  // The first `n` events `key` gets from Subscribe, and from
  // SubscribeBatches with how many messages carried them.
  std::vector<pb::Event> Events(const std::string& key, size_t n) {
    auto broker = Broker();
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + key);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto reader = broker->Subscribe(&context, pb::SubscribeRequest());
    std::vector<pb::Event> out;
    pb::Event e;
    while (out.size() < n && reader->Read(&e)) out.push_back(e);
    context.TryCancel();
    while (reader->Read(&e)) {
    }
    (void)reader->Finish();
    return out;
  }
  std::vector<pb::Event> Batches(const std::string& key, size_t n, int* messages,
                                 grpc::Status* status = nullptr) {
    auto broker = Broker();
    grpc::ClientContext context;
    if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto reader = broker->SubscribeBatches(&context, pb::SubscribeRequest());
    std::vector<pb::Event> out;
    pb::EventBatch batch;
    *messages = 0;
    while (out.size() < n && reader->Read(&batch)) {
      ++*messages;
      for (const pb::Event& e : batch.events()) out.push_back(e);
    }
    // Stopped reading a stream that goes on (not one the broker ended).
    if (out.size() >= n) context.TryCancel();
    while (reader->Read(&batch)) {
    }
    const grpc::Status finished = reader->Finish();
    if (status != nullptr) *status = finished;
    return out;
  }
};

TEST_F(SubscribeTest, BatchesCarryTheSameEventsInFewerMessagesAndOnlyTheCallersOwn) {
  Setup mine = CreateAccountAndWorkspace("service", true, true);
  Setup theirs = CreateAccountAndWorkspace("service", true, true);
  constexpr int kTasks = 40;
  for (int i = 0; i < kTasks; ++i) {
    CreateTask(mine.api_key, mine.workspace_id, "true");
    CreateTask(theirs.api_key, theirs.workspace_id, "true");
  }
  // Each task has its `created` event; no runner takes them.
  const std::vector<pb::Event> events = Events(mine.api_key, kTasks);
  int messages = 0;
  const std::vector<pb::Event> batched = Batches(mine.api_key, kTasks, &messages);
  ASSERT_EQ(events.size(), static_cast<size_t>(kTasks));
  ASSERT_EQ(batched.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(batched[i].id(), events[i].id());
    EXPECT_EQ(batched[i].type(), events[i].type());
    EXPECT_EQ(batched[i].task_id(), events[i].task_id());
    EXPECT_EQ(batched[i].workspace_id(), mine.workspace_id) << "another account's event";
    if (i > 0) {
      EXPECT_GT(batched[i].id(), batched[i - 1].id());
    }
  }
  EXPECT_LT(messages, kTasks) << "what was ready went several to a message";
}

TEST_F(SubscribeTest, BatchesNeedAKeyThatWorks) {
  int messages = 0;
  grpc::Status status;
  EXPECT_TRUE(Batches("", 1, &messages, &status).empty());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  EXPECT_TRUE(Batches("buildd_not_a_key", 1, &messages, &status).empty());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
}

TEST_F(SubscribeTest, FromNowStartsAfterTheLatestEventUnlessTheClientResumes) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  const std::string b1 = CreateTask(s.api_key, s.workspace_id, "true");
  const std::string b2 = CreateTask(s.api_key, s.workspace_id, "true");
  const testing::Headers auth = {{"Authorization", "Bearer " + s.api_key}};
  auto now = SseStream::Open(mesh_.gateway_url(), "/api/events?fromNow=true", auth);
  ASSERT_THAT(now, IsOk());
  ASSERT_EQ((*now)->status(), 200) << (*now)->body();
  const std::string after = CreateTask(s.api_key, s.workspace_id, "true");
  auto first = (*now)->NextEvent(absl::Seconds(20));
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(Str(Json(first->data), "taskId"), after) << "no history: " << first->data;

  // A reconnecting EventSource keeps its URL and sends Last-Event-ID: that wins.
  auto of_b1 = SseStream::Open(mesh_.gateway_url(), "/api/events?taskId=" + b1, auth);
  ASSERT_THAT(of_b1, IsOk());
  auto created_b1 = (*of_b1)->NextEvent(absl::Seconds(20));
  ASSERT_THAT(created_b1, IsOk());
  testing::Headers resume = auth;
  resume.push_back({"Last-Event-ID", created_b1->id});
  auto resumed = SseStream::Open(mesh_.gateway_url(), "/api/events?fromNow=true", resume);
  ASSERT_THAT(resumed, IsOk());
  auto next = (*resumed)->NextEvent(absl::Seconds(20));
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(Str(Json(next->data), "taskId"), b2);
  HttpResult bad = Call("GET", "/api/events?fromNow=maybe", s.api_key);
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, ::testing::HasSubstr("fromNow"));
}

}  // namespace
}  // namespace buildd
