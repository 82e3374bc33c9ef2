// Input that could poison the journal or hold a task forever, sent as a
// client or a runner would: NUL bytes in output and in fields, sequence
// numbers past what a double holds, oversized messages, priorities and
// attempts out of bounds, a runner that never accepts, one that declares no
// capability.
#include <grpcpp/grpcpp.h>

#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "buildd/v1/accounts.grpc.pb.h"
#include "buildd/v1/broker.grpc.pb.h"
#include "tests/e2e/mesh_fixture.h"

namespace buildd {
namespace {

namespace pb = ::buildd::v1;
using ::testing::HasSubstr;

Mesh::Options QuickAccept() {
  Mesh::Options options;
  options.broker_args = {"--accept_timeout_ms=1500"};
  return options;
}

class InputTest : public MeshTest {
 protected:
  InputTest() : MeshTest(QuickAccept()) {}

  // Output texts of `events`, one per line.
  static std::string Output(const std::vector<SseItem>& events) {
    std::string out;
    for (const SseItem& item : events) {
      if (item.event == "output") absl::StrAppend(&out, Str(Json(item.data), "text"), "\n");
    }
    return out;
  }

  // Reads a RawRunner's messages until one matches `want`.
  template <typename Want>
  pb::BrokerMessage ReadUntil(RawRunner& raw, Want want) {
    for (int i = 0; i < 100; ++i) {
      pb::BrokerMessage m = raw.Read();
      if (m.msg_case() == pb::BrokerMessage::MSG_NOT_SET || want(m)) return m;
    }
    return pb::BrokerMessage();
  }
};

TEST_F(InputTest, ANulInOutputIsStoredAsAReplacementAndTheBatchKeepsEveryEvent) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "nul", {"--max_tasks=4"});
  auto stream = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                                {{"Authorization", "Bearer " + mesh_.admin_key()}});
  ASSERT_TRUE(stream.ok());
  // Their events share the journal's batches with the one NUL line.
  std::vector<std::string> tasks;
  tasks.push_back(CreateTask(s.api_key, s.workspace_id,
                             "for i in $(seq 1 30); do echo n$i; done; printf 'a\\000b\\n'; echo after"));
  for (int i = 0; i < 3; ++i) {
    tasks.push_back(CreateTask(s.api_key, s.workspace_id, "for i in $(seq 1 30); do echo l$i; done"));
  }
  std::map<std::string, std::vector<SseItem>> events;
  std::set<std::string> done;
  while (done.size() < tasks.size()) {
    auto item = stream->get()->NextEvent(absl::Seconds(30));
    ASSERT_TRUE(item.ok()) << item.status();
    const std::string task = Str(Json(item->data), "taskId");
    events[task].push_back(*item);
    if (item->event == "completed" || item->event == "error" || item->event == "failed") done.insert(task);
  }
  const std::string nul_out = Output(events[tasks[0]]);
  EXPECT_THAT(nul_out, HasSubstr("a\xEF\xBF\xBD" "b\n"));
  EXPECT_THAT(nul_out, HasSubstr("after\n"));
  EXPECT_THAT(nul_out, HasSubstr("n30\n"));
  for (const std::string& task : tasks) {
    EXPECT_EQ(events[task].back().event, "completed") << task;
    EXPECT_EQ(Str(Obj(WaitForTaskState(task, "completed"), "task"), "state"), "completed");
  }
  for (size_t i = 1; i < tasks.size(); ++i) {
    std::string want;
    for (int n = 1; n <= 30; ++n) absl::StrAppend(&want, "l", n, "\n");
    EXPECT_EQ(Output(events[tasks[i]]), want);
  }
}

TEST_F(InputTest, ControlCharactersInFieldsGet400NamingTheField) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  auto create = [&](const std::string& fields) {
    return Call("POST", "/api/tasks", s.api_key,
                absl::StrCat(R"({"workspaceId":")", s.workspace_id, R"(",)", fields, "}"));
  };
  struct Case {
    std::string fields, field;
  };
  for (const Case& c : std::vector<Case>{
           {R"("title":"a\u0000b","provider":"command","command":"true")", "title"},
           {R"("title":"line\nbreak","provider":"command","command":"true")", "title"},
           {R"("prompt":"hi\u0000","provider":"claude")", "prompt"},
           {R"("provider":"command","command":"echo \u0001")", "command"},
           {R"("provider":"command","command":"true","requiredLabels":["a\u0000"])", "requiredLabels"},
           {R"("provider":"command","command":"true","providerOptions":{"x":"\u0000"})", "providerOptions"},
       }) {
    HttpResult r = create(c.fields);
    EXPECT_EQ(r.status, 400) << c.fields << " " << r.body;
    EXPECT_THAT(r.body, HasSubstr(c.field + " must not contain control characters")) << c.fields;
  }
  // Newlines and tabs stay fine in a prompt or a command.
  EXPECT_EQ(create(R"("provider":"command","command":"echo a\n\techo b")").status, 201);
  HttpResult ws = Call("POST", "/api/workspaces", mesh_.admin_key(), R"({"name":"x\u0000"})");
  EXPECT_EQ(ws.status, 400) << ws.body;
  EXPECT_THAT(ws.body, HasSubstr("name must not contain control characters"));
  HttpResult acc = Call("POST", "/api/accounts", mesh_.admin_key(),
                        R"({"type":"service","name":"x\u0000y"})");
  EXPECT_EQ(acc.status, 400) << acc.body;
  EXPECT_THAT(acc.body, HasSubstr("name must not contain control characters"));
}

TEST_F(InputTest, PriorityAndAttemptsAreBounded) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  auto create = [&](const std::string& extra) {
    return Call("POST", "/api/tasks", s.api_key,
                absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                             R"(","provider":"command","command":"true")", extra, "}"));
  };
  for (const char* extra : {R"(,"priority":101)", R"(,"priority":-101)",
                                   R"(,"priority":2147483647)"}) {
    HttpResult r = create(extra);
    EXPECT_EQ(r.status, 400) << extra << r.body;
    EXPECT_THAT(r.body, HasSubstr("priority must be within -100…100"));
  }
  for (const char* extra : {R"(,"maxAttempts":11)", R"(,"maxAttempts":-1)"}) {
    HttpResult r = create(extra);
    EXPECT_EQ(r.status, 400) << extra << r.body;
    EXPECT_THAT(r.body, HasSubstr("maxAttempts must be within 1…10"));
  }
  HttpResult edge = create(R"(,"priority":100,"maxAttempts":10)");
  ASSERT_EQ(edge.status, 201) << edge.body;
  EXPECT_EQ(Num(Json(edge.body), "maxAttempts"), 10);
  HttpResult fallback = create("");
  ASSERT_EQ(fallback.status, 201) << fallback.body;
  EXPECT_EQ(Num(Json(fallback.body), "maxAttempts"), 3);
}

TEST_F(InputTest, LargeSequenceNumbersAreStoredAndOutOfRangeOnesCloseTheStream) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  RawRunner raw(mesh_.broker_addr(), s.api_key);
  ASSERT_TRUE(raw.Hello("counter").has_welcome());
  const std::string task = CreateTask(s.api_key, s.workspace_id, "true");
  const pb::BrokerMessage assign = ReadUntil(raw, [](const auto& m) { return m.has_assign(); });
  ASSERT_TRUE(assign.has_assign());
  const std::string worker = assign.assign().worker().id();
  const int64_t epoch = assign.assign().epoch();
  pb::RunnerMessage accept;
  accept.mutable_accept()->set_worker_id(worker);
  accept.mutable_accept()->set_epoch(epoch);
  raw.Write(accept);
  // 10^15 is printed as 1e+15 by a JSON double.
  const int64_t big = 1'000'000'000'000'000;
  raw.Event(worker, epoch, big, "output", "at a large seq");
  const pb::BrokerMessage ack = ReadUntil(raw, [](const auto& m) { return m.has_ack(); });
  ASSERT_TRUE(ack.has_ack());
  EXPECT_EQ(ack.ack().up_to_seq(), big);
  // int64 travels as a JSON string.
  WaitForJson(
      "/api/workers/" + worker,
      [&](const Struct& w) { return Str(w, "lastSeq") == "1000000000000000"; }, "lastSeq 10^15");
  raw.Event(worker, epoch, int64_t{1} << 53, "output", "beyond");
  const grpc::Status closed = raw.Finish();
  EXPECT_EQ(closed.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << closed.error_message();
  EXPECT_THAT(closed.error_message(), HasSubstr("event.seq"));
}

TEST_F(InputTest, OversizedMessagesAreRefusedPerMethod) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  {
    RawRunner raw(mesh_.broker_addr(), s.api_key);
    ASSERT_TRUE(raw.Hello("big").has_welcome());
    raw.Event("00000000-0000-4000-8000-000000000000", 1, 1, "output", std::string(2 << 20, 'x'));
    const grpc::Status closed = raw.Finish();
    EXPECT_EQ(closed.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << closed.error_message();
    EXPECT_THAT(closed.error_message(), HasSubstr("larger than the 1048576 allowed"));
  }
  // A unary call of 5 MiB, to the broker and to accounts.
  auto broker = pb::BrokerService::NewStub(
      grpc::CreateChannel(mesh_.broker_addr(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + s.api_key);
  pb::CreateTaskRequest request;
  request.mutable_task()->set_workspace_id(s.workspace_id);
  request.mutable_task()->set_provider("command");
  request.mutable_task()->set_command("true");
  (*request.mutable_task()->mutable_provider_options()->mutable_fields())["blob"].set_string_value(
      std::string(5 << 20, 'y'));
  pb::Task task;
  const grpc::Status big = broker->CreateTask(&context, request, &task);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.error_message();
  auto accounts = pb::AccountService::NewStub(
      grpc::CreateChannel(mesh_.accounts_addr(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext accounts_context;
  accounts_context.AddMetadata("authorization", "Bearer " + mesh_.admin_key());
  pb::CreateAccountRequest account;
  account.set_name(std::string(5 << 20, 'z'));
  pb::CreateAccountResponse created;
  EXPECT_EQ(accounts->CreateAccount(&accounts_context, account, &created).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(InputTest, ATaskItsRunnerDoesNotAcceptGoesBackToTheQueue) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  RawRunner raw(mesh_.broker_addr(), s.api_key);
  const std::string task = CreateTask(s.api_key, s.workspace_id, "echo taken");
  // Welcome comes first, though a task waits for the runner.
  const pb::BrokerMessage first = raw.Hello("mute");
  EXPECT_TRUE(first.has_welcome()) << first.DebugString();
  const pb::BrokerMessage assign = ReadUntil(raw, [](const auto& m) { return m.has_assign(); });
  ASSERT_TRUE(assign.has_assign());
  EXPECT_EQ(assign.assign().task().id(), task);
  // No Accept: after the timeout the runner is told to stop, and the task
  // waits for another.
  const pb::BrokerMessage cancel = ReadUntil(raw, [](const auto& m) { return m.has_control(); });
  EXPECT_EQ(cancel.control().action(), pb::Control::cancel);
  WaitForTaskState(task, "pending");
  mesh_.StartRunner(s.api_key, "willing");
  const Struct done = WaitForTaskState(task, "completed");
  EXPECT_EQ(Num(Obj(done, "task"), "attempts"), 2);
  EXPECT_THAT(done.DebugString(), HasSubstr("willing"));
}

TEST_F(InputTest, AHelloWithoutCapabilitiesTakesNoTask) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  RawRunner raw(mesh_.broker_addr(), s.api_key);
  ASSERT_TRUE(raw.Hello("empty", {}, {}).has_welcome());
  HttpResult r = Call("POST", "/api/tasks", s.api_key,
                      absl::StrCat(R"({"workspaceId":")", s.workspace_id,
                                   R"(","provider":"command","command":"echo ok"})"));
  ASSERT_EQ(r.status, 201) << r.body;
  // Pushed in the create call's own transaction, had the runner been able.
  EXPECT_EQ(Str(Json(r.body), "state"), "pending");
  const std::string task = Str(Json(r.body), "id");
  mesh_.StartRunner(s.api_key, "able");
  EXPECT_THAT(WaitForTaskState(task, "completed").DebugString(), HasSubstr("able"));
}

}  // namespace
}  // namespace buildd
