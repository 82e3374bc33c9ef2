#ifndef BUILDD_GATEWAY_ROUTE_DOC_H_
#define BUILDD_GATEWAY_ROUTE_DOC_H_

// What a route documents about itself at registration, from which GET
// /openapi.json is made (see openapi.h). Schemas come from the protos'
// descriptors, in protobuf's JSON mapping, so that they say what the
// handler's ParseJsonBody / QueryToMessage / ToJson really read and write.

#include <string>
#include <utility>
#include <vector>

namespace google::protobuf {
class Descriptor;
}  // namespace google::protobuf

namespace buildd::gateway {

// A field of a JSON body that no message describes (the few bodies the
// gateway reads field by field), or a query or header parameter.
struct FieldDoc {
  FieldDoc(std::string name, std::string type = "string", std::string description = "",
           bool required = false)
      : name(std::move(name)),
        type(std::move(type)),
        description(std::move(description)),
        required(required) {}

  std::string name;  // As the client spells it.
  // A JSON Schema type: "string", "boolean", "integer", "number", "object"
  // or "array"; or "uuid" (a string of that format).
  std::string type;
  std::string description;
  bool required;
};

// A JSON body: the JSON mapping of a protobuf message, else fields listed by
// hand. Neither: no JSON body.
struct JsonDoc {
  const google::protobuf::Descriptor* message = nullptr;
  std::vector<FieldDoc> fields;

  bool empty() const { return message == nullptr && fields.empty(); }
};

// The JSON mapping of message type `T` (a generated message).
template <typename T>
JsonDoc JsonOf() {
  return JsonDoc{T::descriptor(), {}};
}

// A hand-listed JSON object.
inline JsonDoc JsonFields(std::vector<FieldDoc> fields) {
  return JsonDoc{nullptr, std::move(fields)};
}

// Written at registration as a chain:
//   RouteDoc("Create a workspace").Body<pb::CreateWorkspaceRequest>()
//       .Returns<pb::Workspace>(201).Errors({403, 409})
struct RouteDoc {
  RouteDoc() = default;
  explicit RouteDoc(std::string summary) : summary(std::move(summary)) {}

  // More than the summary says (CommonMark).
  RouteDoc& Describe(std::string text) {
    description = std::move(text);
    return *this;
  }
  RouteDoc& Tag(std::string name) {
    tag = std::move(name);
    return *this;
  }
  // The request body is `T` in JSON; `optional`: a blank body reads as {}.
  template <typename T>
  RouteDoc& Body(bool optional = false) {
    return Body(JsonOf<T>(), optional);
  }
  RouteDoc& Body(JsonDoc doc, bool optional = false) {
    body = std::move(doc);
    body_optional = optional;
    return *this;
  }
  // The query parameters are `T`'s scalar fields (QueryToMessage).
  template <typename T>
  RouteDoc& Query() {
    query = T::descriptor();
    return *this;
  }
  RouteDoc& QueryParam(FieldDoc param) {
    query_params.push_back(std::move(param));
    return *this;
  }
  RouteDoc& Header(FieldDoc header) {
    headers.push_back(std::move(header));
    return *this;
  }
  // Success answers `status` with `T` in JSON (for a stream: each event's
  // data).
  template <typename T>
  RouteDoc& Returns(unsigned ok_status = 200) {
    return Returns(JsonOf<T>(), ok_status);
  }
  RouteDoc& Returns(JsonDoc doc, unsigned ok_status = 200) {
    response = std::move(doc);
    status = ok_status;
    return *this;
  }
  // Success answers a body of this media type (not JSON).
  RouteDoc& ReturnsMedia(std::string media_type) {
    content_type = std::move(media_type);
    return *this;
  }
  RouteDoc& SaysOnSuccess(std::string text) {
    status_description = std::move(text);
    return *this;
  }
  RouteDoc& Errors(std::vector<unsigned> statuses) {
    errors = std::move(statuses);
    return *this;
  }
  // Statuses besides `status` that answer the same body (GET /health's 503).
  RouteDoc& AlsoAnswers(std::vector<unsigned> statuses) {
    other_statuses = std::move(statuses);
    return *this;
  }

  bool documented() const { return !summary.empty(); }

  // One line saying what the route does. Empty: the route is undocumented
  // (it still appears in the document, and OpenApiTest names it).
  std::string summary;
  std::string description;
  // Groups routes in the document; "" derives it from the path.
  std::string tag;

  // The request body; empty for routes that read none.
  JsonDoc body;
  bool body_optional = false;

  // Query parameters: the scalar fields of `query`, then `query_params`.
  const google::protobuf::Descriptor* query = nullptr;
  std::vector<FieldDoc> query_params;
  // Request headers the route reads (besides the credential).
  std::vector<FieldDoc> headers;

  // The success answer: its status and JSON body. For a streaming route
  // (text/event-stream) `response` is the JSON of each event's `data:`.
  unsigned status = 200;
  std::string status_description;
  JsonDoc response;
  // The success body's media type when it is neither JSON nor an event
  // stream (e.g. "text/html").
  std::string content_type;
  std::vector<unsigned> other_statuses;

  // Error statuses the handler or the services behind it may answer, besides
  // those the server adds by itself (see OpenApiJson).
  std::vector<unsigned> errors;
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_ROUTE_DOC_H_
