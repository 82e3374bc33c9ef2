#include "services/broker/conversions.h"

#include <google/protobuf/util/json_util.h>

#include "common/ids.h"

namespace buildd::broker {

pb::Task TaskToProto(const TaskRecord& t) {
  pb::Task task;
  if (t.spec != nullptr) task = *t.spec;
  // Never returned (and never in a spec: see task_credentials.h).
  task.clear_credentials();
  ApplyTaskState(t, &task);
  return task;
}

void ApplyTaskState(const TaskRecord& t, pb::Task* out) {
  pb::Task& task = *out;
  task.set_id(t.id);
  task.set_workspace_id(t.workspace_id);
  pb::Task::RunnerPreference pref = pb::Task::any;
  pb::Task::RunnerPreference_Parse(t.runner_preference, &pref);
  task.set_runner_preference(pref);
  task.clear_required_labels();
  for (const auto& l : t.required_labels) task.add_required_labels(l);
  task.set_provider(t.provider);
  task.set_priority(t.priority);
  pb::Task::State state = pb::Task::state_unspecified;
  pb::Task::State_Parse(t.state, &state);
  task.set_state(state);
  task.set_attempts(t.attempts);
  task.set_max_attempts(t.max_attempts);
  task.set_worker_id(t.worker_id);
  task.set_exit_code(t.exit_code);
  task.set_error(t.error);
  task.set_created_by(t.created_by);
  task.set_created_at(t.created_at);
  task.set_updated_at(t.updated_at);
  task.clear_artifacts();
  if (!t.artifacts_json.empty()) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    (void)google::protobuf::util::JsonStringToMessage(t.artifacts_json, task.mutable_artifacts(),
                                                      options);
  }
}

pb::Worker WorkerToProto(const WorkerRecord& w) {
  pb::Worker worker;
  worker.set_id(w.id);
  worker.set_task_id(w.task_id);
  worker.set_workspace_id(w.workspace_id);
  worker.set_account_id(w.account_id);
  worker.set_runner_id(w.runner_id);
  worker.set_runner_name(w.runner_name);
  pb::Worker::State state = pb::Worker::state_unspecified;
  pb::Worker::State_Parse(w.state, &state);
  worker.set_state(state);
  worker.set_epoch(w.epoch);
  worker.set_last_seq(w.last_seq);
  worker.set_exit_code(w.exit_code);
  worker.set_error_message(w.error);
  worker.set_created_at(w.created_at);
  worker.set_updated_at(w.updated_at);
  return worker;
}

pb::Workspace WorkspaceToProto(const WorkspaceRecord& w) {
  pb::Workspace ws;
  ws.set_id(w.id);
  ws.set_name(w.name);
  ws.set_repo_url(w.repo_url);
  ws.set_default_branch(w.default_branch);
  ws.set_created_at(w.created_at);
  ws.set_network(w.network);
  return ws;
}

pb::BrokerMessage AssignOf(const TaskRecord& task, const WorkerRecord& worker,
                           const std::map<std::string, std::string>& credentials,
                           const WorkspaceRecord* workspace) {
  pb::BrokerMessage message;
  pb::Assign* assign = message.mutable_assign();
  *assign->mutable_worker() = WorkerToProto(worker);
  *assign->mutable_task() = TaskToProto(task);
  assign->set_epoch(worker.epoch);
  assign->mutable_credentials()->mutable_env()->insert(credentials.begin(), credentials.end());
  if (workspace != nullptr) *assign->mutable_workspace() = WorkspaceToProto(*workspace);
  return message;
}

pb::Event EventOf(const std::string& type, const std::string& task_id,
                  const std::string& worker_id, const std::string& workspace_id) {
  pb::Event e;
  e.set_type(type);
  e.set_task_id(task_id);
  e.set_worker_id(worker_id);
  e.set_workspace_id(workspace_id);
  e.set_created_at(NowRfc3339());
  return e;
}

pb::BrokerMessage AckOf(const std::string& worker_id, int64_t up_to_seq) {
  pb::BrokerMessage ack;
  ack.mutable_ack()->set_worker_id(worker_id);
  ack.mutable_ack()->set_up_to_seq(up_to_seq);
  return ack;
}

pb::BrokerMessage CancelOf(const std::string& worker_id, int64_t epoch) {
  pb::BrokerMessage cancel;
  cancel.mutable_control()->set_worker_id(worker_id);
  cancel.mutable_control()->set_epoch(epoch);
  cancel.mutable_control()->set_action(pb::Control::cancel);
  return cancel;
}

std::string RunnersJson(const pb::ListRunnersResponse& runners) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(runners, &json);
  return json;
}

void AppendRunners(const std::string& json, std::vector<pb::RunnerInfo>* out) {
  pb::ListRunnersResponse runners;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // told by a newer replica
  if (!google::protobuf::util::JsonStringToMessage(json, &runners, options).ok()) return;
  for (pb::RunnerInfo& r : *runners.mutable_runners()) out->push_back(std::move(r));
}

}  // namespace buildd::broker
