#include "services/broker/runner_reports.h"

#include <limits>
#include <set>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/text.h"

namespace buildd::broker {

bool RunnerMaySend(const pb::Event& e) {
  static const std::set<std::string> kTypes = {
      "started", "output", "status", "error", "git", "plan", "question", "input", "session",
      "assistant_message", "tool_use", "tool_result", "result", "warning", "progress"};
  if (kTypes.count(e.type()) == 0) return false;
  if (e.type() == "status") {
    return e.status() == "running" || e.status() == "paused" || e.status() == "waiting_input" ||
           e.status() == "canceled";
  }
  return true;
}

pb::Event RecordedEvent(const pb::RunnerEvent& report, const std::string& task_id,
                        const std::string& workspace_id) {
  pb::Event e = report.event();
  e.set_id(0);
  e.set_task_id(task_id);
  e.set_worker_id(report.worker_id());
  e.set_workspace_id(workspace_id);
  e.set_created_at(NowRfc3339());
  e.clear_runner_name();
  return e;
}

std::string WorkerStateAfter(const std::string& state, const pb::Event& e) {
  if (e.type() == "started") return "running";
  if (e.type() == "status" &&
      (e.status() == "running" || e.status() == "paused" || e.status() == "waiting_input")) {
    return e.status();
  }
  return state;
}

int64_t FinishedAckSeq(const pb::Finished& finished) {
  // No runner counts that far; one that says it did must not make the sum
  // overflow.
  if (finished.last_seq() == std::numeric_limits<int64_t>::max()) return finished.last_seq();
  return finished.last_seq() + 1;
}

std::string EventsJson(const std::vector<pb::Event>& events) {
  // Written here rather than by protobuf's JSON printer, which costs more
  // than the rest of an event's way to the database: the same mapping
  // (lowerCamelCase names, defaults left out, int64 as a string).
  std::string out = "[";
  for (const pb::Event& e : events) {
    if (out.size() > 1) out += ',';
    out += '{';
    bool first = true;
    const auto field = [&](const char* name) {
      if (!first) out += ',';
      first = false;
      absl::StrAppend(&out, "\"", name, "\":");
    };
    const auto text = [&](const char* name, const std::string& value) {
      if (value.empty()) return;
      field(name);
      AppendJsonString(&out, value);
    };
    if (e.id() != 0) {
      field("id");
      absl::StrAppend(&out, "\"", e.id(), "\"");
    }
    text("taskId", e.task_id());
    text("workerId", e.worker_id());
    text("workspaceId", e.workspace_id());
    text("type", e.type());
    text("createdAt", e.created_at());
    text("status", e.status());
    text("stream", e.stream());
    text("text", e.text());
    if (e.exit_code() != 0) {
      field("exitCode");
      absl::StrAppend(&out, e.exit_code());
    }
    text("runnerName", e.runner_name());
    if (e.has_data()) {
      std::string data;
      (void)google::protobuf::util::MessageToJsonString(e.data(), &data);
      field("data");
      out += data;
    }
    out += '}';
  }
  out += ']';
  return out;
}

}  // namespace buildd::broker
