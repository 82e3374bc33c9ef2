#ifndef BUILDD_GATEWAY_JSON_CODEC_H_
#define BUILDD_GATEWAY_JSON_CODEC_H_

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/text.h"
#include "gateway/http_message.h"

namespace buildd::gateway {

// JSON <-> protobuf with the proto3 JSON mapping (protobuf's json_util):
// lowerCamelCase names, enums by (lower case) value name.

// Parses a request body into `message`, refusing unknown fields. On failure
// returns INVALID_ARGUMENT whose message names the offending field by its
// JSON name, e.g. `invalid value "sometimes" for field runnerPreference
// (expected one of: any, user, service, action)` or `unknown field "bogus"`.
// A blank body reads as `{}` when `allow_empty`, and is an error otherwise;
// a body that is not UTF-8 is refused as such.
absl::Status ParseJsonBody(absl::string_view body, google::protobuf::Message* message,
                           bool allow_empty = false);

// `message` as one line of JSON, printing fields that hold their default.
std::string ToJson(const google::protobuf::Message& message);

// Sets scalar fields of `message` from query parameters named by their JSON
// or proto field name: strings, integers, bools and enums (by value name).
// Empty values are skipped. INVALID_ARGUMENT naming the parameter for an
// unknown name or a value that does not parse.
absl::Status QueryToMessage(const QueryParams& query, google::protobuf::Message* message);

// Rewrites an error message of json_util's JsonStringToMessage for `body`,
// parsed as `descriptor`, so that it names the JSON field. Exposed for tests.
std::string DescribeJsonError(absl::string_view body, absl::string_view json_util_message,
                              const google::protobuf::Descriptor* descriptor);

// "runner_preference" -> "runnerPreference", as protobuf derives json_name.
std::string ToJsonName(absl::string_view proto_name);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_JSON_CODEC_H_
