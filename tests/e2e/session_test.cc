// The dashboard's sign-in as a browser and an attacker's page would use it:
// the cookie is a session, not the key; pages of other origins cannot make
// cookie-signed changes; revoking a key, a session or a grant ends what
// it opened, SSE streams included.
#include <chrono>
#include <string>
#include <vector>

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/db.h"
#include "tests/e2e/mesh_fixture.h"

namespace buildd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

Mesh::Options FewStreams() {
  Mesh::Options options;
  options.broker_args = {"--max_subscriptions_per_key=3"};
  return options;
}

class SessionTest : public MeshTest {
 protected:
  SessionTest() : MeshTest(FewStreams()) {}

  // Signs in with `key` as the dashboard does; the cookie's value.
  std::string SignIn(const std::string& key) {
    HttpResult r = testing::Request("POST", mesh_.gateway_url(), "/api/session",
                                    {{"Content-Type", "application/json"}, {"Origin", Origin()}},
                                    absl::StrCat(R"({"apiKey":")", key, R"("})"));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_THAT(r.body, Not(HasSubstr(key)));
    const std::string cookie = r.Header("Set-Cookie");
    EXPECT_THAT(cookie, HasSubstr("HttpOnly"));
    EXPECT_THAT(cookie, HasSubstr("SameSite=Strict"));
    const std::string prefix = "buildd_session=";
    EXPECT_THAT(cookie, StartsWith(prefix));
    const std::string value = cookie.substr(prefix.size(), cookie.find(';') - prefix.size());
    EXPECT_THAT(r.body, Not(HasSubstr(value)));
    return value;
  }

  std::string Origin() const { return absl::StrCat("http://127.0.0.1:", mesh_.gateway_port()); }

  // A request as the browser sends it with the cookie, from `origin`.
  HttpResult WithCookie(const std::string& method, const std::string& path,
                        const std::string& cookie, const std::string& origin,
                        const std::string& content_type = "application/json",
                        const std::string& body = "") {
    testing::Headers headers = {{"Cookie", "buildd_session=" + cookie}};
    if (!origin.empty()) headers.push_back({"Origin", origin});
    if (!content_type.empty()) headers.push_back({"Content-Type", content_type});
    return testing::Request(method, mesh_.gateway_url(), path, headers, body);
  }

  // Waits until `stream` ends (skipping what it still delivers); how long
  // that took, or a failure after 10 s.
  std::chrono::milliseconds TimeToEnd(testing::SseStream& stream) {
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < std::chrono::seconds(10)) {
      auto item = stream.Next(absl::Milliseconds(200));
      if (!item.ok() && item.status().code() == absl::StatusCode::kOutOfRange) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
      }
    }
    ADD_FAILURE() << "the stream did not end";
    return std::chrono::milliseconds(10000);
  }
};

TEST_F(SessionTest, TheCookieIsARevocableSessionNotTheKey) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  const std::string cookie = SignIn(s.api_key);
  EXPECT_THAT(cookie, StartsWith("buildd_session_"));
  EXPECT_NE(cookie, s.api_key);
  EXPECT_EQ(WithCookie("GET", "/api/tasks", cookie, "").status, 200);
  // Listed, and stored as a hash only.
  HttpResult list = WithCookie("GET", "/api/sessions", cookie, "");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_THAT(list.body, HasSubstr(s.account_id));
  {
    soci::session sql(soci::postgresql, *ToConninfo(mesh_.database_url()));
    std::string dump;
    sql << "SELECT string_agg(s::text, ' ') FROM sessions s", soci::into(dump);
    EXPECT_THAT(dump, Not(HasSubstr(cookie)));
    EXPECT_THAT(dump, Not(HasSubstr(cookie.substr(15))));
  }
  // A session cannot run a runner or mint sessions.
  RawRunner runner(mesh_.broker_addr(), cookie);
  EXPECT_FALSE(runner.Hello("from-a-browser").has_welcome());
  EXPECT_EQ(runner.Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  HttpResult again = testing::Request("POST", mesh_.gateway_url(), "/api/session",
                                      {{"Content-Type", "application/json"}},
                                      absl::StrCat(R"({"apiKey":")", cookie, R"("})"));
  EXPECT_EQ(again.status, 403) << again.body;
  // Signing out ends it on the server, not only in the browser.
  HttpResult out = WithCookie("DELETE", "/api/session", cookie, Origin());
  ASSERT_EQ(out.status, 200) << out.body;
  EXPECT_THAT(out.Header("Set-Cookie"), HasSubstr("Max-Age=0"));
  EXPECT_EQ(WithCookie("GET", "/api/tasks", cookie, "").status, 401);
  // The key itself still works.
  EXPECT_EQ(Call("GET", "/api/tasks", s.api_key).status, 200);
}

TEST_F(SessionTest, AnotherAccountCanNeitherListNorRevokeASession) {
  Setup owner = CreateAccountAndWorkspace("user", true, true);
  Setup other = CreateAccountAndWorkspace("user", true, true);
  const std::string cookie = SignIn(owner.api_key);
  HttpResult mine = WithCookie("GET", "/api/sessions", cookie, "");
  ASSERT_EQ(mine.status, 200) << mine.body;
  const Struct listed = Json(mine.body);
  ASSERT_EQ(listed.fields().at("sessions").list_value().values_size(), 1);
  const std::string id =
      Str(listed.fields().at("sessions").list_value().values(0).struct_value(), "id");
  ASSERT_FALSE(id.empty());
  // Not listed for another account's key, nor revoked by it.
  HttpResult peek = Call("GET", "/api/sessions?accountId=" + owner.account_id, other.api_key);
  EXPECT_EQ(peek.status, 403) << peek.body;
  HttpResult revoke = Call("DELETE", "/api/sessions/" + id, other.api_key);
  EXPECT_EQ(revoke.status, 404) << revoke.body;
  EXPECT_EQ(WithCookie("GET", "/api/tasks", cookie, "").status, 200);
  // An admin may list them; the owner's key ends it.
  HttpResult admin = Call("GET", "/api/sessions?accountId=" + owner.account_id, mesh_.admin_key());
  ASSERT_EQ(admin.status, 200) << admin.body;
  EXPECT_THAT(admin.body, HasSubstr(id));
  ASSERT_EQ(Call("DELETE", "/api/sessions/" + id, owner.api_key).status, 200);
  EXPECT_EQ(WithCookie("GET", "/api/tasks", cookie, "").status, 401);
  EXPECT_THAT(Call("GET", "/api/sessions", owner.api_key).body, Not(HasSubstr(id)));
}

TEST_F(SessionTest, ACrossOriginTextPlainPostIsRefused) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  const std::string cookie = SignIn(mesh_.admin_key());
  const std::string task = absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                        R"(","provider":"command","command":"echo pwned"})");
  // What fetch(…, {mode: "no-cors", credentials: "include"}) from another
  // port of the same host sends.
  HttpResult other_port =
      WithCookie("POST", "/api/tasks", cookie, "http://127.0.0.1:3000", "text/plain", task);
  EXPECT_EQ(other_port.status, 403) << other_port.body;
  EXPECT_THAT(other_port.body, HasSubstr("own origin"));
  HttpResult json_elsewhere =
      WithCookie("POST", "/api/accounts", cookie, "http://evil.example", "application/json",
                 R"({"type":"service","name":"planted"})");
  EXPECT_EQ(json_elsewhere.status, 403) << json_elsewhere.body;
  EXPECT_EQ(WithCookie("POST", "/api/tasks", cookie, "", "application/json", task).status, 403);
  HttpResult plain_here = WithCookie("POST", "/api/tasks", cookie, Origin(), "text/plain", task);
  EXPECT_EQ(plain_here.status, 403) << plain_here.body;
  EXPECT_THAT(plain_here.body, HasSubstr("application/json"));
  // Nothing was created by those.
  HttpResult tasks = Call("GET", "/api/tasks?workspaceId=" + s.workspace_id, mesh_.admin_key());
  EXPECT_THAT(tasks.body, Not(HasSubstr("pwned")));
  HttpResult accounts = Call("GET", "/api/accounts", mesh_.admin_key());
  EXPECT_THAT(accounts.body, Not(HasSubstr("planted")));
  // The dashboard's own requests, and API clients with a bearer key, pass.
  EXPECT_EQ(WithCookie("POST", "/api/tasks", cookie, Origin(), "application/json", task).status, 201);
  EXPECT_EQ(testing::Request("POST", mesh_.gateway_url(), "/api/tasks",
                             {{"Authorization", "Bearer " + s.api_key},
                              {"Content-Type", "application/json"}},
                             task)
                .status,
            201);
}

TEST_F(SessionTest, RevokingTheKeyEndsItsSessionsAndItsOpenStreams) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  const std::string cookie = SignIn(s.api_key);
  auto by_cookie = SseStream::Open(mesh_.gateway_url(), "/api/events",
                                   {{"Cookie", "buildd_session=" + cookie}});
  auto by_key = SseStream::Open(mesh_.gateway_url(), "/api/events",
                                {{"Authorization", "Bearer " + s.api_key}});
  ASSERT_TRUE(by_cookie.ok() && by_key.ok());
  ASSERT_EQ((*by_cookie)->status(), 200);
  ASSERT_EQ((*by_key)->status(), 200);
  HttpResult revoke = Call("DELETE", "/api/accounts/" + s.account_id + "/keys", mesh_.admin_key());
  ASSERT_EQ(revoke.status, 200) << revoke.body;
  EXPECT_LT(TimeToEnd(**by_key), std::chrono::seconds(5));
  EXPECT_LT(TimeToEnd(**by_cookie), std::chrono::seconds(5));
  EXPECT_EQ(WithCookie("GET", "/api/tasks", cookie, "").status, 401);
}

TEST_F(SessionTest, RemovingAGrantEndsTheStreamsThatReliedOnIt) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                                {{"Authorization", "Bearer " + s.api_key}});
  ASSERT_TRUE(stream.ok());
  ASSERT_EQ((*stream)->status(), 200);
  HttpResult grant = Call("POST", absl::StrCat("/api/accounts/", s.account_id, "/workspaces"),
                          mesh_.admin_key(),
                          absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                       R"(","canClaim":false,"canCreate":false})"));
  ASSERT_EQ(grant.status, 200) << grant.body;
  EXPECT_LT(TimeToEnd(**stream), std::chrono::seconds(5));
}

TEST_F(SessionTest, AKeyHoldsAtMostItsLimitOfEventStreams) {
  Setup s = CreateAccountAndWorkspace("user", true, true);
  std::vector<std::unique_ptr<testing::SseStream>> open;
  for (int i = 0; i < 3; ++i) {
    auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events",
                                  {{"Authorization", "Bearer " + s.api_key}});
    ASSERT_TRUE(stream.ok());
    ASSERT_EQ((*stream)->status(), 200);
    open.push_back(*std::move(stream));
  }
  auto refused = SseStream::Open(mesh_.gateway_url(), "/api/events",
                                 {{"Authorization", "Bearer " + s.api_key}});
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ((*refused)->status(), 429) << (*refused)->body();
  // Another key is not held up by this one's.
  auto admin = SseStream::Open(mesh_.gateway_url(), "/api/events",
                               {{"Authorization", "Bearer " + mesh_.admin_key()}});
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ((*admin)->status(), 200);
  // A closed stream frees its place.
  open.back()->Close();
  open.pop_back();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto again = SseStream::Open(mesh_.gateway_url(), "/api/events",
                                 {{"Authorization", "Bearer " + s.api_key}});
    ASSERT_TRUE(again.ok());
    status = (*again)->status();
    if (status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(status, 200);
}

}  // namespace
}  // namespace buildd
