// The SSE encoder (FormatSseEvent) with events as the broker streams them
// (the input is an Event in the protobuf wire format). The frame is read
// back the way an EventSource reads a stream (the WHATWG event-stream
// interpretation): it must be exactly one event, with the event's id, its
// type (or "message"), and as data one line of JSON that parses to the event
// again. A line break in any field would let a sender inject fields or
// events of its own.

#include <google/protobuf/util/json_util.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "buildd/v1/common.pb.h"
#include "gateway/json_codec.h"
#include "gateway/sse.h"
#include "tests/fuzz/fuzz_check.h"

namespace buildd::gateway {
namespace {

struct SseMessage {
  std::string id;
  std::string type;
  std::string data;
};

// Splits `stream` into dispatched messages. `rest` gets what follows the
// last blank line (an event not yet complete).
std::vector<SseMessage> ReadEventStream(const std::string& stream, std::string* rest) {
  std::vector<SseMessage> out;
  SseMessage pending;
  bool has_data = false;
  size_t line_start = 0, dispatched_at = 0;
  size_t i = 0;
  while (i < stream.size()) {
    if (stream[i] != '\r' && stream[i] != '\n') {
      ++i;
      continue;
    }
    const std::string line = stream.substr(line_start, i - line_start);
    i += (stream[i] == '\r' && i + 1 < stream.size() && stream[i + 1] == '\n') ? 2 : 1;
    line_start = i;
    if (line.empty()) {
      if (has_data) {
        if (!pending.data.empty() && pending.data.back() == '\n') pending.data.pop_back();
        if (pending.type.empty()) pending.type = "message";
        out.push_back(pending);
      }
      pending.type.clear();
      pending.data.clear();
      has_data = false;
      dispatched_at = i;
      continue;
    }
    if (line[0] == ':') continue;  // a comment
    const size_t colon = line.find(':');
    const std::string field = line.substr(0, colon);
    std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    if (field == "id") {
      if (value.find('\0') == std::string::npos) pending.id = value;
    } else if (field == "event") {
      pending.type = value;
    } else if (field == "data") {
      pending.data += value + "\n";
      has_data = true;
    }
  }
  *rest = stream.substr(dispatched_at);
  return out;
}

}  // namespace
}  // namespace buildd::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gw = buildd::gateway;
  namespace pb = ::buildd::v1;
  using buildd::fuzz::Printable;
  pb::Event event;
  if (!event.ParseFromArray(data, static_cast<int>(size))) return 0;
  // Only a sender of garbage puts unknown fields into a Struct, and the JSON
  // mapping drops what holds them: they are not what is checked here.
  event.DiscardUnknownFields();

  const std::string frame = gw::FormatSseEvent(event);
  std::string rest;
  const std::vector<gw::SseMessage> messages = gw::ReadEventStream(frame, &rest);
  BUILDD_FUZZ_CHECK(messages.size() == 1 && rest.empty(), "the frame ", Printable(frame),
                    " reads as ", messages.size(), " events and ", Printable(rest));
  const gw::SseMessage& message = messages[0];
  BUILDD_FUZZ_CHECK(message.id == std::to_string(event.id()), Printable(frame));

  std::string type;
  for (char c : event.type()) {
    if (c != '\r' && c != '\n') type.push_back(c);
  }
  if (type.empty()) type = "message";
  BUILDD_FUZZ_CHECK(message.type == type, "type ", Printable(event.type()), " reads as ",
                    Printable(message.type));

  BUILDD_FUZZ_CHECK(message.data == gw::ToJson(event), "data ", Printable(message.data));
  pb::Event again;
  const auto parsed = google::protobuf::util::JsonStringToMessage(message.data, &again);
  BUILDD_FUZZ_CHECK(parsed.ok(), "data ", Printable(message.data),
                    " does not parse: ", parsed.message().ToString());
  pb::Event expected = event;
  buildd::fuzz::NormalizeForJson(expected.mutable_data());
  if (!event.has_data()) expected.clear_data();
  BUILDD_FUZZ_CHECK(
      buildd::fuzz::DeterministicBytes(again) == buildd::fuzz::DeterministicBytes(expected),
      "data ", Printable(message.data), " is not the event ", event.DebugString());
  return 0;
}
