// The broker's handling of what a runner sends, short of the database: a
// RunnerMessage in the wire format (as it arrives on RunnerService.Connect),
// its NULs replaced as the stream does, through the rules of
// services/broker/runner_reports.h.
//
// Checked: a runner never reports one of the broker's own events; the
// recorded event is the runner's with the broker's ids, time and no runner
// name; a worker only moves to the states a runner may move it to; the JSON
// the journal stores an event as holds no NUL and reads back as that event
// (a body that does not read back makes every later read of the events
// fail); a Finished's ack covers its last event.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "buildd/v1/runner.pb.h"
#include "common/text.h"
#include "services/broker/runner_reports.h"
#include "tests/fuzz/fuzz_check.h"

namespace buildd::broker {
namespace {

using buildd::fuzz::DeterministicBytes;
using buildd::fuzz::Printable;

constexpr char kTaskId[] = "0b6f2a4c-6a58-4f43-9a39-4c1f3d2f9e11";
constexpr char kWorkspaceId[] = "7d3e8c1a-2b4f-4e6d-8a9b-1c2d3e4f5a6b";

// Whether JSON text `json` escapes a NUL (\u0000) in one of its strings.
bool EscapesNul(const std::string& json) {
  for (size_t i = 0; i + 1 < json.size(); ++i) {
    if (json[i] != '\\') continue;
    if (json.compare(i + 1, 5, "u0000") == 0) return true;
    ++i;  // the escaped character
  }
  return false;
}

void CheckEvent(const pb::RunnerEvent& report) {
  static const std::set<std::string> kBrokerOwn = {"created",  "assigned",  "rejected", "requeued",
                                                   "canceled", "completed", "failed",   "budget"};
  if (!RunnerMaySend(report.event())) return;
  BUILDD_FUZZ_CHECK(kBrokerOwn.count(report.event().type()) == 0, Printable(report.event().type()));

  const pb::Event recorded = RecordedEvent(report, kTaskId, kWorkspaceId);
  BUILDD_FUZZ_CHECK(recorded.id() == 0 && recorded.task_id() == kTaskId &&
                        recorded.workspace_id() == kWorkspaceId &&
                        recorded.worker_id() == report.worker_id() &&
                        recorded.runner_name().empty() && !recorded.created_at().empty(),
                    recorded.DebugString());
  pb::Event sent = report.event(), kept = recorded;
  for (pb::Event* e : {&sent, &kept}) {
    e->clear_id();
    e->clear_task_id();
    e->clear_worker_id();
    e->clear_workspace_id();
    e->clear_created_at();
    e->clear_runner_name();
  }
  BUILDD_FUZZ_CHECK(DeterministicBytes(sent) == DeterministicBytes(kept), recorded.DebugString());

  for (const std::string state : {"idle", "starting", "running", "paused", "waiting_input"}) {
    const std::string next = WorkerStateAfter(state, recorded);
    BUILDD_FUZZ_CHECK(
        next == state || next == "running" || next == "paused" || next == "waiting_input", state,
        " -> ", Printable(next));
  }

  // Two events, as a batch holds them; each is read back as ReadEvents does.
  const std::string json = EventsJson({recorded, recorded});
  // PostgreSQL's jsonb takes no NUL.
  BUILDD_FUZZ_CHECK(!EscapesNul(json), "a NUL in ", Printable(json));
  google::protobuf::ListValue rows;
  auto status = google::protobuf::util::JsonStringToMessage(json, &rows);
  BUILDD_FUZZ_CHECK(status.ok() && rows.values_size() == 2, "the events' JSON ", Printable(json),
                    " is not an array of two: ", status.message().ToString());
  pb::Event expected = recorded;
  buildd::fuzz::NormalizeForJson(expected.mutable_data());
  if (!recorded.has_data()) expected.clear_data();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  for (const google::protobuf::Value& row : rows.values()) {
    std::string body;
    BUILDD_FUZZ_CHECK(google::protobuf::util::MessageToJsonString(row, &body).ok(), json);
    pb::Event read;
    status = google::protobuf::util::JsonStringToMessage(body, &read, options);
    BUILDD_FUZZ_CHECK(status.ok(), "the stored body ", Printable(body),
                      " does not read back: ", status.message().ToString());
    BUILDD_FUZZ_CHECK(DeterministicBytes(read) == DeterministicBytes(expected), "the stored body ",
                      Printable(body), " reads back as ", read.DebugString(), "instead of ",
                      expected.DebugString());
  }
}

void CheckFinished(const pb::Finished& finished) {
  const int64_t ack = FinishedAckSeq(finished);
  BUILDD_FUZZ_CHECK(ack > finished.last_seq() ||
                        (ack == finished.last_seq() && ack == std::numeric_limits<int64_t>::max()),
                    "last_seq ", finished.last_seq(), " acked as ", ack);
}

}  // namespace
}  // namespace buildd::broker

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace broker = buildd::broker;
  buildd::v1::RunnerMessage message;
  if (!message.ParseFromArray(data, static_cast<int>(size))) return 0;
  // Only a sender of garbage puts unknown fields into a Struct, and the JSON
  // mapping drops what holds them: they are not what is checked here.
  message.DiscardUnknownFields();
  // What the runner stream does before the dispatcher sees a message.
  buildd::ReplaceNul(&message);
  switch (message.msg_case()) {
    case buildd::v1::RunnerMessage::kEvent:
      broker::CheckEvent(message.event());
      break;
    case buildd::v1::RunnerMessage::kFinished:
      broker::CheckFinished(message.finished());
      break;
    default:
      break;
  }
  return 0;
}
