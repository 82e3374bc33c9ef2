// The runner (agent + client) against a fake in-process RunnerService on
// 127.0.0.1:0: what the runner sends, in which order, and how it recovers
// from a broken stream.

#include "services/runner/runner_client.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "services/runner/drain.h"
#include "services/runner/runner_agent.h"
#include "tests/runner/fake_broker.h"

namespace buildd::runner {
namespace {

using fakes::Ack;
using fakes::Assign;
using fakes::BrokerState;
using fakes::Control;
using fakes::Eventually;
using fakes::FakeBroker;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kApiKey[] = "buildd_service_testkey";

class RunnerClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/buildd-runner-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    work_dir_ = pattern;
    int port = 0;
    auto server = StartGrpcServer("127.0.0.1:0", {&broker_}, &port);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    address_ = "127.0.0.1:" + std::to_string(port);
  }

  void StartRunner(int max_tasks = 2, const std::string& workspace = "") {
    AgentOptions options;
    options.name = "test-runner";
    options.labels = {"linux", "fast"};
    options.capabilities = {{"os", "Linux test"}, {"command", "0.1.0"}};
    options.max_tasks = max_tasks;
    options.version = "0.1.0";
    if (!workspace.empty()) options.workspace_ids = {workspace};
    options.work_dir = work_dir_;
    options.cancel_grace = std::chrono::milliseconds(300);
    agent_ = std::make_unique<RunnerAgent>(options);
    ClientOptions client;
    client.server = address_;
    client.api_key = kApiKey;
    client.backoff_base = std::chrono::milliseconds(20);
    client.backoff_cap = std::chrono::milliseconds(200);
    client.close_timeout = std::chrono::milliseconds(2000);
    client_ = std::make_unique<RunnerClient>(client, agent_.get());
    client_->Start();
    ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return !s.hellos.empty(); }));
    ASSERT_TRUE(Eventually([this] { return client_->connected(); }));
  }

  void TearDown() override {
    client_.reset();
    agent_.reset();
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    }
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(work_dir_, ec);
  }

  FakeBroker broker_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::string work_dir_;
  std::unique_ptr<RunnerAgent> agent_;
  std::unique_ptr<RunnerClient> client_;
};

TEST_F(RunnerClientTest, HelloCarriesIdentityCapabilitiesAndBearerKey) {
  StartRunner(2, "ws-1");
  const BrokerState state = broker_.state();
  ASSERT_EQ(state.hellos.size(), 1u);
  const pb::Hello& hello = state.hellos[0];
  EXPECT_EQ(hello.name(), "test-runner");
  EXPECT_THAT(hello.labels(), ElementsAre("linux", "fast"));
  EXPECT_EQ(hello.max_tasks(), 2);
  EXPECT_EQ(hello.version(), "0.1.0");
  EXPECT_EQ(hello.workspace_id(), "ws-1");
  EXPECT_EQ(hello.resume_size(), 0);
  std::vector<std::string> capabilities;
  for (const auto& capability : hello.capabilities()) capabilities.push_back(capability.name());
  EXPECT_THAT(capabilities, ::testing::Contains("command"));
  EXPECT_EQ(state.sessions[0].bearer, kApiKey);
  // The first message of the stream is the Hello.
  EXPECT_TRUE(state.sessions[0].received.at(0).has_hello());
}

TEST_F(RunnerClientTest, SendsHeartbeatsWithTheLoadAtTheWelcomeInterval) {
  StartRunner();
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.heartbeats >= 2; }));
  const BrokerState state = broker_.state();
  for (const auto& message : state.sessions[0].received) {
    if (message.has_heartbeat()) {
      EXPECT_EQ(message.heartbeat().load(), 0);
    }
  }
  broker_.Send(Assign("w1", 1, "sleep 30"));
  EXPECT_TRUE(broker_.WaitFor([](const BrokerState& s) {
    const auto& received = s.sessions[0].received;
    return std::any_of(received.begin(), received.end(), [](const pb::RunnerMessage& m) {
      return m.has_heartbeat() && m.heartbeat().load() == 1;
    });
  }));
}

TEST_F(RunnerClientTest, AssignedCommandIsAcceptedRunAndFinishedWithNumberedEvents) {
  StartRunner();
  const std::string command = "echo one; echo two >&2; echo three; exit 3";
  broker_.Send(Assign("w1", 7, command));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.finished.count("w1") > 0; }));
  const BrokerState state = broker_.state();

  ASSERT_EQ(state.accepts.size(), 1u);
  EXPECT_EQ(state.accepts[0].worker_id(), "w1");
  EXPECT_EQ(state.accepts[0].epoch(), 7);

  const auto& events = state.events.at("w1");
  ASSERT_EQ(events.size(), 4u);
  int64_t expected_seq = 1;
  for (const auto& [seq, event] : events) {
    EXPECT_EQ(seq, expected_seq++);
    EXPECT_EQ(event.worker_id(), "w1");
    EXPECT_EQ(event.epoch(), 7);
    EXPECT_FALSE(event.event().created_at().empty());
  }
  EXPECT_EQ(events.at(1).event().type(), "started");
  EXPECT_EQ(events.at(1).event().text(), command);
  EXPECT_THAT(state.Lines("w1", "stdout"), ElementsAre("one", "three"));
  EXPECT_THAT(state.Lines("w1", "stderr"), ElementsAre("two"));

  const pb::Finished& finished = state.finished.at("w1");
  EXPECT_EQ(finished.epoch(), 7);
  EXPECT_EQ(finished.outcome(), pb::Finished::error);
  EXPECT_EQ(finished.exit_code(), 3);
  EXPECT_EQ(finished.error_message(), "exit code 3");
  EXPECT_EQ(finished.last_seq(), 4);

  // On the wire: Accept before the first event, Finished after the last.
  const auto& received = state.sessions[0].received;
  const auto accept =
      std::find_if(received.begin(), received.end(), [](const auto& m) { return m.has_accept(); });
  const auto first_event =
      std::find_if(received.begin(), received.end(), [](const auto& m) { return m.has_event(); });
  const auto finish = std::find_if(received.begin(), received.end(),
                                   [](const auto& m) { return m.has_finished(); });
  EXPECT_LT(accept - received.begin(), first_event - received.begin());
  for (auto it = finish; it != received.end(); ++it) EXPECT_FALSE(it->has_event());

  // Everything was acknowledged: the runner forgets the worker.
  EXPECT_TRUE(Eventually([this] { return agent_->held_workers() == 0; }));
}

TEST_F(RunnerClientTest, CompletedCommandReportsExitCodeZero) {
  StartRunner();
  broker_.Send(Assign("w1", 1, "true"));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.finished.count("w1") > 0; }));
  const pb::Finished finished = broker_.state().finished.at("w1");
  EXPECT_EQ(finished.outcome(), pb::Finished::completed);
  EXPECT_EQ(finished.exit_code(), 0);
  EXPECT_EQ(finished.last_seq(), 1);  // just "started"
}

TEST_F(RunnerClientTest, UnknownProviderIsRejected) {
  StartRunner();
  broker_.Send(Assign("w1", 1, "", "claude"));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return !s.rejects.empty(); }));
  const BrokerState state = broker_.state();
  EXPECT_EQ(state.rejects[0].worker_id(), "w1");
  EXPECT_EQ(state.rejects[0].epoch(), 1);
  EXPECT_EQ(state.rejects[0].reason(), "provider claude is not available on this runner");
  EXPECT_TRUE(state.accepts.empty());
  EXPECT_EQ(agent_->held_workers(), 0u);
}

TEST_F(RunnerClientTest, AssignBeyondMaxTasksIsRejected) {
  StartRunner(/*max_tasks=*/1);
  broker_.Send(Assign("w1", 1, "sleep 30"));
  broker_.Send(Assign("w2", 1, "sleep 30"));
  ASSERT_TRUE(broker_.WaitFor(
      [](const BrokerState& s) { return s.accepts.size() == 1 && s.rejects.size() == 1; }));
  const BrokerState state = broker_.state();
  EXPECT_EQ(state.accepts[0].worker_id(), "w1");
  EXPECT_EQ(state.rejects[0].worker_id(), "w2");
  EXPECT_THAT(state.rejects[0].reason(), HasSubstr("capacity"));
}

TEST_F(RunnerClientTest, AssignOfAnotherWorkspaceIsRejected) {
  StartRunner(2, "ws-other");
  broker_.Send(Assign("w1", 1, "true"));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return !s.rejects.empty(); }));
  EXPECT_THAT(broker_.state().rejects[0].reason(), HasSubstr("ws-other"));
}

TEST_F(RunnerClientTest, ReconnectResumesAndReplaysExactlyTheUnackedEvents) {
  broker_.set_auto_ack(false);
  StartRunner();
  broker_.Send(Assign("w1", 3, "echo 1; echo 2; echo 3; echo 4"));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.finished.count("w1") > 0; }));
  const int64_t last_seq = broker_.state().finished.at("w1").last_seq();
  ASSERT_EQ(last_seq, 5);  // started + 4 lines

  // Only the first two events become durable before the broker goes away.
  broker_.Send(Ack("w1", 2));
  broker_.BreakStream();
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) {
    return s.sessions.size() >= 2 && !s.sessions[1].received.empty() &&
           std::any_of(s.sessions[1].received.begin(), s.sessions[1].received.end(),
                       [](const auto& m) { return m.has_finished(); });
  }));
  const BrokerState state = broker_.state();
  ASSERT_EQ(state.hellos.size(), 2u);
  ASSERT_EQ(state.hellos[1].resume_size(), 1);
  EXPECT_EQ(state.hellos[1].resume(0).worker_id(), "w1");
  EXPECT_EQ(state.hellos[1].resume(0).epoch(), 3);
  EXPECT_EQ(state.hellos[1].resume(0).last_acked_seq(), 2);

  std::vector<int64_t> replayed;
  for (const auto& message : state.sessions[1].received) {
    if (message.has_event()) replayed.push_back(message.event().seq());
    if (message.has_finished()) replayed.push_back(-message.finished().last_seq());
  }
  // Events 3..5 in order, then the Finished (shown as -last_seq).
  EXPECT_THAT(replayed, ElementsAre(3, 4, 5, -5));
  EXPECT_EQ(state.EventCount("w1"), 5u);
  EXPECT_THAT(state.Lines("w1", "stdout"), ElementsAre("1", "2", "3", "4"));

  broker_.Send(Ack("w1", last_seq + 1));
  EXPECT_TRUE(Eventually([this] { return agent_->held_workers() == 0; }));
}

TEST_F(RunnerClientTest, TaskKeepsRunningWhileDisconnectedAndItsOutputIsDeliveredLater) {
  StartRunner();
  broker_.Send(Assign("w1", 1, "echo before; while [ ! -f go ]; do sleep 0.02; done; echo after"));
  ASSERT_TRUE(
      broker_.WaitFor([](const BrokerState& s) { return s.Lines("w1", "stdout").size() == 1; }));

  broker_.set_refuse(true);
  broker_.BreakStream();
  ASSERT_TRUE(Eventually([this] { return !client_->connected(); }));
  // The task finishes while no broker listens.
  std::ofstream(work_dir_ + "/tasks/task-w1/go").put('x');
  ASSERT_TRUE(Eventually([this] { return agent_->running_tasks() == 0; }));
  EXPECT_EQ(agent_->held_workers(), 1u);

  broker_.set_refuse(false);
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.finished.count("w1") > 0; }));
  const BrokerState state = broker_.state();
  EXPECT_THAT(state.Lines("w1", "stdout"), ElementsAre("before", "after"));
  EXPECT_EQ(state.finished.at("w1").outcome(), pb::Finished::completed);
  EXPECT_EQ(state.finished.at("w1").last_seq(), static_cast<int64_t>(state.EventCount("w1")));
  int64_t expected = 1;
  for (const auto& [seq, event] : state.events.at("w1")) EXPECT_EQ(seq, expected++);
  EXPECT_TRUE(Eventually([this] { return agent_->held_workers() == 0; }));
}

TEST_F(RunnerClientTest, PauseStopsOutputResumeRestartsItCancelEndsTheTask) {
  StartRunner();
  broker_.Send(Assign("w1", 2, "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"));
  ASSERT_TRUE(
      broker_.WaitFor([](const BrokerState& s) { return s.Lines("w1", "stdout").size() >= 3; }));

  // A control of another epoch is ignored: were it obeyed, the task would end.
  broker_.Send(Control("w1", 1, pb::Control::cancel));
  broker_.Send(Control("w1", 2, pb::Control::pause));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return !s.Statuses("w1").empty(); }));
  EXPECT_THAT(broker_.state().Statuses("w1"), ElementsAre("paused"));

  // A line already in the pipe may still arrive; then the output stands still.
  broker_.WaitFor([](const BrokerState&) { return false; }, absl::Milliseconds(150));
  const size_t frozen = broker_.state().Lines("w1", "stdout").size();
  broker_.WaitFor([](const BrokerState&) { return false; }, absl::Milliseconds(400));
  EXPECT_EQ(broker_.state().Lines("w1", "stdout").size(), frozen);

  broker_.Send(Control("w1", 2, pb::Control::resume));
  ASSERT_TRUE(broker_.WaitFor(
      [frozen](const BrokerState& s) { return s.Lines("w1", "stdout").size() >= frozen + 3; }));

  broker_.Send(Control("w1", 2, pb::Control::cancel));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.finished.count("w1") > 0; }));
  const BrokerState state = broker_.state();
  EXPECT_THAT(state.Statuses("w1"), ElementsAre("paused", "running", "canceled"));
  EXPECT_EQ(state.finished.at("w1").outcome(), pb::Finished::canceled);
  EXPECT_EQ(state.finished.at("w1").exit_code(), 128 + SIGTERM);
  EXPECT_EQ(state.events.at("w1").rbegin()->second.event().status(), "canceled");
}

TEST_F(RunnerClientTest, StaleWorkersNamedInWelcomeAreKilledAndDropped) {
  broker_.set_auto_ack(false);
  StartRunner();
  broker_.Send(Assign("w1", 1, "echo started; sleep 30"));
  ASSERT_TRUE(
      broker_.WaitFor([](const BrokerState& s) { return s.Lines("w1", "stdout").size() == 1; }));

  broker_.set_stale_in_next_welcome({"w1"});
  broker_.BreakStream();
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.hellos.size() == 2; }));
  EXPECT_EQ(broker_.state().hellos[1].resume_size(), 1);
  EXPECT_TRUE(Eventually([this] { return agent_->held_workers() == 0; }));
  EXPECT_EQ(agent_->running_tasks(), 0);
  // Nothing of the stale worker is replayed and it never reports a Finished.
  broker_.WaitFor([](const BrokerState&) { return false; }, absl::Milliseconds(200));
  const BrokerState state = broker_.state();
  EXPECT_EQ(state.finished.count("w1"), 0u);
  for (const auto& message : state.sessions[1].received) EXPECT_FALSE(message.has_event());
}

TEST_F(RunnerClientTest, DrainRejectsNewWorkWaitsForRunningTasksAndClosesTheStream) {
  StartRunner();
  broker_.Send(Assign("w1", 1, "while [ ! -f go ]; do sleep 0.02; done; echo finished"));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.EventCount("w1") >= 1; }));

  DrainOptions options;
  options.drain_timeout = std::chrono::milliseconds(10000);
  options.cancel_grace = std::chrono::milliseconds(300);
  options.flush_timeout = std::chrono::milliseconds(5000);
  auto drained =
      std::async(std::launch::async, [&] { return DrainRunner(*agent_, *client_, options); });
  ASSERT_TRUE(Eventually([this] { return agent_->draining(); }));
  broker_.Send(Assign("w2", 1, "true"));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return !s.rejects.empty(); }));
  EXPECT_EQ(broker_.state().rejects[0].reason(), "draining");

  std::ofstream(work_dir_ + "/tasks/task-w1/go").put('x');
  ASSERT_EQ(drained.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(drained.get());
  const BrokerState state = broker_.state();
  EXPECT_EQ(state.finished.at("w1").outcome(), pb::Finished::completed);
  EXPECT_THAT(state.Lines("w1", "stdout"), ElementsAre("finished"));
  // The runner half-closed and the fake ended the call: no reconnect.
  EXPECT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.sessions[0].ended; }));
  EXPECT_EQ(broker_.state().sessions.size(), 1u);
  EXPECT_FALSE(client_->connected());
}

TEST_F(RunnerClientTest, DrainCancelsTasksThatOutliveTheDrainTimeout) {
  StartRunner();
  broker_.Send(Assign("w1", 1, "sleep 30"));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return s.EventCount("w1") >= 1; }));
  DrainOptions options;
  options.drain_timeout = std::chrono::milliseconds(200);
  options.cancel_grace = std::chrono::milliseconds(300);
  options.flush_timeout = std::chrono::milliseconds(5000);
  EXPECT_TRUE(DrainRunner(*agent_, *client_, options));
  const BrokerState state = broker_.state();
  EXPECT_EQ(state.finished.at("w1").outcome(), pb::Finished::canceled);
  EXPECT_THAT(state.Statuses("w1"), ElementsAre("canceled"));
}

TEST_F(RunnerClientTest, BrokerDrainMessageStopsTakingWorkAndNotifies) {
  StartRunner();
  std::atomic<bool> requested{false};
  agent_->SetDrainRequestedCallback([&] { requested.store(true); });
  pb::BrokerMessage drain;
  drain.mutable_drain();
  broker_.Send(drain);
  ASSERT_TRUE(Eventually([&] { return requested.load(); }));
  broker_.Send(Assign("w1", 1, "true"));
  ASSERT_TRUE(broker_.WaitFor([](const BrokerState& s) { return !s.rejects.empty(); }));
  EXPECT_EQ(broker_.state().rejects[0].reason(), "draining");
}

}  // namespace
}  // namespace buildd::runner
