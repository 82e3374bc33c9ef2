// The runner's parsers of coding agents' machine output: bytes as an agent
// writes them to stdout, split into lines by the runner's LineSplitter and
// fed to a Claude Code (stream-json) and a Codex (exec --json) parser.
//
// Checked: the splitter loses and adds nothing and cuts only between
// characters; a line that is not a JSON object comes out as itself, as
// output; every event is of a documented type, one the broker accepts from
// a runner, and readable on the broker's side of the stream (UTF-8); the
// summary only says error for a finished run.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "services/broker/runner_reports.h"
#include "services/runner/agent_stream.h"
#include "services/runner/process_group.h"
#include "tests/fuzz/fuzz_check.h"

namespace buildd::runner {
namespace {

using buildd::fuzz::IsUtf8;
using buildd::fuzz::Printable;

// Short chunks: the cut on a character boundary is what is checked.
void CheckSplitter(const std::string& bytes) {
  LineSplitter splitter(16);
  size_t total = 0;
  const LineSplitter::Emit emit = [&](std::string line) {
    BUILDD_FUZZ_CHECK(line.find('\n') == std::string::npos, Printable(line));
    BUILDD_FUZZ_CHECK(IsUtf8(line), "not UTF-8: ", Printable(line));
    total += line.size();
  };
  // In two pieces, as reads of a pipe come.
  const size_t half = bytes.size() / 2;
  splitter.Feed(std::string_view(bytes).substr(0, half), emit);
  splitter.Feed(std::string_view(bytes).substr(half), emit);
  splitter.Flush(emit);
  if (IsUtf8(bytes)) {
    const size_t newlines = std::count(bytes.begin(), bytes.end(), '\n');
    BUILDD_FUZZ_CHECK(total + newlines == bytes.size(), "lines of ", total, " bytes and ", newlines,
                      " newlines from ", bytes.size(), " bytes");
  }
}

void CheckEvents(const std::string& line, const std::vector<pb::Event>& events) {
  static const std::set<std::string> kTypes = {
      "session", "assistant_message", "tool_use", "tool_result", "result", "warning", "output"};
  if (!line.empty() && line[0] != '{') {
    BUILDD_FUZZ_CHECK(events.size() == 1 && events[0].type() == "output" &&
                          events[0].text() == line && events[0].stream() == "stdout",
                      "the line ", Printable(line), " was not kept as output");
  }
  for (const pb::Event& e : events) {
    BUILDD_FUZZ_CHECK(kTypes.count(e.type()) == 1, "type ", Printable(e.type()));
    BUILDD_FUZZ_CHECK(broker::RunnerMaySend(e), "the broker refuses ", e.DebugString());
    // (What the broker then stores, runner_message_fuzzer checks.)
    pb::Event wire;
    BUILDD_FUZZ_CHECK(wire.ParseFromString(e.SerializeAsString()), "the broker cannot read ",
                      e.DebugString());
  }
}

}  // namespace
}  // namespace buildd::runner

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace runner = buildd::runner;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  runner::CheckSplitter(bytes);

  std::unique_ptr<runner::AgentStreamParser> parsers[] = {
      std::make_unique<runner::ClaudeStreamParser>(),
      std::make_unique<runner::CodexStreamParser>()};
  runner::LineSplitter splitter;
  const runner::LineSplitter::Emit emit = [&](std::string line) {
    for (auto& parser : parsers) runner::CheckEvents(line, parser->Parse(line));
  };
  splitter.Feed(bytes, emit);
  splitter.Flush(emit);
  for (auto& parser : parsers) {
    const runner::AgentSummary& summary = parser->summary();
    BUILDD_FUZZ_CHECK(!summary.is_error || summary.finished, "an error before the end");
  }
  return 0;
}
