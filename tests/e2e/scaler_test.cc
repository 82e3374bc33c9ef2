// The broker as KEDA's external scaler: a runner Deployment's ScaledObject
// gets the queue it could serve, pushed as it changes, and the same queue in
// /metrics for a Prometheus trigger.
#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "externalscaler/externalscaler.grpc.pb.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/process.h"

namespace buildd {
namespace {

namespace ks = ::externalscaler;
using ::testing::HasSubstr;

class ScalerTest : public MeshTest {
 protected:
  static Mesh::Options WithScaler(int port) {
    Mesh::Options options;
    options.broker_args = {absl::StrCat("--scaler_listen=127.0.0.1:", port)};
    return options;
  }
  ScalerTest() : ScalerTest(testing::FreePort()) {}
  explicit ScalerTest(int port)
      : MeshTest(WithScaler(port)),
        scaler_(ks::ExternalScaler::NewStub(grpc::CreateChannel(
            absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()))) {}

  // The ScaledObject of a Deployment of command runners labelled `labels`.
  static ks::ScaledObjectRef Runners(const std::string& labels,
                                     const std::string& providers = "command") {
    ks::ScaledObjectRef ref;
    ref.set_name("runners");
    ref.set_namespace_("buildd");
    auto& m = *ref.mutable_scalermetadata();
    m["scalerAddress"] = "buildd-broker:7003";  // KEDA's own key, passed along
    m["providers"] = providers;
    m["labels"] = labels;
    m["tasksPerRunner"] = "2";
    return ref;
  }

  int64_t Demand(const ks::ScaledObjectRef& ref) {
    grpc::ClientContext ctx;
    ks::GetMetricsRequest req;
    *req.mutable_scaledobjectref() = ref;
    req.set_metricname("s0-buildd_tasks");
    ks::GetMetricsResponse resp;
    const grpc::Status st = scaler_->GetMetrics(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (resp.metricvalues_size() != 1) return -1;
    EXPECT_EQ(resp.metricvalues(0).metricname(), "s0-buildd_tasks");
    return resp.metricvalues(0).metricvalue();
  }

  std::unique_ptr<ks::ExternalScaler::Stub> scaler_;
};

TEST_F(ScalerTest, TheQueueIsPushedAsItChangesAndCountedForTheRunnersThatCouldTakeIt) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  grpc::ClientContext stream_ctx;
  auto stream = scaler_->StreamIsActive(&stream_ctx, Runners("gpu,linux"));
  ks::IsActiveResponse active;
  // At once: nothing to do.
  ASSERT_TRUE(stream->Read(&active));
  EXPECT_FALSE(active.result());

  // A task these runners could take, and one needing a label they lack.
  CreateTask(s.api_key, s.workspace_id, "echo gpu", R"(,"requiredLabels":["gpu"])");
  CreateTask(s.api_key, s.workspace_id, "echo arm", R"(,"requiredLabels":["arm"])");
  ASSERT_TRUE(stream->Read(&active));
  EXPECT_TRUE(active.result());
  EXPECT_EQ(Demand(Runners("gpu,linux")), 1);
  EXPECT_EQ(Demand(Runners("arm")), 1);
  EXPECT_EQ(Demand(Runners("arm,gpu")), 2);
  EXPECT_EQ(Demand(Runners("gpu,linux", "claude")), 0) << "they are command tasks";
  {
    grpc::ClientContext ctx;
    ks::IsActiveResponse once;
    ASSERT_TRUE(scaler_->IsActive(&ctx, Runners("gpu"), &once).ok());
    EXPECT_TRUE(once.result());
  }
  {
    grpc::ClientContext ctx;
    ks::GetMetricSpecResponse spec;
    ASSERT_TRUE(scaler_->GetMetricSpec(&ctx, Runners("gpu"), &spec).ok());
    ASSERT_EQ(spec.metricspecs_size(), 1);
    EXPECT_EQ(spec.metricspecs(0).targetsize(), 2);
    EXPECT_EQ(spec.metricspecs(0).targetsizefloat(), 2.0);
  }
  EXPECT_EQ(Metric(R"(buildd_broker_pending_tasks{provider="command",labels="gpu"})"), 1);
  EXPECT_EQ(Metric(R"(buildd_broker_pending_tasks{provider="command",labels="arm"})"), 1);

  // A gpu runner comes up (the scaled pod) and does the work: the demand
  // goes, and the stream says so without being asked.
  mesh_.StartRunner(s.api_key, "gpu-pod", {"--labels=gpu,linux"});
  ASSERT_TRUE(stream->Read(&active));
  EXPECT_FALSE(active.result());
  EXPECT_EQ(Demand(Runners("gpu,linux")), 0);
  EXPECT_EQ(Demand(Runners("arm")), 1);
  EXPECT_EQ(Metric(R"(buildd_broker_pending_tasks{provider="command",labels="gpu"})"), -1);
  stream_ctx.TryCancel();
}

TEST_F(ScalerTest, ARunningTaskStillNeedsItsRunner) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  mesh_.StartRunner(s.api_key, "busy");
  const std::string task = CreateTask(s.api_key, s.workspace_id, "sleep 30");
  const Struct running = WaitForTaskState(task, "running");
  // Not pending, but scaling its runner away would stop it.
  EXPECT_EQ(Demand(Runners("")), 1);
  EXPECT_EQ(Metric(R"(buildd_broker_pending_tasks{provider="command",labels=""})"), -1);
  const std::string worker = Str(Obj(running, "task"), "workerId");
  EXPECT_EQ(Call("POST", "/api/workers/" + worker + "/cancel", s.api_key).status, 200);
  WaitForTaskState(task, "canceled", 15000);
  EXPECT_EQ(Demand(Runners("")), 0);
}

TEST_F(ScalerTest, TheScalerTakesNoKeySoItIsNotOnTheBrokersOwnPort) {
  auto on_broker = ks::ExternalScaler::NewStub(
      grpc::CreateChannel(mesh_.broker_addr(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ks::IsActiveResponse resp;
  EXPECT_EQ(on_broker->IsActive(&ctx, Runners(""), &resp).error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(ScalerTest, MetadataItCannotReadIsRefusedByKey) {
  for (const auto& [key, value, message] :
       {std::tuple{"providers", "command,gcc", "providers: 'gcc' is not one of"},
        std::tuple{"tasksPerRunner", "0", "tasksPerRunner: '0' is not a whole number"},
        std::tuple{"workspace", "not-a-uuid", "workspace"},
        std::tuple{"accountType", "robot", "accountType: 'robot'"}}) {
    ks::ScaledObjectRef ref = Runners("");
    (*ref.mutable_scalermetadata())[key] = value;
    grpc::ClientContext ctx;
    ks::IsActiveResponse resp;
    const grpc::Status st = scaler_->IsActive(&ctx, ref, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << key;
    EXPECT_THAT(st.error_message(), HasSubstr(message));
    grpc::ClientContext stream_ctx;
    auto stream = scaler_->StreamIsActive(&stream_ctx, ref);
    ks::IsActiveResponse ignored;
    EXPECT_FALSE(stream->Read(&ignored));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT) << key;
  }
}

}  // namespace
}  // namespace buildd
