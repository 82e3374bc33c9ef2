#include "gateway/openapi.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/type_resolver_util.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gateway/http_errors.h"
#include "gateway/http_message.h"

namespace buildd::gateway {

namespace http = boost::beast::http;
namespace protobuf = google::protobuf;
using protobuf::Struct;
using protobuf::Value;

namespace {

constexpr char kSchemas[] = "#/components/schemas/";
constexpr char kErrorSchema[] = "Error";

// --- Building JSON as google.protobuf.Struct.

Value String(absl::string_view s) {
  Value v;
  v.set_string_value(std::string(s));
  return v;
}

Value Number(double n) {
  Value v;
  v.set_number_value(n);
  return v;
}

Value Bool(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}

Value Object(Struct s) {
  Value v;
  *v.mutable_struct_value() = std::move(s);
  return v;
}

Value Array(std::vector<Value> items) {
  Value v;
  protobuf::ListValue* list = v.mutable_list_value();
  for (Value& item : items) *list->add_values() = std::move(item);
  return v;
}

Value& At(Struct& s, const std::string& key) { return (*s.mutable_fields())[key]; }

// The object at `key`, made empty if absent.
Struct& ObjectAt(Struct& s, const std::string& key) { return *At(s, key).mutable_struct_value(); }

Struct Schema(absl::string_view type) {
  Struct s;
  At(s, "type") = String(type);
  return s;
}

Value Ref(absl::string_view name) {
  Struct s;
  At(s, "$ref") = String(absl::StrCat(kSchemas, name));
  return Object(std::move(s));
}

// Sorted keys: the same routes give the same bytes.
std::string ToSortedJson(const Struct& document) {
  std::string binary;
  {
    protobuf::io::StringOutputStream out(&binary);
    protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    document.SerializeToCodedStream(&coded);
  }
  static constexpr char kUrlPrefix[] = "type.googleapis.com";
  std::unique_ptr<protobuf::util::TypeResolver> resolver(
      protobuf::util::NewTypeResolverForDescriptorPool(kUrlPrefix,
                                                       protobuf::DescriptorPool::generated_pool()));
  std::string json;
  const auto status = protobuf::util::BinaryToJsonString(
      resolver.get(), absl::StrCat(kUrlPrefix, "/", Struct::descriptor()->full_name()), binary,
      &json, protobuf::util::JsonPrintOptions());
  if (!status.ok()) return "{}";
  return json;
}

std::string MethodName(http::verb method) {
  const auto name = http::to_string(method);
  return std::string(name.data(), name.size());
}

// --- Schemas from descriptors, in protobuf's JSON mapping.

class SchemaBuilder {
 public:
  // Definitions go into `schemas` (components.schemas), keyed by full name.
  explicit SchemaBuilder(Struct* schemas) : schemas_(schemas) {}

  Value Of(const JsonDoc& doc) {
    if (doc.message != nullptr) return Message(doc.message);
    Struct object = Schema("object");
    Struct& properties = ObjectAt(object, "properties");
    std::vector<Value> required;
    for (const FieldDoc& field : doc.fields) {
      At(properties, field.name) = Object(FieldSchema(field));
      if (field.required) required.push_back(String(field.name));
    }
    if (!required.empty()) At(object, "required") = Array(std::move(required));
    At(object, "additionalProperties") = Bool(false);
    return Object(std::move(object));
  }

  // A hand-listed field: its type and description.
  static Struct FieldSchema(const FieldDoc& field) {
    Struct s = Schema(field.type == "uuid" ? "string" : field.type);
    if (field.type == "uuid") At(s, "format") = String("uuid");
    if (!field.description.empty()) At(s, "description") = String(field.description);
    return s;
  }

  // A message: its well-known JSON form, else a reference to its definition.
  Value Message(const protobuf::Descriptor* message) {
    if (std::optional<Value> known = WellKnown(message)) return *std::move(known);
    Define(message);
    return Ref(message->full_name());
  }

  // One value of `field`'s type (an element, for a repeated field).
  Value Single(const protobuf::FieldDescriptor* field) {
    using F = protobuf::FieldDescriptor;
    switch (field->type()) {
      case F::TYPE_MESSAGE:
      case F::TYPE_GROUP:
        return Message(field->message_type());
      case F::TYPE_ENUM:
        DefineEnum(field->enum_type());
        return Ref(field->enum_type()->full_name());
      case F::TYPE_STRING:
        return Object(Schema("string"));
      case F::TYPE_BYTES: {
        Struct s = Schema("string");
        At(s, "contentEncoding") = String("base64");
        return Object(std::move(s));
      }
      case F::TYPE_BOOL:
        return Object(Schema("boolean"));
      case F::TYPE_INT32:
      case F::TYPE_SINT32:
      case F::TYPE_SFIXED32: {
        Struct s = Schema("integer");
        At(s, "format") = String("int32");
        return Object(std::move(s));
      }
      case F::TYPE_UINT32:
      case F::TYPE_FIXED32: {
        Struct s = Schema("integer");
        At(s, "format") = String("uint32");
        At(s, "minimum") = Number(0);
        return Object(std::move(s));
      }
      case F::TYPE_INT64:
      case F::TYPE_SINT64:
      case F::TYPE_SFIXED64:
        return Int64String("int64");
      case F::TYPE_UINT64:
      case F::TYPE_FIXED64:
        return Int64String("uint64");
      case F::TYPE_DOUBLE:
      case F::TYPE_FLOAT: {
        Struct s = Schema("number");
        At(s, "format") = String(field->type() == F::TYPE_DOUBLE ? "double" : "float");
        return Object(std::move(s));
      }
    }
    return Object(Struct());
  }

  // A field as it appears in its message's JSON.
  Value Field(const protobuf::FieldDescriptor* field) {
    Value schema;
    if (field->is_map()) {
      Struct s = Schema("object");
      At(s, "additionalProperties") = Single(field->message_type()->map_value());
      schema = Object(std::move(s));
    } else if (field->is_repeated()) {
      Struct s = Schema("array");
      At(s, "items") = Single(field);
      schema = Object(std::move(s));
    } else {
      schema = Single(field);
    }
    if (field->options().deprecated()) {
      // $ref siblings are allowed in OpenAPI 3.1 (JSON Schema 2020-12).
      At(*schema.mutable_struct_value(), "deprecated") = Bool(true);
    }
    return schema;
  }

 private:
  // The JSON mapping's special forms of the well-known types.
  static std::optional<Value> WellKnown(const protobuf::Descriptor* message) {
    const std::string& name = message->full_name();
    if (!absl::StartsWith(name, "google.protobuf.")) return std::nullopt;
    auto described = [](absl::string_view type, absl::string_view format = "") {
      Struct s = Schema(type);
      if (!format.empty()) At(s, "format") = String(format);
      return Object(std::move(s));
    };
    if (name == "google.protobuf.Struct" || name == "google.protobuf.Any" ||
        name == "google.protobuf.Empty") {
      return described("object");
    }
    if (name == "google.protobuf.Value") return Object(Struct());  // Any JSON value.
    if (name == "google.protobuf.ListValue") return described("array");
    if (name == "google.protobuf.Timestamp") return described("string", "date-time");
    if (name == "google.protobuf.Duration") return described("string", "duration");
    if (name == "google.protobuf.FieldMask") return described("string");
    if (name == "google.protobuf.StringValue") return described("string");
    if (name == "google.protobuf.BytesValue") return described("string", "byte");
    if (name == "google.protobuf.BoolValue") return described("boolean");
    if (name == "google.protobuf.Int32Value") return described("integer", "int32");
    if (name == "google.protobuf.UInt32Value") return described("integer", "uint32");
    if (name == "google.protobuf.Int64Value") return Int64String("int64");
    if (name == "google.protobuf.UInt64Value") return Int64String("uint64");
    if (name == "google.protobuf.FloatValue" || name == "google.protobuf.DoubleValue") {
      return described("number");
    }
    return std::nullopt;
  }

  // 64-bit integers are JSON strings (a number is accepted on input).
  static Value Int64String(absl::string_view format) {
    Struct s = Schema("string");
    At(s, "format") = String(format);
    At(s, "pattern") = String(format == "uint64" ? "^[0-9]+$" : "^-?[0-9]+$");
    return Object(std::move(s));
  }

  void Define(const protobuf::Descriptor* message) {
    if (!defined_.insert(message->full_name()).second) return;
    Struct object = Schema("object");
    Struct& properties = ObjectAt(object, "properties");
    for (int i = 0; i < message->field_count(); ++i) {
      const protobuf::FieldDescriptor* field = message->field(i);
      At(properties, field->json_name()) = Field(field);
    }
    // ParseJsonBody refuses unknown fields.
    At(object, "additionalProperties") = Bool(false);
    At(*schemas_, message->full_name()) = Object(std::move(object));
  }

  void DefineEnum(const protobuf::EnumDescriptor* e) {
    if (!defined_.insert(e->full_name()).second) return;
    Struct s = Schema("string");
    std::vector<Value> names;
    for (int i = 0; i < e->value_count(); ++i) names.push_back(String(e->value(i)->name()));
    At(s, "enum") = Array(std::move(names));
    At(*schemas_, e->full_name()) = Object(std::move(s));
  }

  Struct* schemas_;
  std::set<std::string> defined_;
};

// --- Operations.

const char* ErrorDescription(unsigned status) {
  switch (status) {
    case 400:
      return "Bad input: a malformed body, query string or path, an unknown field, or a value "
             "the service refuses; the message names the field.";
    case 401:
      return "No credential, a malformed one, or one the accounts service refuses.";
    case 403:
      return "The credential may not do this, or a cookie-signed request that changes "
             "something came from another origin or without a JSON body.";
    case 404:
      return "No such resource (or not visible to the caller).";
    case 409:
      return "Conflicts with the current state (already exists, wrong state, stale lease).";
    case 413:
      return "The request body is larger than the gateway accepts.";
    case 429:
      return "Over a limit of the account, or too many refused credentials from this address "
             "(then Retry-After says when to try again).";
    case 503:
      return "A service behind the gateway is unavailable.";
  }
  return "An error.";
}

Value ErrorResponse(unsigned status) {
  Struct response;
  At(response, "description") = String(ErrorDescription(status));
  Struct& content = ObjectAt(ObjectAt(response, "content"), "application/json");
  At(content, "schema") = Ref(kErrorSchema);
  if (status == 429) {
    At(ObjectAt(ObjectAt(response, "headers"), "Retry-After"), "schema") =
        Object(Schema("integer"));
  }
  if (status == 401) {
    At(ObjectAt(ObjectAt(response, "headers"), "WWW-Authenticate"), "schema") =
        Object(Schema("string"));
  }
  return Object(std::move(response));
}

Struct ErrorSchema() {
  Struct code = Schema("string");
  At(code, "description") =
      String("The gRPC status code's name (the services' codes, one to one).");
  std::vector<Value> names;
  for (int i = 1; i <= 16; ++i) names.push_back(String(CodeName(static_cast<absl::StatusCode>(i))));
  At(code, "enum") = Array(std::move(names));
  Struct message = Schema("string");
  At(message, "description") = String("What was wrong, naming the field by its JSON name.");
  Struct inner = Schema("object");
  At(ObjectAt(inner, "properties"), "code") = Object(std::move(code));
  At(ObjectAt(inner, "properties"), "message") = Object(std::move(message));
  At(inner, "required") = Array({String("code"), String("message")});
  Struct outer = Schema("object");
  At(ObjectAt(outer, "properties"), "error") = Object(std::move(inner));
  At(outer, "required") = Array({String("error")});
  Struct example;
  Struct& error = ObjectAt(example, "error");
  At(error, "code") = String(CodeName(absl::StatusCode::kInvalidArgument));
  At(error, "message") =
      String(R"(invalid value "sometimes" for field runnerPreference (expected one of: any, user, )"
             R"(service, action))");
  At(outer, "example") = Object(std::move(example));
  return outer;
}

std::vector<std::string> PathParams(absl::string_view pattern) {
  std::vector<std::string> names;
  for (absl::string_view segment : absl::StrSplit(pattern, '/')) {
    if (absl::StartsWith(segment, ":")) names.emplace_back(segment.substr(1));
  }
  return names;
}

std::string DerivedTag(absl::string_view pattern) {
  for (absl::string_view segment : absl::StrSplit(pattern, '/', absl::SkipEmpty())) {
    if (segment == "api" || absl::StartsWith(segment, ":")) continue;
    return std::string(segment);
  }
  return "gateway";
}

// "post" + "/api/workers/{id}/pause" -> "postApiWorkersIdPause".
std::string OperationId(absl::string_view method, absl::string_view pattern) {
  std::string id = absl::AsciiStrToLower(method);
  bool upper = true;
  for (char c : pattern) {
    if (!absl::ascii_isalnum(c)) {
      upper = true;
      continue;
    }
    id.push_back(upper ? absl::ascii_toupper(c) : c);
    upper = false;
  }
  return id;
}

Value Parameter(absl::string_view name, absl::string_view in, Value schema,
                absl::string_view description, bool required) {
  Struct p;
  At(p, "name") = String(name);
  At(p, "in") = String(in);
  At(p, "schema") = std::move(schema);
  if (!description.empty()) At(p, "description") = String(description);
  if (required) At(p, "required") = Bool(true);
  return Object(std::move(p));
}

Struct Operation(const Router::Entry& entry, SchemaBuilder& schemas) {
  const Route& route = entry.route;
  const RouteDoc& doc = entry.doc;
  const bool streams = route.stream != nullptr;
  Struct op;
  const std::string method = MethodName(route.method);
  At(op, "operationId") = String(OperationId(method, route.pattern));
  At(op, "tags") = Array({String(doc.tag.empty() ? DerivedTag(route.pattern) : doc.tag)});
  if (doc.documented()) {
    At(op, "summary") = String(doc.summary);
  } else {
    At(op, "summary") = String("Undocumented");
    At(op, "x-undocumented") = Bool(true);
  }
  if (!doc.description.empty()) At(op, "description") = String(doc.description);

  // Auth::kNone overrides the document's default (a key or the cookie).
  if (route.auth == Auth::kNone) At(op, "security") = Array({});

  std::vector<Value> parameters;
  for (const std::string& name : PathParams(route.pattern)) {
    parameters.push_back(Parameter(name, "path", Object(Schema("string")), "", true));
  }
  if (doc.query != nullptr) {
    for (int i = 0; i < doc.query->field_count(); ++i) {
      const protobuf::FieldDescriptor* field = doc.query->field(i);
      // What QueryToMessage accepts.
      if (field->is_repeated() || field->cpp_type() == protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
        continue;
      }
      parameters.push_back(
          Parameter(field->json_name(), "query", schemas.Single(field), "", false));
    }
  }
  for (const FieldDoc& field : doc.query_params) {
    parameters.push_back(Parameter(field.name, "query", Object(Schema(field.type)),
                                   field.description, field.required));
  }
  for (const FieldDoc& field : doc.headers) {
    parameters.push_back(Parameter(field.name, "header", Object(Schema(field.type)),
                                   field.description, field.required));
  }
  if (!parameters.empty()) At(op, "parameters") = Array(std::move(parameters));

  if (!doc.body.empty()) {
    Struct& body = ObjectAt(op, "requestBody");
    At(body, "required") = Bool(!doc.body_optional);
    At(ObjectAt(ObjectAt(body, "content"), "application/json"), "schema") = schemas.Of(doc.body);
  }

  Struct& responses = ObjectAt(op, "responses");
  Struct& ok = ObjectAt(responses, absl::StrCat(doc.status));
  Struct& content = ObjectAt(ok, "content");
  if (streams) {
    At(ok, "description") =
        String(doc.status_description.empty() ? "Server-Sent Events." : doc.status_description);
    Struct stream = Schema("string");
    At(stream, "description") = String(
        "Server-Sent Events: per event `id:`, `event:` (its name) and `data:` (one line "
        "of JSON, described by x-event-data), and `:` comments when idle.");
    Struct& media = ObjectAt(content, "text/event-stream");
    At(media, "schema") = Object(std::move(stream));
    if (!doc.response.empty()) At(media, "x-event-data") = schemas.Of(doc.response);
  } else if (!doc.content_type.empty()) {
    At(ok, "description") = String(doc.status_description.empty() ? "OK." : doc.status_description);
    At(ObjectAt(content, doc.content_type), "schema") = Object(Schema("string"));
  } else {
    At(ok, "description") = String(doc.status_description.empty() ? "OK." : doc.status_description);
    At(ObjectAt(content, "application/json"), "schema") =
        doc.response.empty() ? Object(Schema("object")) : schemas.Of(doc.response);
  }

  for (unsigned status : doc.other_statuses) {
    Value same;
    *same.mutable_struct_value() = ok;
    At(responses, absl::StrCat(status)) = std::move(same);
  }

  std::set<unsigned> errors(doc.errors.begin(), doc.errors.end());
  errors.insert(400);
  if (!doc.body.empty()) errors.insert(413);
  if (route.auth == Auth::kRequired) errors.insert({401, 429});
  if (route.method != http::verb::get) errors.insert({403, 429});
  for (unsigned status : errors) At(responses, absl::StrCat(status)) = ErrorResponse(status);
  Struct other;
  At(other, "description") =
      String("Any other error in the same shape: 500, 501, 503 (a service is unavailable), 504.");
  At(ObjectAt(ObjectAt(other, "content"), "application/json"), "schema") = Ref(kErrorSchema);
  At(responses, "default") = Object(std::move(other));
  return op;
}

}  // namespace

std::string OpenApiPath(absl::string_view pattern) {
  std::vector<std::string> segments;
  for (absl::string_view segment : absl::StrSplit(pattern, '/')) {
    segments.push_back(absl::StartsWith(segment, ":") ? absl::StrCat("{", segment.substr(1), "}")
                                                      : std::string(segment));
  }
  return absl::StrJoin(segments, "/");
}

std::vector<std::string> UndocumentedRoutes(const Router& router) {
  std::vector<std::string> out;
  for (const Router::Entry& entry : router.routes()) {
    if (entry.doc.documented()) continue;
    out.push_back(absl::StrCat(MethodName(entry.route.method), " ", entry.route.pattern));
  }
  return out;
}

std::string OpenApiJson(const Router& router, const OpenApiInfo& info) {
  Struct document;
  At(document, "openapi") = String("3.1.0");
  Struct& about = ObjectAt(document, "info");
  At(about, "title") = String(info.title);
  At(about, "version") = String(info.version);
  At(about, "description") = String(
      "The REST and SSE API of the buildd gateway: JSON in protobuf's JSON mapping "
      "(lowerCamelCase names, enums by value name, 64-bit integers as strings). "
      "Sign in with `Authorization: Bearer buildd_…` or the dashboard's session cookie. "
      "Every error is {\"error\":{\"code\",\"message\"}}.");

  Struct& components = ObjectAt(document, "components");
  Struct& schemes = ObjectAt(components, "securitySchemes");
  Struct& bearer = ObjectAt(schemes, "bearerAuth");
  At(bearer, "type") = String("http");
  At(bearer, "scheme") = String("bearer");
  At(bearer, "description") = String("An API key, buildd_<type>_<random>.");
  Struct& cookie = ObjectAt(schemes, "sessionCookie");
  At(cookie, "type") = String("apiKey");
  At(cookie, "in") = String("cookie");
  At(cookie, "name") = String(kSessionCookie);
  At(cookie, "description") = String(
      "The dashboard's session (POST /api/session); used when no Authorization header "
      "is sent.");
  auto scheme = [](const char* name) {
    Struct requirement;
    At(requirement, name) = Array({});
    return Object(std::move(requirement));
  };
  At(document, "security") = Array({scheme("bearerAuth"), scheme("sessionCookie")});

  Struct& schemas = ObjectAt(components, "schemas");
  At(schemas, kErrorSchema) = Object(ErrorSchema());
  SchemaBuilder builder(&schemas);
  Struct& paths = ObjectAt(document, "paths");
  for (const Router::Entry& entry : router.routes()) {
    Struct& item = ObjectAt(paths, OpenApiPath(entry.route.pattern));
    const std::string method = absl::AsciiStrToLower(MethodName(entry.route.method));
    // The first route of a method and pattern is the one Find answers with.
    if (item.fields().count(method) != 0) continue;
    At(item, method) = Object(Operation(entry, builder));
  }
  return ToSortedJson(document);
}

UnaryHandler OpenApiHandler(const Router* router, OpenApiInfo info) {
  struct Cache {
    absl::once_flag once;
    std::string json;
  };
  auto cache = std::make_shared<Cache>();
  return [router, info = std::move(info), cache](const HttpRequest&, Reply reply) {
    absl::call_once(cache->once, [&] { cache->json = OpenApiJson(*router, info); });
    HttpResponse response = JsonResponse(200, cache->json);
    response.headers = {
        {"Cache-Control", "no-cache"},
        {"X-Content-Type-Options", "nosniff"},
        {"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
    };
    reply(std::move(response));
  };
}

}  // namespace buildd::gateway
