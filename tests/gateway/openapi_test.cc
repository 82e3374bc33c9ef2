// GET /openapi.json against the router it is made from: every route is
// documented, the document lists exactly the routes the gateway serves, its
// schemas follow the protos' JSON mapping, and every request field and query
// parameter it documents is one the real handler accepts (over loopback
// HTTP, against fake services).

#include "gateway/openapi.h"

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "buildd/v1/broker.pb.h"
#include "gateway/rest_api.h"
#include "gateway/router.h"
#include "tests/gateway/gateway_harness.h"
#include "tests/testing/http_client.h"

namespace buildd::gateway {
namespace {

namespace http = boost::beast::http;
namespace pb = ::buildd::v1;
using google::protobuf::Struct;
using google::protobuf::Value;
using ::testing::Contains;
using ::testing::ElementsAre;

const char* const kHttpMethods[] = {"get",     "put",  "post",  "delete",
                                    "options", "head", "patch", "trace"};

// The gateway's route table, as main() builds it (the clients are never
// called here).
std::shared_ptr<Router> GatewayRouter() { return BuildRouter(nullptr, nullptr, RestApiOptions()); }

Struct Parse(const std::string& json) {
  Struct document;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &document);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return document;
}

// `s[key]` as an object; an empty one when absent.
const Struct& Obj(const Struct& s, const std::string& key) {
  static const Struct* const kEmpty = new Struct();
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_struct_value()) return *kEmpty;
  return it->second.struct_value();
}

bool Has(const Struct& s, const std::string& key) { return s.fields().count(key) != 0; }

std::string Str(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "" : it->second.string_value();
}

std::string RouteName(const std::string& method, const std::string& path) {
  return absl::StrCat(absl::AsciiStrToUpper(method), " ", path);
}

std::string MethodOf(const Route& route) {
  const auto name = http::to_string(route.method);
  return std::string(name.data(), name.size());
}

// Calls `f(method, path, operation)` for each operation of the document.
void ForEachOperation(
    const Struct& document,
    const std::function<void(const std::string&, const std::string&, const Struct&)>& f) {
  for (const auto& [path, item] : Obj(document, "paths").fields()) {
    for (const char* method : kHttpMethods) {
      if (Has(item.struct_value(), method)) f(method, path, Obj(item.struct_value(), method));
    }
  }
}

// Follows a {"$ref": "#/components/schemas/..."}.
const Struct& Resolve(const Struct& document, const Struct& schema) {
  const std::string ref = Str(schema, "$ref");
  if (ref.empty()) return schema;
  static constexpr absl::string_view kPrefix = "#/components/schemas/";
  EXPECT_TRUE(absl::StartsWith(ref, kPrefix)) << ref;
  return Obj(Obj(Obj(document, "components"), "schemas"), ref.substr(kPrefix.size()));
}

TEST(OpenApiTest, EveryRouteIsDocumented) {
  for (const std::string& route : UndocumentedRoutes(*GatewayRouter())) {
    ADD_FAILURE() << route
                  << " has no documentation: register it with a RouteDoc (gateway/route_doc.h), "
                     "e.g. router.Post(pattern, RouteDoc(\"What it does\").Body<pb::Request>()"
                     ".Returns<pb::Response>().Errors({403, 404}), handler)";
  }
}

TEST(OpenApiTest, IsOpenApi31Json) {
  const Struct document = Parse(OpenApiJson(*GatewayRouter()));
  EXPECT_EQ(Str(document, "openapi"), "3.1.0");
  EXPECT_FALSE(Str(Obj(document, "info"), "title").empty());
  EXPECT_FALSE(Str(Obj(document, "info"), "version").empty());
  EXPECT_FALSE(Obj(document, "paths").fields().empty());
  EXPECT_TRUE(Has(Obj(Obj(document, "components"), "schemas"), "Error"));
}

TEST(OpenApiTest, ListsEveryRouteOfTheRouterAndNothingElse) {
  std::shared_ptr<Router> router = GatewayRouter();
  std::set<std::string> routed;
  for (const Router::Entry& entry : router->routes()) {
    EXPECT_TRUE(
        routed.insert(RouteName(MethodOf(entry.route), OpenApiPath(entry.route.pattern))).second)
        << "registered twice: " << MethodOf(entry.route) << " " << entry.route.pattern;
  }
  std::set<std::string> documented;
  std::set<std::string> operation_ids;
  ForEachOperation(Parse(OpenApiJson(*router)), [&](const std::string& method,
                                                    const std::string& path, const Struct& op) {
    documented.insert(RouteName(method, path));
    EXPECT_TRUE(operation_ids.insert(Str(op, "operationId")).second) << Str(op, "operationId");
  });
  for (const std::string& route : routed) {
    EXPECT_EQ(documented.count(route), 1u) << route << " is routed but not in the document";
  }
  for (const std::string& route : documented) {
    EXPECT_EQ(routed.count(route), 1u) << route << " is in the document but not routed";
  }
  // The ones the design names, as a check on the check.
  EXPECT_THAT(documented, Contains("GET /api/tasks/{id}"));
  EXPECT_THAT(documented, Contains("DELETE /api/accounts/{id}/keys/{keyId}"));
  EXPECT_THAT(documented, Contains("GET /api/events"));
  EXPECT_THAT(documented, Contains("GET /openapi.json"));
}

TEST(OpenApiTest, AnUndocumentedRouteIsNamedAndStillListed) {
  Router router;
  auto nothing = [](const HttpRequest&, Reply) {};
  router.Get("/api/things/:id", RouteDoc("Get a thing").Returns<pb::Task>(), nothing);
  router.Post("/execute", nothing);  // As a route from another branch would.
  EXPECT_THAT(UndocumentedRoutes(router), ElementsAre("POST /execute"));
  const Struct document = Parse(OpenApiJson(router));
  const Struct& op = Obj(Obj(Obj(document, "paths"), "/execute"), "post");
  EXPECT_TRUE(op.fields().at("x-undocumented").bool_value());
  const Struct& get = Obj(Obj(Obj(document, "paths"), "/api/things/{id}"), "get");
  EXPECT_EQ(Str(get, "summary"), "Get a thing");
  const Value& parameter = get.fields().at("parameters").list_value().values(0);
  EXPECT_EQ(Str(parameter.struct_value(), "name"), "id");
  EXPECT_EQ(Str(parameter.struct_value(), "in"), "path");
  EXPECT_TRUE(parameter.struct_value().fields().at("required").bool_value());
}

TEST(OpenApiTest, SameRoutesGiveTheSameBytes) {
  EXPECT_EQ(OpenApiJson(*GatewayRouter()), OpenApiJson(*GatewayRouter()));
}

TEST(OpenApiTest, AuthIsAKeyOrTheSessionCookieExceptOnOpenRoutes) {
  std::shared_ptr<Router> router = GatewayRouter();
  const Struct document = Parse(OpenApiJson(*router));
  const Struct& schemes = Obj(Obj(document, "components"), "securitySchemes");
  EXPECT_EQ(Str(Obj(schemes, "bearerAuth"), "scheme"), "bearer");
  EXPECT_EQ(Str(Obj(schemes, "sessionCookie"), "in"), "cookie");
  EXPECT_EQ(Str(Obj(schemes, "sessionCookie"), "name"), kSessionCookie);
  EXPECT_EQ(document.fields().at("security").list_value().values_size(), 2);
  for (const Router::Entry& entry : router->routes()) {
    const std::string method = absl::AsciiStrToLower(MethodOf(entry.route));
    const Struct& op = Obj(Obj(Obj(document, "paths"), OpenApiPath(entry.route.pattern)), method);
    const std::string name = RouteName(method, entry.route.pattern);
    if (entry.route.auth == Auth::kNone) {
      ASSERT_TRUE(Has(op, "security")) << name;
      EXPECT_EQ(op.fields().at("security").list_value().values_size(), 0) << name;
    } else {
      EXPECT_FALSE(Has(op, "security")) << name;
      EXPECT_TRUE(Has(Obj(op, "responses"), "401")) << name;
      EXPECT_TRUE(Has(Obj(op, "responses"), "429")) << name;
    }
  }
  const Struct& paths = Obj(document, "paths");
  EXPECT_TRUE(Has(Obj(Obj(paths, "/openapi.json"), "get"), "security"));
  EXPECT_TRUE(Has(Obj(Obj(paths, "/health"), "get"), "security"));
  EXPECT_FALSE(Has(Obj(Obj(paths, "/api/tasks"), "get"), "security"));
}

TEST(OpenApiTest, ErrorsAreTheJsonErrorShape) {
  const Struct document = Parse(OpenApiJson(*GatewayRouter()));
  const Struct& error = Obj(Obj(Obj(document, "components"), "schemas"), "Error");
  const Struct& inner = Obj(Obj(error, "properties"), "error");
  EXPECT_TRUE(Has(Obj(inner, "properties"), "code"));
  EXPECT_TRUE(Has(Obj(inner, "properties"), "message"));
  std::set<std::string> statuses;
  ForEachOperation(
      document, [&](const std::string& method, const std::string& path, const Struct& op) {
        const Struct& responses = Obj(op, "responses");
        EXPECT_TRUE(Has(responses, "400")) << method << " " << path;
        EXPECT_TRUE(Has(responses, "default")) << method << " " << path;
        if (Has(op, "requestBody")) {
          EXPECT_TRUE(Has(responses, "413")) << method << " " << path;
        }
        for (const auto& [status, response] : responses.fields()) {
          if (status[0] != '4' && status != "default") continue;
          statuses.insert(status);
          const Struct& schema =
              Obj(Obj(Obj(response.struct_value(), "content"), "application/json"), "schema");
          EXPECT_EQ(Str(schema, "$ref"), "#/components/schemas/Error")
              << method << " " << path << " " << status;
        }
      });
  for (const char* status : {"400", "401", "403", "404", "409", "413", "429"}) {
    EXPECT_EQ(statuses.count(status), 1u) << status << " is answered by no route";
  }
}

TEST(OpenApiTest, StreamingRoutesAnswerTextEventStream) {
  std::shared_ptr<Router> router = GatewayRouter();
  const Struct document = Parse(OpenApiJson(*router));
  int streams = 0;
  for (const Router::Entry& entry : router->routes()) {
    const std::string method = absl::AsciiStrToLower(MethodOf(entry.route));
    const Struct& op = Obj(Obj(Obj(document, "paths"), OpenApiPath(entry.route.pattern)), method);
    const Struct& content =
        Obj(Obj(Obj(op, "responses"), absl::StrCat(entry.doc.status)), "content");
    EXPECT_EQ(Has(content, "text/event-stream"), entry.route.stream != nullptr)
        << RouteName(method, entry.route.pattern);
    if (entry.route.stream != nullptr) ++streams;
  }
  EXPECT_GE(streams, 1);
  const Struct& events =
      Obj(Obj(Obj(Obj(Obj(Obj(document, "paths"), "/api/events"), "get"), "responses"), "200"),
          "content");
  EXPECT_EQ(Str(Obj(Obj(events, "text/event-stream"), "x-event-data"), "$ref"),
            "#/components/schemas/buildd.v1.Event");
}

TEST(OpenApiTest, SchemasFollowTheProtosJsonMapping) {
  const Struct document = Parse(OpenApiJson(*GatewayRouter()));
  const Struct& schemas = Obj(Obj(document, "components"), "schemas");
  const Struct& task = Obj(Obj(schemas, "buildd.v1.Task"), "properties");
  // lowerCamelCase names, enums by value name.
  ASSERT_TRUE(Has(task, "runnerPreference"));
  EXPECT_FALSE(Has(task, "runner_preference"));
  const Struct& preference = Resolve(document, Obj(task, "runnerPreference"));
  EXPECT_EQ(Str(preference, "type"), "string");
  std::vector<std::string> values;
  for (const Value& v : preference.fields().at("enum").list_value().values()) {
    values.push_back(v.string_value());
  }
  EXPECT_THAT(values, ElementsAre("any", "user", "service", "action"));
  // Struct as an object, repeated as an array.
  EXPECT_EQ(Str(Obj(task, "providerOptions"), "type"), "object");
  EXPECT_EQ(Str(Obj(task, "requiredLabels"), "type"), "array");
  EXPECT_EQ(Str(Obj(Obj(task, "requiredLabels"), "items"), "type"), "string");
  EXPECT_EQ(Str(Obj(task, "priority"), "type"), "integer");
  // int64 as a string.
  const Struct& event = Obj(Obj(schemas, "buildd.v1.Event"), "properties");
  EXPECT_EQ(Str(Obj(event, "id"), "type"), "string");
  EXPECT_EQ(Str(Obj(event, "id"), "format"), "int64");
  EXPECT_FALSE(Obj(schemas, "buildd.v1.Task").fields().at("additionalProperties").bool_value());
  // The list routes' query parameters are their request's fields.
  const Struct& list = Obj(Obj(Obj(document, "paths"), "/api/tasks"), "get");
  std::set<std::string> names;
  for (const Value& p : list.fields().at("parameters").list_value().values()) {
    EXPECT_EQ(Str(p.struct_value(), "in"), "query");
    names.insert(Str(p.struct_value(), "name"));
  }
  EXPECT_EQ(names, (std::set<std::string>{"workspaceId", "state", "limit"}));
}

TEST(OpenApiTest, EveryReferenceResolves) {
  const Struct document = Parse(OpenApiJson(*GatewayRouter()));
  const Struct& schemas = Obj(Obj(document, "components"), "schemas");
  int refs = 0;
  std::function<void(const Value&)> walk = [&](const Value& value) {
    if (value.has_list_value()) {
      for (const Value& v : value.list_value().values()) walk(v);
    }
    if (!value.has_struct_value()) return;
    for (const auto& [key, v] : value.struct_value().fields()) {
      if (key == "$ref") {
        ++refs;
        const std::string ref = v.string_value();
        ASSERT_TRUE(absl::StartsWith(ref, "#/components/schemas/")) << ref;
        EXPECT_TRUE(Has(schemas, ref.substr(strlen("#/components/schemas/")))) << ref;
      }
      walk(v);
    }
  };
  Value root;
  *root.mutable_struct_value() = document;
  walk(root);
  EXPECT_GT(refs, 0);
}

// --- Against the real handlers, over HTTP.

// A value the schema allows, as JSON.
Value Sample(const Struct& document, const Struct& schema_or_ref) {
  const Struct& schema = Resolve(document, schema_or_ref);
  Value v;
  if (Has(schema, "enum")) return schema.fields().at("enum").list_value().values(0);
  const std::string type = Str(schema, "type");
  const std::string format = Str(schema, "format");
  if (type == "string") {
    if (format == "int64" || format == "uint64") {
      v.set_string_value("1");
    } else if (format == "date-time") {
      v.set_string_value("2026-01-01T00:00:00Z");
    } else if (format == "duration") {
      v.set_string_value("1s");
    } else if (format == "uuid") {
      v.set_string_value("00000000-0000-4000-8000-000000000000");
    } else if (Str(schema, "contentEncoding") == "base64") {
      v.set_string_value("c2FtcGxl");
    } else {
      v.set_string_value("sample");
    }
  } else if (type == "integer") {
    v.set_number_value(1);
  } else if (type == "number") {
    v.set_number_value(1.5);
  } else if (type == "boolean") {
    v.set_bool_value(true);
  } else if (type == "object") {
    v.mutable_struct_value();
  } else if (type == "array") {
    google::protobuf::ListValue* list = v.mutable_list_value();
    if (Has(schema, "items")) *list->add_values() = Sample(document, Obj(schema, "items"));
  } else {
    v.set_string_value("sample");
  }
  return v;
}

std::string QueryText(const Value& v) {
  if (v.has_string_value()) return v.string_value();
  if (v.has_bool_value()) return v.bool_value() ? "true" : "false";
  if (v.has_number_value()) return absl::StrCat(v.number_value());
  return "";
}

std::string ErrorMessage(const std::string& body) {
  Struct error;
  if (!google::protobuf::util::JsonStringToMessage(body, &error).ok()) return body;
  return Str(Obj(error, "error"), "message");
}

// {"a": {"b": value}} for the path {"a", "b"}.
Value Nest(const std::vector<std::string>& path, Value value) {
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    Value outer;
    (*outer.mutable_struct_value()->mutable_fields())[*it] = std::move(value);
    value = std::move(outer);
  }
  return value;
}

std::string JsonText(const Value& value) {
  std::string json;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(value, &json).ok());
  return json;
}

// Path parameters filled with "sample", which bodies repeat where they name
// the path's id.
std::string SamplePath(const std::string& path) {
  std::string out;
  bool in_param = false;
  for (char c : path) {
    if (c == '{') {
      in_param = true;
      out += "sample";
    } else if (c == '}') {
      in_param = false;
    } else if (!in_param) {
      out.push_back(c);
    }
  }
  return out;
}

class OpenApiHttpTest : public ::testing::Test {
 protected:
  buildd::testing::HttpResult Call(const std::string& method, const std::string& path,
                                   const std::string& body, bool streams) {
    buildd::testing::Headers headers = {{"Authorization", absl::StrCat("Bearer ", fake::kKey)}};
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    // A stream that was accepted stays open: its head is enough.
    return buildd::testing::Request(absl::AsciiStrToUpper(method), gateway_.url(), path, headers,
                                    body, streams ? absl::Seconds(2) : absl::Seconds(10));
  }

  bool Streams(const std::string& method, const std::string& path) {
    for (const Router::Entry& entry : router_->routes()) {
      if (absl::AsciiStrToLower(MethodOf(entry.route)) == method &&
          OpenApiPath(entry.route.pattern) == path) {
        return entry.route.stream != nullptr;
      }
    }
    return false;
  }

  fake::GatewayHarness gateway_;
  std::shared_ptr<Router> router_ = GatewayRouter();
  Struct document_ = Parse(OpenApiJson(*router_));
};

TEST_F(OpenApiHttpTest, IsServedWithoutAKeyAsNosniffJson) {
  buildd::testing::HttpResult r = buildd::testing::Request("GET", gateway_.url(), "/openapi.json");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(r.Header("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(r.Header("Content-Security-Policy"), "default-src 'none'; frame-ancestors 'none'");
  EXPECT_EQ(r.body, OpenApiJson(*router_));
  EXPECT_EQ(gateway_.accounts().CallCount(), 0u);
  EXPECT_EQ(gateway_.broker().CallCount(), 0u);
}

// Each documented body field, alone (and each field of an object field, one
// level down), sent to the real handler: the answer may refuse the body as
// incomplete, but never names the field as unknown or its sample value as
// the wrong type.
TEST_F(OpenApiHttpTest, EveryDocumentedBodyFieldIsAcceptedByItsHandler) {
  int fields = 0;
  ForEachOperation(document_, [&](const std::string& method, const std::string& path,
                                  const Struct& op) {
    if (!Has(op, "requestBody")) return;
    const Struct& body_schema = Resolve(
        document_, Obj(Obj(Obj(Obj(op, "requestBody"), "content"), "application/json"), "schema"));
    const bool streams = Streams(method, path);
    std::function<void(const Struct&, std::vector<std::string>, int)> visit =
        [&](const Struct& schema, std::vector<std::string> prefix, int depth) {
          for (const auto& [name, property] : Obj(schema, "properties").fields()) {
            std::vector<std::string> field_path = prefix;
            field_path.push_back(name);
            const std::string field = absl::StrJoin(field_path, ".");
            const Value sample = Sample(document_, property.struct_value());
            const std::string body = JsonText(Nest(field_path, sample));
            buildd::testing::HttpResult r = Call(method, SamplePath(path), body, streams);
            ++fields;
            const std::string message = ErrorMessage(r.body);
            const std::string where = absl::StrCat(RouteName(method, path), " with ", body,
                                                   " answered ", r.status, " ", r.body);
            if (r.status == 400) {
              EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr("unknown field"))) << where;
              EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr(
                                       absl::StrCat("for field ", field, " (expected"))))
                  << where;
              EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr("malformed JSON"))) << where;
            }
            const Struct& nested = Resolve(document_, property.struct_value());
            if (depth < 2 && Has(nested, "properties")) visit(nested, field_path, depth + 1);
          }
        };
    visit(body_schema, {}, 0);
  });
  EXPECT_GT(fields, 20);
}

TEST_F(OpenApiHttpTest, EveryDocumentedQueryParameterIsAcceptedByItsHandler) {
  int parameters = 0;
  ForEachOperation(
      document_, [&](const std::string& method, const std::string& path, const Struct& op) {
        if (!Has(op, "parameters")) return;
        const bool streams = Streams(method, path);
        for (const Value& p : op.fields().at("parameters").list_value().values()) {
          if (Str(p.struct_value(), "in") != "query") continue;
          const std::string name = Str(p.struct_value(), "name");
          const std::string value = QueryText(Sample(document_, Obj(p.struct_value(), "schema")));
          const std::string target = absl::StrCat(SamplePath(path), "?", name, "=", value);
          ++parameters;
          int status = 0;
          std::string body;
          if (streams && method == "get") {
            auto stream = buildd::testing::SseStream::Open(
                gateway_.url(), target, {{"Authorization", absl::StrCat("Bearer ", fake::kKey)}});
            ASSERT_TRUE(stream.ok()) << target << ": " << stream.status();
            status = (*stream)->status();
            body = (*stream)->body();
            (*stream)->Close();
          } else {
            buildd::testing::HttpResult r = Call(method, target, "", streams);
            status = r.status;
            body = r.body;
          }
          if (status == 400) {
            const std::string message = ErrorMessage(body);
            const std::string where =
                absl::StrCat(RouteName(method, target), " answered ", status, " ", body);
            EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr("unknown query parameter")))
                << where;
            EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr(name))) << where;
          }
        }
      });
  EXPECT_GT(parameters, 5);
}

}  // namespace
}  // namespace buildd::gateway
