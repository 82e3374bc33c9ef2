#include "gateway/http_errors.h"

#include <gtest/gtest.h>

namespace buildd::gateway {
namespace {

TEST(HttpErrorsTest, EveryCodeMapsToItsHttpStatus) {
  using C = absl::StatusCode;
  EXPECT_EQ(HttpStatusForCode(C::kOk), 200u);
  EXPECT_EQ(HttpStatusForCode(C::kInvalidArgument), 400u);
  EXPECT_EQ(HttpStatusForCode(C::kOutOfRange), 400u);
  EXPECT_EQ(HttpStatusForCode(C::kCancelled), 400u);
  EXPECT_EQ(HttpStatusForCode(C::kUnauthenticated), 401u);
  EXPECT_EQ(HttpStatusForCode(C::kPermissionDenied), 403u);
  EXPECT_EQ(HttpStatusForCode(C::kNotFound), 404u);
  EXPECT_EQ(HttpStatusForCode(C::kAlreadyExists), 409u);
  EXPECT_EQ(HttpStatusForCode(C::kAborted), 409u);
  EXPECT_EQ(HttpStatusForCode(C::kFailedPrecondition), 409u);
  EXPECT_EQ(HttpStatusForCode(C::kResourceExhausted), 429u);
  EXPECT_EQ(HttpStatusForCode(C::kUnimplemented), 501u);
  EXPECT_EQ(HttpStatusForCode(C::kUnavailable), 503u);
  EXPECT_EQ(HttpStatusForCode(C::kDeadlineExceeded), 504u);
  EXPECT_EQ(HttpStatusForCode(C::kInternal), 500u);
  EXPECT_EQ(HttpStatusForCode(C::kUnknown), 500u);
  EXPECT_EQ(HttpStatusForCode(C::kDataLoss), 500u);
}

TEST(HttpErrorsTest, ErrorBodyNamesTheGrpcCodeAndEscapesTheMessage) {
  EXPECT_EQ(ErrorBody(absl::StatusCode::kInvalidArgument, "bad \"x\""),
            R"({"error":{"code":"INVALID_ARGUMENT","message":"bad \"x\""}})");
  HttpResponse response = ErrorResponse(absl::PermissionDeniedError("no"));
  EXPECT_EQ(response.status, 403u);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_EQ(response.body, R"({"error":{"code":"PERMISSION_DENIED","message":"no"}})");
}

}  // namespace
}  // namespace buildd::gateway
