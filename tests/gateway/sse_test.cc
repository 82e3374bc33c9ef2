// GET /api/events: Server-Sent Events relayed from BrokerService.Subscribe.

#include "gateway/sse.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/gateway/gateway_harness.h"
#include "tests/testing/http_client.h"

namespace buildd::gateway::fake {
namespace {

using ::buildd::testing::HttpResult;
using ::buildd::testing::Request;
using ::buildd::testing::SseItem;
using ::buildd::testing::SseStream;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(5);
const std::string kBearer = absl::StrCat("Bearer ", kKey);

pb::Event MakeEvent(int64_t id, const std::string& type, const std::string& text) {
  pb::Event event;
  event.set_id(id);
  event.set_type(type);
  event.set_task_id("t1");
  event.set_worker_id("wk1");
  event.set_text(text);
  return event;
}

std::unique_ptr<SseStream> OpenEvents(GatewayHarness& gateway, const std::string& path,
                                      buildd::testing::Headers headers = {}) {
  headers.emplace_back("Authorization", kBearer);
  auto stream = SseStream::Open(gateway.url(), path, headers);
  EXPECT_TRUE(stream.ok()) << stream.status();
  return stream.ok() ? std::move(*stream) : nullptr;
}

// --- Formatting -------------------------------------------------------------

TEST(SseFormatTest, FramesIdEventAndOneLineOfJsonData) {
  pb::Event event = MakeEvent(42, "output", "line one\nline two");
  const std::string framed = FormatSseEvent(event);
  EXPECT_THAT(framed, ::testing::StartsWith("id: 42\nevent: output\ndata: {"));
  EXPECT_THAT(framed, ::testing::EndsWith("}\n\n"));
  // Exactly the three field lines and the blank one.
  EXPECT_EQ(std::count(framed.begin(), framed.end(), '\n'), 4);
  EXPECT_THAT(framed, HasSubstr(R"("text":"line one\nline two")"));
  EXPECT_THAT(framed, HasSubstr(R"("taskId":"t1")"));
}

TEST(SseFormatTest, EventWithoutTypeIsAPlainMessage) {
  pb::Event event;
  event.set_id(1);
  EXPECT_THAT(FormatSseEvent(event), HasSubstr("\nevent: message\n"));
  event.set_type("bad\nname");
  EXPECT_THAT(FormatSseEvent(event), HasSubstr("\nevent: badname\n"));
}

TEST(SseFormatTest, LastEventIdHeaderWinsOverTheQuery) {
  HttpRequest request;
  request.query = {{"lastEventId", "5"}, {"taskId", "t1"}};
  absl::StatusOr<pb::SubscribeRequest> subscribe = SubscribeRequestFromHttp(request);
  ASSERT_TRUE(subscribe.ok());
  EXPECT_EQ(subscribe->after_id(), 5);
  EXPECT_EQ(subscribe->task_id(), "t1");
  request.headers.set("Last-Event-ID", "9");
  subscribe = SubscribeRequestFromHttp(request);
  ASSERT_TRUE(subscribe.ok());
  EXPECT_EQ(subscribe->after_id(), 9);
}

TEST(SseFormatTest, MalformedLastEventIdIsInvalid) {
  HttpRequest request;
  request.query = {{"lastEventId", "yesterday"}};
  absl::StatusOr<pb::SubscribeRequest> subscribe = SubscribeRequestFromHttp(request);
  EXPECT_EQ(subscribe.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(subscribe.status().message(), HasSubstr("lastEventId"));
}

// --- Streams ----------------------------------------------------------------

class SseTest : public ::testing::Test {
 protected:
  static HarnessOptions Options() {
    HarnessOptions options;
    options.sse_heartbeat = absl::Seconds(30);  // Out of the way unless a test wants it.
    return options;
  }
  GatewayHarness gateway_{Options()};
};

TEST_F(SseTest, AnswersEventStreamHeadersThenRetry) {
  auto stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(stream->status(), 200);
  EXPECT_EQ(stream->Header("Content-Type"), "text/event-stream");
  EXPECT_EQ(stream->Header("Cache-Control"), "no-cache");
  EXPECT_EQ(stream->Header("Connection"), "keep-alive");
  EXPECT_FALSE(stream->Header("X-Request-Id").empty());
  absl::StatusOr<SseItem> first = stream->Next(kWait);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->kind, SseItem::Kind::kRetry);
  EXPECT_EQ(first->retry_ms, 3000);
}

TEST_F(SseTest, RelaysEventsWithIdEventAndData) {
  auto stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  gateway_.broker().Publish(MakeEvent(7, "status", "running"));
  gateway_.broker().Publish(MakeEvent(8, "output", "hello\nworld"));

  absl::StatusOr<SseItem> event = stream->NextEvent(kWait);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->id, "7");
  EXPECT_EQ(event->event, "status");
  EXPECT_THAT(event->data, HasSubstr(R"("id":"7")"));
  EXPECT_THAT(event->data, HasSubstr(R"("text":"running")"));
  event = stream->NextEvent(kWait);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->id, "8");
  EXPECT_EQ(event->event, "output");
  EXPECT_EQ(event->data.find('\n'), std::string::npos);
  EXPECT_THAT(event->data, HasSubstr(R"("text":"hello\nworld")"));
}

TEST_F(SseTest, ManyEventsArriveInOrder) {
  auto stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  for (int i = 1; i <= 200; ++i) gateway_.broker().Publish(MakeEvent(i, "output", "x"));
  for (int i = 1; i <= 200; ++i) {
    absl::StatusOr<SseItem> event = stream->NextEvent(kWait);
    ASSERT_TRUE(event.ok()) << i << " " << event.status();
    ASSERT_EQ(event->id, std::to_string(i));
  }
}

TEST_F(SseTest, ForwardsFiltersAndKeyToSubscribe) {
  auto stream = OpenEvents(gateway_, "/api/events?workspaceId=w1&taskId=t1&workerId=wk1&branch=b");
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  RecordedCall call = gateway_.broker().Last("Subscribe");
  EXPECT_EQ(call.authorization, kBearer);
  EXPECT_EQ(call.request_id, stream->Header("X-Request-Id"));
  auto sent = call.Request<pb::SubscribeRequest>();
  EXPECT_EQ(sent.workspace_id(), "w1");
  EXPECT_EQ(sent.task_id(), "t1");
  EXPECT_EQ(sent.worker_id(), "wk1");
  EXPECT_EQ(sent.branch(), "b");
  EXPECT_EQ(sent.after_id(), 0);
}

TEST_F(SseTest, LastEventIdHeaderBecomesAfterId) {
  auto stream = OpenEvents(gateway_, "/api/events", {{"Last-Event-ID", "41"}});
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  EXPECT_EQ(gateway_.broker().Last("Subscribe").Request<pb::SubscribeRequest>().after_id(), 41);
}

TEST_F(SseTest, LastEventIdQueryBecomesAfterId) {
  auto stream = OpenEvents(gateway_, "/api/events?lastEventId=17");
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  EXPECT_EQ(gateway_.broker().Last("Subscribe").Request<pb::SubscribeRequest>().after_id(), 17);
}

TEST_F(SseTest, ReconnectHeaderWinsOverTheOriginalQuery) {
  auto stream = OpenEvents(gateway_, "/api/events?lastEventId=17", {{"Last-Event-ID", "30"}});
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  EXPECT_EQ(gateway_.broker().Last("Subscribe").Request<pb::SubscribeRequest>().after_id(), 30);
}

TEST_F(SseTest, MalformedLastEventIdIs400) {
  auto stream = OpenEvents(gateway_, "/api/events", {{"Last-Event-ID", "abc"}});
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(stream->status(), 400);
  EXPECT_THAT(stream->body(), HasSubstr("Last-Event-ID"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(SseTest, MissingKeyIs401WithoutSubscribing) {
  auto stream = SseStream::Open(gateway_.url(), "/api/events");
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_EQ((*stream)->status(), 401);
  EXPECT_THAT((*stream)->body(), HasSubstr(R"("code":"UNAUTHENTICATED")"));
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

TEST_F(SseTest, SessionCookieAuthenticatesEventSource) {
  auto stream = SseStream::Open(gateway_.url(), "/api/events",
                                {{"Cookie", absl::StrCat("buildd_session=", kKey)}});
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_EQ((*stream)->status(), 200);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  EXPECT_EQ(gateway_.broker().Last("Subscribe").authorization, kBearer);
}

TEST_F(SseTest, RefusalBeforeAnythingWasWrittenIsTheMappedHttpError) {
  gateway_.broker().FailWith("Subscribe",
                             grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not your task"));
  auto stream = OpenEvents(gateway_, "/api/events?taskId=t9");
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(stream->status(), 403);
  EXPECT_EQ(stream->Header("Content-Type"), "application/json");
  EXPECT_EQ(stream->body(), R"({"error":{"code":"PERMISSION_DENIED","message":"not your task"}})");

  gateway_.broker().FailWith("Subscribe",
                             grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "revoked key"));
  stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(stream->status(), 401);
}

TEST_F(SseTest, BrokerThatDelaysInitialMetadataStillGetsAStream) {
  gateway_.broker().set_send_initial_metadata(false);
  auto stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(stream->status(), 200);
  absl::StatusOr<SseItem> first = stream->Next(kWait);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->kind, SseItem::Kind::kRetry);
  gateway_.broker().Publish(MakeEvent(3, "status", "x"));
  absl::StatusOr<SseItem> event = stream->NextEvent(kWait);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->id, "3");
}

TEST_F(SseTest, ClientDisconnectCancelsTheUpstreamCall) {
  auto stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  EXPECT_EQ(gateway_.broker().cancelled_subscriptions(), 0);
  stream->Close();
  EXPECT_TRUE(gateway_.broker().WaitForCancelledSubscriptions(1, kWait));
  EXPECT_TRUE(gateway_.broker().WaitForNoOpenSubscriptions(kWait));
}

TEST_F(SseTest, BrokerEndingTheStreamEndsTheResponse) {
  auto stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  gateway_.broker().Publish(MakeEvent(1, "status", "x"));
  gateway_.broker().EndSubscriptions(grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining"));
  ASSERT_TRUE(stream->NextEvent(kWait).ok());
  absl::StatusOr<SseItem> item = stream->Next(kWait);
  ASSERT_TRUE(item.ok()) << item.status();
  EXPECT_EQ(item->kind, SseItem::Kind::kComment);
  EXPECT_EQ(item->comment, "stream ended: UNAVAILABLE");
  EXPECT_EQ(stream->Next(kWait).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(SseTest, OpenStreamsDoNotStarveOtherRequests) {
  // More idle streams than the gateway has io threads.
  std::vector<std::unique_ptr<SseStream>> streams;
  for (int i = 0; i < 6; ++i) {
    streams.push_back(OpenEvents(gateway_, "/api/events"));
    ASSERT_NE(streams.back(), nullptr);
  }
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(6, kWait));
  HttpResult r = gateway_.Get("/api/tasks");
  EXPECT_EQ(r.status, 200) << r.error;
  gateway_.broker().Publish(MakeEvent(5, "status", "x"));
  for (auto& stream : streams) {
    absl::StatusOr<SseItem> event = stream->NextEvent(kWait);
    ASSERT_TRUE(event.ok()) << event.status();
    EXPECT_EQ(event->id, "5");
  }
}

TEST_F(SseTest, ServerStopEndsStreamsAndCancelsUpstream) {
  auto stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(gateway_.broker().WaitForOpenSubscriptions(1, kWait));
  gateway_.http().Stop(absl::Seconds(5));
  EXPECT_TRUE(gateway_.broker().WaitForCancelledSubscriptions(1, kWait));
  absl::StatusOr<SseItem> item = stream->NextEvent(kWait);
  EXPECT_EQ(item.status().code(), absl::StatusCode::kOutOfRange) << item.status();
}

class SseHeartbeatTest : public ::testing::Test {
 protected:
  static HarnessOptions Options() {
    HarnessOptions options;
    options.sse_heartbeat = absl::Milliseconds(100);
    return options;
  }
  GatewayHarness gateway_{Options()};
};

TEST_F(SseHeartbeatTest, SendsHeartbeatCommentWhenIdle) {
  auto stream = OpenEvents(gateway_, "/api/events");
  ASSERT_NE(stream, nullptr);
  absl::StatusOr<SseItem> item = stream->Next(kWait);
  ASSERT_TRUE(item.ok()) << item.status();
  EXPECT_EQ(item->kind, SseItem::Kind::kRetry);
  for (int i = 0; i < 2; ++i) {
    item = stream->Next(kWait);
    ASSERT_TRUE(item.ok()) << item.status();
    EXPECT_EQ(item->kind, SseItem::Kind::kComment);
    EXPECT_EQ(item->comment, "heartbeat");
  }
}

}  // namespace
}  // namespace buildd::gateway::fake
