#include "gateway/http_errors.h"

#include "absl/strings/str_cat.h"
#include "gateway/json_codec.h"

namespace buildd::gateway {

unsigned HttpStatusForCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    // Nginx's 499 is not a status a client can rely on.
    case absl::StatusCode::kCancelled:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

std::string ErrorBody(absl::StatusCode code, absl::string_view message) {
  return absl::StrCat(R"({"error":{"code":)", JsonQuote(CodeName(code)), R"(,"message":)",
                      JsonQuote(message), "}}");
}

HttpResponse ErrorResponse(const absl::Status& status) {
  return ErrorResponse(HttpStatusForCode(status.code()), status.code(), status.message());
}

HttpResponse ErrorResponse(unsigned http_status, absl::StatusCode code, absl::string_view message) {
  return JsonResponse(http_status, ErrorBody(code, message));
}

}  // namespace buildd::gateway
