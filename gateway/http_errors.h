#ifndef BUILDD_GATEWAY_HTTP_ERRORS_H_
#define BUILDD_GATEWAY_HTTP_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gateway/http_message.h"

namespace buildd::gateway {

// The one seam from a status (the services' gRPC codes, which absl shares)
// to HTTP. One to one: OK 200, INVALID_ARGUMENT / OUT_OF_RANGE / CANCELLED
// 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404,
// ALREADY_EXISTS / ABORTED / FAILED_PRECONDITION 409, RESOURCE_EXHAUSTED 429,
// UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, others 500.
unsigned HttpStatusForCode(absl::StatusCode code);

// "INVALID_ARGUMENT", "NOT_FOUND", ...: the gRPC name of a code.
std::string CodeName(absl::StatusCode code);

// {"error":{"code":"<CODE_NAME>","message":"<message>"}}
std::string ErrorBody(absl::StatusCode code, absl::string_view message);

// An error response with the status mapped from `status.code()`.
// REQUIRES: !status.ok().
HttpResponse ErrorResponse(const absl::Status& status);

// An error response whose HTTP status is not the code's (404 for an unknown
// path, 405, 413).
HttpResponse ErrorResponse(unsigned http_status, absl::StatusCode code, absl::string_view message);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_HTTP_ERRORS_H_
