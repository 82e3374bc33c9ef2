#include "gateway/json_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "buildd/v1/accounts.pb.h"
#include "buildd/v1/broker.pb.h"

namespace buildd::gateway {
namespace {

namespace pb = ::buildd::v1;
using ::testing::HasSubstr;

std::string ParseError(absl::string_view body, google::protobuf::Message* message) {
  absl::Status status = ParseJsonBody(body, message);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << body;
  return std::string(status.message());
}

TEST(JsonCodecTest, ParsesCamelCaseAndLowerCaseEnumNames) {
  pb::Task task;
  ASSERT_TRUE(ParseJsonBody(R"({"workspaceId":"w","runnerPreference":"service",
                                "maxAttempts":2,"planFirst":true})",
                            &task)
                  .ok());
  EXPECT_EQ(task.workspace_id(), "w");
  EXPECT_EQ(task.runner_preference(), pb::Task::service);
  EXPECT_EQ(task.max_attempts(), 2);
  EXPECT_TRUE(task.plan_first());
}

// json_util says: (runner_preference): invalid value "sometimes" for type
// type.googleapis.com/buildd.v1.Task.RunnerPreference
TEST(JsonCodecTest, UnknownEnumValueNamesTheJsonFieldAndTheChoices) {
  pb::Task task;
  EXPECT_EQ(ParseError(R"({"runnerPreference":"sometimes"})", &task),
            R"(invalid value "sometimes" for field runnerPreference )"
            R"((expected one of: any, user, service, action))");
}

TEST(JsonCodecTest, UnspecifiedEnumValuesAreNotOffered) {
  pb::CreateAccountRequest account;
  EXPECT_EQ(ParseError(R"({"type":"robot"})", &account),
            R"(invalid value "robot" for field type (expected one of: user, service, action))");
}

// json_util says: bogus: Cannot find field.
TEST(JsonCodecTest, UnknownFieldIsNamed) {
  pb::Task task;
  EXPECT_EQ(ParseError(R"({"title":"t","bogus":1})", &task), R"(unknown field "bogus" in Task)");
}

// json_util says: (task) bogus: Cannot find field.
TEST(JsonCodecTest, NestedUnknownFieldIsNamedWithItsPath) {
  pb::CreateTaskRequest create;
  EXPECT_EQ(ParseError(R"({"task":{"bogus":1}})", &create),
            R"(unknown field "task.bogus" in CreateTaskRequest)");
}

// json_util says: (task.required_labels[1]): invalid value 3 for type TYPE_STRING
TEST(JsonCodecTest, WrongTypeNamesTheFieldPathInCamelCase) {
  pb::CreateTaskRequest create;
  EXPECT_EQ(ParseError(R"({"task":{"requiredLabels":["a",3]}})", &create),
            "invalid value 3 for field task.requiredLabels[1] (expected a string)");
  pb::Task task;
  EXPECT_EQ(ParseError(R"({"priority":99999999999})", &task),
            "invalid value 99999999999 for field priority (expected a 32-bit integer)");
}

TEST(JsonCodecTest, SyntaxErrorNamesTheFieldBeingParsed) {
  pb::Task task;
  EXPECT_EQ(ParseError(R"({"title": "x", "prompt": })", &task),
            R"(malformed JSON in field "prompt" at line 1, column 26: expected a value)");
  EXPECT_EQ(
      ParseError("{\"title\" \"x\"}", &task),
      R"(malformed JSON in field "title" at line 1, column 10: expected ':' after the field name)");
}

TEST(JsonCodecTest, SyntaxErrorAfterAFieldNamesThatField) {
  pb::CreateTaskRequest create;
  EXPECT_EQ(ParseError("{\"task\": {\"title\": \"x\"}\n \"more\": 1}", &create),
            R"(malformed JSON after field "task" at line 2, column 2: expected ',' or '}')");
  EXPECT_THAT(ParseError(R"({"task": {"title": "x")", &create),
              HasSubstr(R"(after field "task.title")"));
}

TEST(JsonCodecTest, SyntaxErrorUnderAnEmptyFieldNameIsReported) {
  pb::CreateTaskRequest create;
  EXPECT_EQ(ParseError(R"({"task": {"": tru}})", &create),
            R"(malformed JSON in field "task." at line 1, column 15: expected a value)");
}

TEST(JsonCodecTest, UnterminatedStringIsReported) {
  pb::Task task;
  EXPECT_THAT(ParseError(R"({"title": "x)", &task),
              HasSubstr(R"(in field "title" at line 1, column 13: unterminated string)"));
}

TEST(JsonCodecTest, NonObjectBodiesAreRefused) {
  pb::Task task;
  EXPECT_EQ(ParseError("[1]", &task), "the request body must be a JSON object");
  EXPECT_EQ(ParseError("   ", &task), "the request body must be a JSON object");
  EXPECT_TRUE(ParseJsonBody(" ", &task, /*allow_empty=*/true).ok());
}

TEST(JsonCodecTest, InvalidUtf8IsReported) {
  pb::Task task;
  EXPECT_EQ(ParseError("{\"title\":\"\xff\"}", &task), "the request body is not valid UTF-8");
  // Also when json_util stops earlier (at the lone surrogate): the syntax
  // error found next would quote the bytes.
  EXPECT_EQ(ParseError("{\"title\":\"\\ude00\",\"\xed\"}", &task),
            "the request body is not valid UTF-8");
}

TEST(JsonCodecTest, PrintsCamelCaseWithDefaultsOnOneLine) {
  pb::Task task;
  task.set_id("t1");
  task.set_prompt("line one\nline two");
  const std::string json = ToJson(task);
  EXPECT_THAT(json, HasSubstr(R"("id":"t1")"));
  EXPECT_THAT(json, HasSubstr(R"("runnerPreference":"any")"));
  EXPECT_THAT(json, HasSubstr(R"("maxAttempts":0)"));
  EXPECT_THAT(json, HasSubstr(R"("prompt":"line one\nline two")"));
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

TEST(JsonCodecTest, QuerySetsScalarsByJsonOrProtoName) {
  pb::ListTasksRequest list;
  ASSERT_TRUE(
      QueryToMessage({{"workspace_id", "w1"}, {"state", "waiting_input"}, {"limit", "7"}}, &list)
          .ok());
  EXPECT_EQ(list.workspace_id(), "w1");
  EXPECT_EQ(list.state(), pb::Task::waiting_input);
  EXPECT_EQ(list.limit(), 7);
  pb::SubscribeRequest subscribe;
  ASSERT_TRUE(QueryToMessage({{"workerId", "wk"}, {"branch", ""}}, &subscribe).ok());
  EXPECT_EQ(subscribe.worker_id(), "wk");
}

TEST(JsonCodecTest, QueryErrorsNameTheParameter) {
  pb::ListTasksRequest list;
  EXPECT_EQ(QueryToMessage({{"limit", "x"}}, &list).message(),
            R"(invalid value "x" for field limit (expected a 32-bit integer))");
  EXPECT_EQ(QueryToMessage({{"nope", "1"}}, &list).message(), R"(unknown query parameter "nope")");
}

TEST(JsonCodecTest, LongValuesAreCutBetweenCharacters) {
  pb::ListTasksRequest list;
  std::string value = "x";
  for (int i = 0; i < 50; ++i) value += "\xC3\xA9";  // é
  std::string kept = "x";
  for (int i = 0; i < 39; ++i) kept += "\xC3\xA9";  // 79 bytes: the 80th is inside an é
  EXPECT_EQ(QueryToMessage({{"state", value}}, &list).message(),
            absl::StrCat("invalid value \"", kept, "...\" for field state (expected one of: "
                         "pending, assigned, running, waiting_input, completed, failed, canceled)"));
}

TEST(JsonCodecTest, JsonQuoteEscapes) {
  EXPECT_EQ(JsonQuote("a\"b\\c\nd\x01"), R"("a\"b\\c\nd\u0001")");
}

}  // namespace
}  // namespace buildd::gateway
