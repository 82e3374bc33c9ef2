#include "gateway/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace buildd::gateway {
namespace {

namespace http = boost::beast::http;
using ::testing::ElementsAre;
using ::testing::Pair;

Router MakeRouter() {
  Router router;
  auto nothing = [](const HttpRequest&, Reply) {};
  router.Get("/api/tasks", nothing);
  router.Post("/api/tasks", nothing);
  router.Get("/api/tasks/:id", nothing);
  router.Post("/api/tasks/:id/cancel", nothing);
  router.Delete("/api/accounts/:id/keys/:keyId", nothing);
  router.Get("/", nothing, Auth::kNone);
  return router;
}

TEST(RouterTest, MatchesLiteralPaths) {
  Router router = MakeRouter();
  Router::Match match = router.Find(http::verb::get, "/api/tasks");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(match.route->pattern, "/api/tasks");
  EXPECT_TRUE(match.params.empty());
  EXPECT_EQ(router.Find(http::verb::post, "/api/tasks").route->method, http::verb::post);
}

TEST(RouterTest, CapturesAndDecodesPathParameters) {
  Router router = MakeRouter();
  Router::Match match = router.Find(http::verb::delete_, "/api/accounts/a%2Fb/keys/k1");
  ASSERT_NE(match.route, nullptr);
  EXPECT_THAT(match.params, ElementsAre(Pair("id", "a/b"), Pair("keyId", "k1")));
}

TEST(RouterTest, IgnoresOneTrailingSlash) {
  Router router = MakeRouter();
  EXPECT_NE(router.Find(http::verb::get, "/api/tasks/").route, nullptr);
  EXPECT_NE(router.Find(http::verb::get, "/").route, nullptr);
}

TEST(RouterTest, UnknownPathHasNoRouteAndNoAllowedMethods) {
  Router router = MakeRouter();
  Router::Match match = router.Find(http::verb::get, "/api/tasks/t1/cancel/now");
  EXPECT_EQ(match.route, nullptr);
  EXPECT_TRUE(match.allowed.empty());
  EXPECT_EQ(router.Find(http::verb::get, "/api//cancel").route, nullptr);
}

TEST(RouterTest, KnownPathWithWrongMethodListsAllowedMethods) {
  Router router = MakeRouter();
  Router::Match match = router.Find(http::verb::put, "/api/tasks");
  EXPECT_EQ(match.route, nullptr);
  EXPECT_THAT(match.allowed, ElementsAre(http::verb::get, http::verb::post));
  match = router.Find(http::verb::get, "/api/tasks/t1/cancel");
  EXPECT_THAT(match.allowed, ElementsAre(http::verb::post));
}

TEST(RouterTest, EmptyParameterDoesNotMatch) {
  Router router = MakeRouter();
  EXPECT_EQ(router.Find(http::verb::post, "/api/tasks//cancel").route, nullptr);
}

TEST(RouterTest, BadEscapeInParameterDoesNotMatch) {
  Router router = MakeRouter();
  EXPECT_EQ(router.Find(http::verb::get, "/api/tasks/%zz").route, nullptr);
}

TEST(RouterTest, ParameterThatIsNotUtf8DoesNotMatch) {
  Router router = MakeRouter();
  EXPECT_EQ(router.Find(http::verb::get, "/api/tasks/%FF").route, nullptr);
  Router::Match match = router.Find(http::verb::get, "/api/tasks/caf%C3%A9");
  ASSERT_NE(match.route, nullptr);
  EXPECT_THAT(match.params, ElementsAre(Pair("id", "caf\xC3\xA9")));
}

TEST(RouterTest, KeepsEachRoutesDocumentationInOrder) {
  Router router;
  auto nothing = [](const HttpRequest&, Reply) {};
  router.Get("/api/tasks", RouteDoc("List tasks").Errors({403}), nothing);
  router.Post("/execute", nothing);
  router.Add(Route{http::verb::post, "/trigger", Auth::kRequired, nothing, nullptr});
  ASSERT_EQ(router.routes().size(), 3u);
  EXPECT_EQ(router.routes()[0].route.pattern, "/api/tasks");
  EXPECT_EQ(router.routes()[0].doc.summary, "List tasks");
  EXPECT_THAT(router.routes()[0].doc.errors, ElementsAre(403u));
  EXPECT_FALSE(router.routes()[1].doc.documented());
  EXPECT_FALSE(router.routes()[2].doc.documented());
  // Documentation changes nothing in matching.
  EXPECT_EQ(router.Find(http::verb::get, "/api/tasks").route, &router.routes()[0].route);
}

TEST(QueryStringTest, DecodesPairsInOrder) {
  QueryParams query;
  ASSERT_TRUE(ParseQueryString("a=1&&b=two+words&c&a=%3D", &query));
  EXPECT_THAT(query, ElementsAre(Pair("a", "1"), Pair("b", "two words"), Pair("c", ""),
                                 Pair("a", "=")));
}

TEST(QueryStringTest, RefusesMalformedEscapesAndBytesThatAreNotUtf8) {
  QueryParams query;
  EXPECT_FALSE(ParseQueryString("a=%4", &query));
  EXPECT_FALSE(ParseQueryString("a=%FF", &query));
  EXPECT_FALSE(ParseQueryString("%C3=1", &query));
}

}  // namespace
}  // namespace buildd::gateway
