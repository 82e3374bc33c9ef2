// The gateway's JSON codec with request bodies, parsed as each message a
// REST route reads a body into. A body either parses or is refused with
// INVALID_ARGUMENT, whose error response is itself JSON; what parses prints
// back (ToJson) to JSON that parses to the same message. The syntax scanner
// behind DescribeJsonError runs on every body.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "buildd/v1/accounts.pb.h"
#include "buildd/v1/broker.pb.h"
#include "gateway/http_errors.h"
#include "gateway/json_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace buildd::gateway {
namespace {

namespace pb = ::buildd::v1;
using buildd::fuzz::DeterministicBytes;
using buildd::fuzz::Printable;

void CheckErrorBody(const absl::Status& status) {
  const HttpResponse response = ErrorResponse(status);
  google::protobuf::Struct parsed;
  const auto parse = google::protobuf::util::JsonStringToMessage(response.body, &parsed);
  BUILDD_FUZZ_CHECK(parse.ok(), "the error body is not JSON: ", Printable(response.body), " (",
                    parse.message().ToString(), ")");
}

// Adds the message of a refusal to `refusals`, whose error bodies are
// checked once each (most bodies are refused alike by every message).
template <typename T>
void CheckBody(const std::string& body, std::set<std::string>* refusals, bool allow_empty = false) {
  T message;
  const absl::Status status = ParseJsonBody(body, &message, allow_empty);
  if (!status.ok()) {
    BUILDD_FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
    BUILDD_FUZZ_CHECK(!status.message().empty(), "an error without a message");
    refusals->emplace(status.message());
    return;
  }
  const std::string json = ToJson(message);
  T again;
  const absl::Status reparsed = ParseJsonBody(json, &again);
  BUILDD_FUZZ_CHECK(reparsed.ok(), T::descriptor()->name(), " printed as ", Printable(json),
                    " does not parse back: ", reparsed.ToString());
  BUILDD_FUZZ_CHECK(DeterministicBytes(message) == DeterministicBytes(again),
                    T::descriptor()->name(), " changed through ", Printable(json));
}

}  // namespace
}  // namespace buildd::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = buildd::gateway;
  namespace pb = ::buildd::v1;
  const std::string body(reinterpret_cast<const char*>(data), size);

  // The bodies of POST /api/accounts, /api/accounts/:id/workspaces,
  // /api/accounts/:id/keys, /api/workspaces, /api/tasks, /api/session, and
  // of /revert and /api/workers/:id/input (free-form objects).
  std::set<std::string> refusals;
  gw::CheckBody<pb::CreateAccountRequest>(body, &refusals);
  gw::CheckBody<pb::GrantWorkspaceRequest>(body, &refusals);
  gw::CheckBody<pb::RotateKeyRequest>(body, &refusals, /*allow_empty=*/true);
  gw::CheckBody<pb::CreateWorkspaceRequest>(body, &refusals);
  gw::CheckBody<pb::Task>(body, &refusals);
  gw::CheckBody<pb::AuthenticateRequest>(body, &refusals);
  gw::CheckBody<google::protobuf::Struct>(body, &refusals);

  // With no message from json_util, the description comes from the scanner
  // (ParseJsonBody refuses a body that is not UTF-8 before it gets there).
  const std::string described = gw::DescribeJsonError(body, "", pb::Task::descriptor());
  BUILDD_FUZZ_CHECK(!described.empty(), "an empty description");
  if (buildd::fuzz::IsUtf8(body)) {
    refusals.insert(described);
  }
  for (const std::string& refusal : refusals) {
    gw::CheckErrorBody(absl::InvalidArgumentError(refusal));
  }
  return 0;
}
