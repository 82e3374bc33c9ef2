// The broker's GitHub edge in-process: the REST client against the fake
// GitHub (what it sends, how GitHub's answers map to statuses), repository
// names, the webhook's signature check, and a task's own credentials
// (checked, sealed to their task, merged over the account's).

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/broker/github_client.h"
#include "services/broker/github_webhook.h"
#include "services/broker/task_credentials.h"
#include "tests/broker/memory_broker_store.h"
#include "tests/testing/fake_github.h"
#include "tests/testing/matchers.h"

namespace buildd::broker {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

std::unique_ptr<HttpGitHubClient> ClientFor(const testing::FakeGitHub& github) {
  HttpGitHubClient::Options options;
  options.api_url = github.api_url();
  options.timeout_ms = 3000;
  auto client = HttpGitHubClient::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return *std::move(client);
}

google::protobuf::Struct Payload(const std::string& task_id) {
  google::protobuf::Struct payload;
  (*payload.mutable_fields())["task_id"].set_string_value(task_id);
  return payload;
}

TEST(GitHubClientTest, SendsARepositoryDispatchWithGitHubsHeadersAndBody) {
  testing::FakeGitHub github;
  github.AddRepo("my-org/my-repo", "ghs_token");
  auto client = ClientFor(github);
  EXPECT_THAT(client->CreateDispatch("ghs_token", "my-org/my-repo", "buildd-task", Payload("t-1")),
              IsOk());
  const auto calls = github.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "POST");
  EXPECT_EQ(calls[0].path, "/repos/my-org/my-repo/dispatches");
  EXPECT_EQ(calls[0].headers.at("authorization"), "Bearer ghs_token");
  EXPECT_EQ(calls[0].headers.at("accept"), "application/vnd.github+json");
  EXPECT_EQ(calls[0].headers.at("x-github-api-version"), "2022-11-28");
  EXPECT_EQ(calls[0].headers.at("user-agent"), "buildd-broker");
  EXPECT_EQ(calls[0].headers.at("content-type"), "application/json");
  EXPECT_EQ(calls[0].status, 204);
  EXPECT_EQ(calls[0].json.fields().at("event_type").string_value(), "buildd-task");
  EXPECT_EQ(calls[0].json.fields().at("client_payload").struct_value().fields().at("task_id").string_value(),
            "t-1");
}

TEST(GitHubClientTest, MapsGitHubsAnswersToStatusesWorthRetryingOrNot) {
  testing::FakeGitHub github;
  github.AddRepo("o/r", "good");
  auto client = ClientFor(github);
  github.FailNext("/dispatches", 502);
  EXPECT_THAT(client->CreateDispatch("good", "o/r", "buildd-task", Payload("t")),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(client->CreateDispatch("bad", "o/r", "buildd-task", Payload("t")),
              StatusIs(absl::StatusCode::kUnauthenticated));
  const absl::Status missing = client->CreateDispatch("good", "o/elsewhere", "buildd-task", Payload("t"));
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("Not Found"));
  EXPECT_THAT(std::string(missing.message()), Not(HasSubstr("good")));
  // Never a path GitHub would read otherwise.
  EXPECT_THAT(client->CreateDispatch("good", "o/r/../../x", "buildd-task", Payload("t")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client->CreateDispatch("good", "o/r?x=1", "buildd-task", Payload("t")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Nobody listening: a network error, worth retrying.
  HttpGitHubClient::Options options;
  options.api_url = "http://127.0.0.1:1";
  options.timeout_ms = 1000;
  auto nowhere = HttpGitHubClient::Create(options);
  ASSERT_TRUE(nowhere.ok());
  EXPECT_THAT((*nowhere)->CreateDispatch("good", "o/r", "buildd-task", Payload("t")),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(GitHubClientTest, OpensAPullRequestAndReturnsItsHtmlUrl) {
  testing::FakeGitHub github;
  github.AddRepo("o/r", "good");
  auto client = ClientFor(github);
  NewPullRequest pull{"Fix it", "buildd/fix", "main", "body text", true};
  absl::StatusOr<std::string> url = client->CreatePullRequest("good", "o/r", pull);
  ASSERT_THAT(url.status(), IsOk());
  EXPECT_EQ(*url, "https://github.com/o/r/pull/1");
  const auto call = github.CallsTo("/pulls").at(0);
  EXPECT_EQ(call.json.fields().at("head").string_value(), "buildd/fix");
  EXPECT_EQ(call.json.fields().at("base").string_value(), "main");
  EXPECT_EQ(call.json.fields().at("title").string_value(), "Fix it");
  EXPECT_EQ(call.json.fields().at("body").string_value(), "body text");
  EXPECT_TRUE(call.json.fields().at("draft").bool_value());
}

TEST(GitHubClientTest, TakesOnlyHttpOrHttpsApiUrlsAndAnEnterprisePath) {
  for (const char* bad : {"ftp://x", "api.github.com", "https://", "https://h:99999", "https://u@h",
                          "https://h/a b"}) {
    HttpGitHubClient::Options options;
    options.api_url = bad;
    EXPECT_THAT(HttpGitHubClient::Create(options).status(), StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  // GitHub Enterprise: the API under a path.
  testing::FakeGitHub github;
  HttpGitHubClient::Options options;
  options.api_url = github.api_url() + "/api/v3/";
  auto client = HttpGitHubClient::Create(options);
  ASSERT_TRUE(client.ok());
  (void)(*client)->CreateDispatch("t", "o/r", "buildd-task", Payload("x"));
  EXPECT_EQ(github.calls().at(0).path, "/api/v3/repos/o/r/dispatches");
}

TEST(GitHubRepoTest, NamesTheRepositoryOfAUrl) {
  EXPECT_EQ(*GitHubRepoOf("https://github.com/acme/widgets.git"), "acme/widgets");
  EXPECT_EQ(*GitHubRepoOf("https://github.com/acme/widgets"), "acme/widgets");
  EXPECT_EQ(*GitHubRepoOf("git@github.com:acme/widgets.git"), "acme/widgets");
  EXPECT_EQ(*GitHubRepoOf("http://127.0.0.1:8080/acme/widgets.git"), "acme/widgets");
  EXPECT_FALSE(GitHubRepoOf("/srv/git/repo.git").ok());
  EXPECT_FALSE(GitHubRepoOf("https://github.com/acme").ok());
  EXPECT_FALSE(GitHubRepoOf("https://h/a/b/c").ok());
}

std::string Sign(const std::string& body, const std::string& secret) {
  return testing::GitHubSignature(body, secret);
}

TEST(GitHubWebhookTest, AcceptsOnlyTheSignatureOfTheBodyUnderItsSecret) {
  MemoryBrokerStore store(*SecretBox::FromHex(std::string(64, 'a')));
  const auto none = [](const std::string&) -> absl::StatusOr<std::vector<ActionTarget>> {
    return std::vector<ActionTarget>{};
  };
  GitHubWebhook webhook("It's a Secret to Everybody", store, none);
  // GitHub's documented example.
  EXPECT_THAT(webhook.Verify(
                  "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
                  "Hello, World!"),
              IsOk());
  for (const std::string& bad :
       {std::string(), std::string("sha256="), std::string("sha1=01234"),
        Sign("Hello, World?", "It's a Secret to Everybody"), Sign("Hello, World!", "another"),
        std::string("sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E1")}) {
    EXPECT_THAT(webhook.Verify(bad, "Hello, World!"), StatusIs(absl::StatusCode::kUnauthenticated))
        << bad;
  }
  GitHubWebhook unset("", store, none);
  EXPECT_THAT(unset.Verify(Sign("x", ""), "x"), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(TaskCredentialsTest, SealsToTheTaskAndGivesTheTasksOwnOverTheAccounts) {
  auto box = SecretBox::FromHex(std::string(64, 'b'));
  ASSERT_TRUE(box.ok());
  const CredentialMap own = {{"ANTHROPIC_API_KEY", "sk-task"}, {"GIT_TOKEN", "ghp_x"}};
  const std::string sealed = SealCredentials(*box, "task-1", own);
  EXPECT_THAT(sealed, Not(HasSubstr("sk-task")));
  EXPECT_EQ(*OpenCredentials(*box, "task-1", sealed), own);
  // Moved to another task's row, they do not open.
  EXPECT_THAT(OpenCredentials(*box, "task-2", sealed).status(), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(SealCredentials(*box, "task-1", {}), "");
  EXPECT_TRUE(OpenCredentials(*box, "task-1", "")->empty());
  const CredentialMap merged =
      AssignCredentials({{"ANTHROPIC_API_KEY", "sk-account"}, {"OPENAI_API_KEY", "sk-openai"}}, own);
  EXPECT_EQ(merged.at("ANTHROPIC_API_KEY"), "sk-task");
  EXPECT_EQ(merged.at("OPENAI_API_KEY"), "sk-openai");
  EXPECT_EQ(merged.at("GIT_TOKEN"), "ghp_x");
}

TEST(TaskCredentialsTest, RefusesUnknownNamesAndBadValuesWithoutShowingThem) {
  const auto check = [](const std::string& name, const std::string& value) {
    pb::Task task;
    (*task.mutable_credentials())[name] = value;
    return ValidateTaskCredentials(task);
  };
  EXPECT_THAT(check("GIT_TOKEN", "ghp_fine"), IsOk());
  EXPECT_THAT(check("LD_PRELOAD", "/tmp/x.so"), StatusIs(absl::StatusCode::kInvalidArgument));
  for (const std::string& value : {std::string(), std::string("ghp_\nx"), std::string("ghp x"),
                                   std::string(4097, 'k')}) {
    const absl::Status st = check("GIT_TOKEN", value);
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(std::string(st.message()), HasSubstr("credentials.GIT_TOKEN"));
    if (!value.empty()) {
      EXPECT_THAT(std::string(st.message()), Not(HasSubstr(value.substr(0, 5))));
    }
  }
}

}  // namespace
}  // namespace buildd::broker
