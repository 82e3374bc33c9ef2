#include "services/broker/runner_reports.h"

#include <limits>
#include <set>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/ids.h"

namespace buildd::broker {

bool RunnerMaySend(const pb::Event& e) {
  static const std::set<std::string> kTypes = {
      "started", "output", "status", "error", "git", "plan", "question", "input", "session",
      "assistant_message", "tool_use", "tool_result", "result", "warning"};
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
  std::string out = "[";
  google::protobuf::util::JsonPrintOptions options;
  for (size_t i = 0; i < events.size(); ++i) {
    std::string json;
    google::protobuf::util::MessageToJsonString(events[i], &json, options);
    absl::StrAppend(&out, i == 0 ? "" : ",", json);
  }
  out += "]";
  return out;
}

}  // namespace buildd::broker
