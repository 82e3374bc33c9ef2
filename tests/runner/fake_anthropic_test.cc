// FakeAnthropic on its own, through a plain HTTP client: the wire format the
// Claude Code CLI tests rely on.

#include "tests/testing/fake_anthropic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/http_client.h"

namespace buildd::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A conversation request holding `assistant_messages` earlier answers.
std::string Conversation(const std::string& prompt, int assistant_messages, bool stream = true) {
  std::string messages =
      absl::StrCat(R"({"role":"user","content":[{"type":"text","text":")", prompt, R"("}]})");
  for (int i = 0; i < assistant_messages; ++i) {
    absl::StrAppend(&messages, R"(,{"role":"assistant","content":[{"type":"text","text":"x"}]})",
                    R"(,{"role":"user","content":"more"})");
  }
  return absl::StrCat(R"({"model":"claude-test-1","max_tokens":100,"stream":)",
                      stream ? "true" : "false", R"(,"messages":[)", messages, "]}");
}

// The `event:` names of a text/event-stream body, in order.
const Headers kJson = {{"Content-Type", "application/json"},
                       {"X-Claude-Code-Session-Id", "session-1"}};

TEST(FakeAnthropicTest, StreamsTheTurnThatMatchesTheNumberOfEarlierAnswers) {
  FakeAnthropic fake;
  fake.Script("key-1", {FakeTurn::Reply({FakeBlock::Text("Writing."),
                                         FakeBlock::ToolUse("Write", R"({"file_path":"a.txt"})")}),
                        FakeTurn::Reply({FakeBlock::Text("Wrote \"a.txt\".")})});
  auto connection = HttpConnection::Open(fake.base_url());
  ASSERT_TRUE(connection.ok()) << connection.status();

  // Both on one keep-alive connection, as the CLI sends them.
  const HttpResult first =
      (*connection)->Request("POST", "/v1/messages?beta=true", kJson, Conversation("key-1 go", 0));
  const HttpResult second =
      (*connection)->Request("POST", "/v1/messages?beta=true", kJson, Conversation("key-1 go", 1));

  ASSERT_EQ(first.status, 200) << first.error;
  EXPECT_EQ(first.Header("Content-Type"), "text/event-stream");
  EXPECT_THAT(EventNames(first.body),
              ElementsAre("message_start", "content_block_start", "content_block_delta",
                          "content_block_stop", "content_block_start", "content_block_delta",
                          "content_block_stop", "message_delta", "message_stop"));
  EXPECT_THAT(first.body, HasSubstr(R"("model":"claude-test-1")"));
  EXPECT_THAT(first.body, HasSubstr(R"("type":"tool_use","id":"toolu_)"));
  EXPECT_THAT(first.body, HasSubstr(R"("partial_json":"{\"file_path\":\"a.txt\"}")"));
  EXPECT_THAT(first.body, HasSubstr(R"("stop_reason":"tool_use")"));
  ASSERT_EQ(second.status, 200) << second.error;
  EXPECT_THAT(second.body, HasSubstr(R"("text":"Wrote \"a.txt\".")"));
  EXPECT_THAT(second.body, HasSubstr(R"("stop_reason":"end_turn")"));
  EXPECT_TRUE((*connection)->open());

  const auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].path, "/v1/messages");
  EXPECT_EQ(requests[0].key, "key-1");
  EXPECT_EQ(requests[0].session_id, "session-1");
  EXPECT_EQ(requests[0].assistant_messages, 0);
  EXPECT_EQ(requests[1].assistant_messages, 1);
}

TEST(FakeAnthropicTest, AnswersOtherRequestsWithDefaults) {
  FakeAnthropic fake;
  fake.Script("key-1", {FakeTurn::Reply({FakeBlock::Text("first")})});
  const std::string url = fake.base_url();

  const HttpResult plain =
      Request("POST", url, "/v1/messages", kJson, Conversation("key-1", 0, false));
  EXPECT_EQ(plain.status, 200);
  EXPECT_THAT(plain.body, HasSubstr(R"("content":[{"type":"text","text":"first"}])"));
  const HttpResult past_end =
      Request("POST", url, "/v1/messages", kJson, Conversation("key-1", 1, false));
  EXPECT_THAT(past_end.body, HasSubstr(R"("text":"Done.")"));
  const HttpResult unmatched =
      Request("POST", url, "/v1/messages", kJson, Conversation("hello", 0, false));
  EXPECT_THAT(unmatched.body, HasSubstr(R"("text":"ok")"));
  const HttpResult count =
      Request("POST", url, "/v1/messages/count_tokens", kJson, Conversation("hello", 0));
  EXPECT_EQ(count.status, 200);
  EXPECT_THAT(count.body, HasSubstr(R"("input_tokens":)"));
  const HttpResult other = Request("GET", url, "/api/hello");
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.body, "{}");
  EXPECT_EQ(fake.requests().size(), 5u);
}

TEST(FakeAnthropicTest, AnswersAnErrorTurnWithTheApiErrorBody) {
  FakeAnthropic fake;
  fake.Script("key-1", {FakeTurn::Error(400, "no \"thanks\"")});

  const HttpResult result =
      Request("POST", fake.base_url(), "/v1/messages", kJson, Conversation("key-1", 0));

  EXPECT_EQ(result.status, 400);
  EXPECT_EQ(
      result.body,
      R"({"type":"error","error":{"type":"invalid_request_error","message":"no \"thanks\""}})");
}

TEST(FakeAnthropicTest, HoldsAGatedTurnUntilReleased) {
  FakeAnthropic fake;
  fake.Script("key-1", {FakeTurn::Reply({FakeBlock::Text("late")}).HeldAt("g")});
  EXPECT_FALSE(fake.WaitForGate("g", absl::ZeroDuration()));

  auto answer = std::async(std::launch::async, [url = fake.base_url()] {
    return Request("POST", url, "/v1/messages", kJson, Conversation("key-1", 0));
  });
  ASSERT_TRUE(fake.WaitForGate("g", absl::Seconds(10)));
  EXPECT_EQ(answer.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  EXPECT_EQ(fake.requests().size(), 1u);

  fake.Release("g");
  const HttpResult result = answer.get();
  EXPECT_EQ(result.status, 200) << result.error;
  EXPECT_THAT(result.body, HasSubstr(R"("text":"late")"));
}

TEST(FakeAnthropicTest, StopsWhileAnAnswerIsHeldAtAGate) {
  std::future<HttpResult> answer;
  {
    FakeAnthropic fake;
    fake.Script("key-1", {FakeTurn::Reply({FakeBlock::Text("never")}).HeldAt("g")});
    answer = std::async(std::launch::async, [url = fake.base_url()] {
      return Request("POST", url, "/v1/messages", kJson, Conversation("key-1", 0));
    });
    ASSERT_TRUE(fake.WaitForGate("g", absl::Seconds(10)));
  }
  EXPECT_NE(answer.get().status, 200);
}

}  // namespace
}  // namespace buildd::testing
