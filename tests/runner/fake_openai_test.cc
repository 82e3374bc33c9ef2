// FakeOpenAI on its own, through a plain HTTP client: the wire format the
// Codex CLI tests rely on.

#include "tests/testing/fake_openai.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/http_client.h"
#include "tests/testing/matchers.h"
#include "tests/testing/process.h"

namespace buildd::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A Responses API request whose input holds the prompt and then `turns`
// earlier answers, each a function call with its output.
std::string Input(const std::string& prompt, int turns, bool stream = true) {
  std::string input = absl::StrCat(
      R"({"type":"message","role":"developer","content":[{"type":"input_text","text":"rules"}]},)",
      R"({"type":"message","role":"user","content":[{"type":"input_text","text":")", prompt,
      R"("}]})");
  for (int i = 0; i < turns; ++i) {
    absl::StrAppend(
        &input,
        R"(,{"type":"reasoning","summary":[]})",
        R"(,{"type":"message","role":"assistant","content":[{"type":"output_text","text":"x"}]})",
        R"(,{"type":"function_call","name":"exec_command","arguments":"{}","call_id":"c"})",
        R"(,{"type":"function_call_output","call_id":"c","output":"done"})");
  }
  return absl::StrCat(R"({"model":"gpt-test","stream":)", stream ? "true" : "false",
                      R"(,"input":[)", input, "]}");
}

// The `event:` names of a text/event-stream body, in order.
const Headers kJson = {{"Content-Type", "application/json"},
                       {"Authorization", "Bearer sk-1"},
                       {"session-id", "thread-1"}};

TEST(FakeOpenAITest, StreamsTheTurnThatMatchesTheNumberOfEarlierAnswers) {
  FakeOpenAI fake;
  fake.Script("key-1", {FakeTurn::Reply({FakeBlock::Text("Writing."),
                                         CodexShell("echo \"hi\"")}),
                        FakeTurn::Reply({CodexAddFile("b.txt", "b\n")}),
                        FakeTurn::Reply({FakeBlock::Text("Wrote \"a.txt\".")})});
  auto connection = HttpConnection::Open(fake.base_url());
  ASSERT_TRUE(connection.ok()) << connection.status();

  const HttpResult first =
      (*connection)->Request("POST", "/v1/responses", kJson, Input("key-1 go", 0));
  const HttpResult second =
      (*connection)->Request("POST", "/v1/responses", kJson, Input("key-1 go", 1));
  const HttpResult third =
      (*connection)->Request("POST", "/v1/responses", kJson, Input("key-1 go", 2));

  ASSERT_EQ(first.status, 200) << first.error;
  EXPECT_EQ(first.Header("Content-Type"), "text/event-stream");
  EXPECT_THAT(EventNames(first.body),
              ElementsAre("response.created", "response.output_item.added",
                          "response.output_text.delta", "response.output_item.done",
                          "response.output_item.added", "response.function_call_arguments.delta",
                          "response.output_item.done", "response.completed"));
  EXPECT_THAT(first.body, HasSubstr(R"("type":"message","role":"assistant","content":[{)"
                                    R"("type":"output_text","text":"Writing.")"));
  EXPECT_THAT(first.body, HasSubstr(R"("type":"function_call","call_id":"call_fc_fake_1_1",)"
                                    R"("name":"exec_command","arguments":"{\"cmd\":)"
                                    R"(\"echo \\\"hi\\\"\",\"login\":false}")"));
  EXPECT_THAT(first.body, HasSubstr(R"("model":"gpt-test")"));
  EXPECT_THAT(first.body, HasSubstr(R"("usage":{"input_tokens":)"));
  ASSERT_EQ(second.status, 200) << second.error;
  EXPECT_THAT(EventNames(second.body),
              ElementsAre("response.created", "response.output_item.added",
                          "response.custom_tool_call_input.delta", "response.output_item.done",
                          "response.completed"));
  EXPECT_THAT(second.body, HasSubstr(R"("type":"custom_tool_call","call_id":"call_fc_fake_2_0",)"
                                     R"("name":"apply_patch","input":"*** Begin Patch\n)"
                                     R"(*** Add File: b.txt\n+b\n*** End Patch\n"})"));
  ASSERT_EQ(third.status, 200) << third.error;
  EXPECT_THAT(third.body, HasSubstr(R"("text":"Wrote \"a.txt\".")"));
  EXPECT_TRUE((*connection)->open());

  const auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].path, "/v1/responses");
  EXPECT_EQ(requests[0].key, "key-1");
  EXPECT_EQ(requests[0].session_id, "thread-1");
  EXPECT_EQ(requests[0].api_key, "Bearer sk-1");
  EXPECT_EQ(requests[0].assistant_messages, 0);
  EXPECT_EQ(requests[1].assistant_messages, 1);
  EXPECT_EQ(requests[2].assistant_messages, 2);
}

TEST(FakeOpenAITest, AnswersOtherRequestsWithDefaults) {
  FakeOpenAI fake;
  fake.Script("key-1", {FakeTurn::Reply({FakeBlock::Text("first")})});
  const std::string url = fake.base_url();

  const HttpResult plain = Request("POST", url, "/v1/responses", kJson, Input("key-1", 0, false));
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(plain.Header("Content-Type"), "application/json");
  EXPECT_THAT(plain.body, HasSubstr(R"("object":"response","created_at":0,"status":"completed")"));
  EXPECT_THAT(plain.body, HasSubstr(R"("content":[{"type":"output_text","text":"first")"));
  const HttpResult past_end =
      Request("POST", url, "/v1/responses", kJson, Input("key-1", 1, false));
  EXPECT_THAT(past_end.body, HasSubstr(R"("text":"Done.")"));
  const HttpResult unmatched =
      Request("POST", url, "/v1/responses", kJson, Input("hello", 0, false));
  EXPECT_THAT(unmatched.body, HasSubstr(R"("text":"ok")"));
  const HttpResult models = Request("GET", url, "/v1/models");
  EXPECT_EQ(models.status, 200);
  EXPECT_EQ(models.body, R"({"object":"list","data":[]})");
  const HttpResult other = Request("GET", url, "/api/hello");
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.body, "{}");
  EXPECT_EQ(fake.requests().size(), 5u);
}

TEST(FakeOpenAITest, AnswersAnErrorTurnWithTheApiErrorBody) {
  FakeOpenAI fake;
  fake.Script("key-1", {FakeTurn::Error(400, "no \"thanks\"")});

  const HttpResult result =
      Request("POST", fake.base_url(), "/v1/responses", kJson, Input("key-1", 0));

  EXPECT_EQ(result.status, 400);
  EXPECT_EQ(
      result.body,
      R"({"error":{"message":"no \"thanks\"","type":"invalid_request_error","param":null,"code":null}})");
}

TEST(FakeOpenAITest, WritesACodexConfigForThisServer) {
  FakeOpenAI fake;
  const std::string dir = MakeTempDir("buildd-fake-openai-");
  ASSERT_FALSE(dir.empty());

  ASSERT_THAT(fake.WriteCodexConfig(dir + "/codex"), IsOk());

  std::stringstream config;
  config << std::ifstream(dir + "/codex/config.toml").rdbuf();
  std::filesystem::remove_all(dir);
  EXPECT_THAT(config.str(), HasSubstr(R"(model_provider = "buildd_fake")"));
  EXPECT_THAT(config.str(), HasSubstr(absl::StrCat(R"(base_url = ")", fake.base_url(), "/v1\"")));
  EXPECT_THAT(config.str(), HasSubstr(R"(wire_api = "responses")"));
  EXPECT_THAT(config.str(), HasSubstr(R"(env_key = "OPENAI_API_KEY")"));
  EXPECT_THAT(fake.CodexEnv(),
              ::testing::Contains(::testing::Pair("OPENAI_API_KEY", ::testing::Not(""))));
}

}  // namespace
}  // namespace buildd::testing
