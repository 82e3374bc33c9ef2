// `./buildd up` itself, with a state directory and ports of its own over a
// test database (so it starts no PostgreSQL of its own): a service that dies
// is restarted while the others keep running, one that keeps dying ends it.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/files.h"
#include "tests/testing/http_client.h"
#include "tests/testing/matchers.h"
#include "tests/testing/pg_fixture.h"
#include "tests/testing/process.h"

namespace buildd {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::Process;
using ::buildd::testing::ReadFile;
using ::testing::HasSubstr;
using ::testing::Not;

const char* const kServices[] = {"accounts", "broker", "gateway", "runner"};

// Polls `done` until it holds; false once `timeout` passed without.
template <typename Done>
bool WaitUntil(Done done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// A process that exists and is not a zombie.
bool Alive(pid_t pid) {
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t end = stat.rfind(") ");
  return pid > 0 && end != std::string::npos && stat.compare(end + 2, 1, "Z") != 0;
}

class UpTest : public GatewayTest {
 protected:
  UpTest()
      : state_dir_(testing::MakeTempDir("buildd-up-")),
        admin_key_(absl::StrCat("buildd_service_", RandomBase64Url(32))),
        gateway_port_(testing::FreePort()) {}

  ~UpTest() override {
    // `down` stops up, or what a failed up left behind.
    std::unique_ptr<Process> down = Buildd({"down"}, {}, "teardown.log");
    if (down->Wait(120000) != 0) ADD_FAILURE() << "./buildd down: " << down->Log();
    if (up_) up_->Stop(SIGKILL, 5000);
    testing::RemoveUnlessFailed(state_dir_, "state directory of ./buildd up");
  }

  std::string gateway_url() const override {
    return absl::StrCat("http://127.0.0.1:", gateway_port_);
  }
  std::string admin_key() const override { return admin_key_; }

  // Runs ./buildd with `args` in this test's state directory, over its
  // database, `env` on top.
  std::unique_ptr<Process> Buildd(const std::vector<std::string>& args,
                                  std::map<std::string, std::string> env,
                                  const std::string& log) {
    env["BUILDD_STATE_DIR"] = state_dir_;
    env["BUILDD_DATABASE_URL"] = db_.url();
    env["BUILDD_ADMIN_KEY"] = admin_key_;
    // The local runner takes up's own runner key.
    env["BUILDD_API_KEY"] = "";
    return Process::Start(absl::StrCat(BUILDD_SOURCE_DIR, "/buildd"), args, env,
                          absl::StrCat(state_dir_, "/", log));
  }

  // Starts `./buildd up` on free ports.
  void StartUp(const std::map<std::string, std::string>& env = {}) {
    up_ = Buildd({"up", absl::StrCat("--gateway-port=", gateway_port_),
                  absl::StrCat("--accounts-port=", testing::FreePort()),
                  absl::StrCat("--broker-port=", testing::FreePort()),
                  absl::StrCat("--runner-port=", testing::FreePort())},
                 env, "up.log");
  }

  // Waits until up has started every service (it checks the build first).
  bool WaitUntilRunning() {
    return WaitUntil([&] { return absl::StrContains(UpLog(), "buildd: running;"); },
                     std::chrono::minutes(3));
  }

  std::string UpLog() const { return ReadFile(state_dir_ + "/up.log"); }
  std::string ServiceLog(const std::string& name) const {
    return ReadFile(absl::StrCat(state_dir_, "/logs/", name, ".log"));
  }

  // The pid in up's pid file of `name`; 0 when there is none.
  pid_t ServicePid(const std::string& name) const {
    int pid = 0;
    const std::string text = ReadFile(absl::StrCat(state_dir_, "/pids/", name, ".pid"));
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid) ? pid : 0;
  }

  // Every pid up reported for `name` ("<name> is up on … (pid N)").
  std::vector<pid_t> PidsInUpLog(const std::string& name) const {
    std::vector<pid_t> pids;
    for (absl::string_view line : absl::StrSplit(UpLog(), '\n')) {
      if (!absl::StartsWith(line, absl::StrCat("buildd: ", name, " is up on "))) continue;
      const size_t at = line.rfind("(pid ");
      int pid = 0;
      if (at != absl::string_view::npos &&
          absl::SimpleAtoi(line.substr(at + 5, line.size() - at - 6), &pid)) {
        pids.push_back(pid);
      }
    }
    return pids;
  }

  // The texts of `task_id`'s stored output events, in order, read from the
  // start of its event stream up to its end.
  std::vector<std::string> OutputLines(const std::string& task_id) {
    auto stream = testing::SseStream::Open(gateway_url(), "/api/events?taskId=" + task_id,
                                           {{"Authorization", "Bearer " + admin_key_}});
    EXPECT_THAT(stream, IsOk());
    std::vector<std::string> lines;
    if (!stream.ok()) return lines;
    for (const SseItem& e : ReadTaskEvents(**stream, task_id, {"completed", "error"})) {
      if (e.event == "output") lines.push_back(Str(Json(e.data), "text"));
    }
    return lines;
  }

  testing::TestDatabase db_;
  std::string state_dir_;
  std::string admin_key_;
  int gateway_port_;
  std::unique_ptr<Process> up_;
};

TEST_F(UpTest, ABrokerKilledMidRunIsRestartedWhileTheRunnerKeepsItsTasks) {
  StartUp();
  ASSERT_TRUE(WaitUntilRunning()) << UpLog();
  std::map<std::string, pid_t> pids;
  for (const char* name : kServices) pids[name] = ServicePid(name);

  HttpResult ws = Call("POST", "/api/workspaces", admin_key_, R"({"name":"supervised"})");
  ASSERT_EQ(ws.status, 201) << ws.body;
  const std::string workspace = Str(Json(ws.body), "id");
  const std::string command = "for i in $(seq 1 40); do echo line $i; sleep 0.1; done";
  const std::vector<std::string> tasks = {CreateTask(admin_key_, workspace, command),
                                          CreateTask(admin_key_, workspace, command)};
  // Both run and have stored output when the broker goes.
  for (const std::string& task : tasks) {
    auto stream = testing::SseStream::Open(gateway_url(), "/api/events?taskId=" + task,
                                           {{"Authorization", "Bearer " + admin_key_}});
    ASSERT_THAT(stream, IsOk());
    const std::vector<SseItem> seen = ReadTaskEvents(**stream, task, {"output"});
    ASSERT_FALSE(seen.empty());
    ASSERT_EQ(seen.back().event, "output");
  }
  ASSERT_GT(pids["broker"], 0);
  ASSERT_EQ(kill(pids["broker"], SIGKILL), 0);

  // Up saw it die and started another, which listens.
  ASSERT_TRUE(WaitUntil([&] { return PidsInUpLog("broker").size() == 2; },
                        std::chrono::seconds(30)))
      << UpLog();
  const pid_t restarted = PidsInUpLog("broker").back();
  EXPECT_EQ(ServicePid("broker"), restarted);
  EXPECT_TRUE(Alive(restarted));
  EXPECT_THAT(UpLog(), HasSubstr(absl::StrCat("broker (pid ", pids["broker"],
                                              ") ended with signal 9")));
  for (const std::string& task : tasks) {
    const Struct done = WaitForTaskState(task, "completed", 60000);
    EXPECT_EQ(Num(Obj(done, "task"), "attempts"), 1) << done.DebugString();
    const auto& workers = done.fields().at("workers").list_value();
    ASSERT_EQ(workers.values_size(), 1) << done.DebugString();
    EXPECT_EQ(Str(workers.values(0).struct_value(), "epoch"), "1") << done.DebugString();
    std::vector<std::string> expected;
    for (int i = 1; i <= 40; ++i) expected.push_back(absl::StrCat("line ", i));
    EXPECT_EQ(OutputLines(task), expected);
  }
  // Only the broker was restarted.
  for (const char* name : {"accounts", "gateway", "runner"}) {
    EXPECT_EQ(ServicePid(name), pids[name]) << name;
    EXPECT_TRUE(Alive(pids[name])) << name;
  }
  EXPECT_EQ(PidsInUpLog("broker").size(), 2u) << UpLog();

  // ./buildd down stops everything; up then exits cleanly.
  std::unique_ptr<Process> down = Buildd({"down"}, {}, "down.log");
  ASSERT_EQ(down->Wait(120000), 0) << down->Log();
  const int status = up_->Wait(10000);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << UpLog();
  pids["broker"] = restarted;
  for (const auto& [name, pid] : pids) EXPECT_FALSE(Alive(pid)) << name << " still runs";
}

TEST_F(UpTest, AServiceThatKeepsCrashingMakesUpGiveUpAndStopEverything) {
  // The runner exits at once on a bad --sandbox, every time.
  const auto started = std::chrono::steady_clock::now();
  StartUp({{"BUILDD_SANDBOX", "bogus"}});
  const int status = up_->Wait(180000);
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_NE(status, -1) << "up still runs: " << UpLog();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;

  const std::string log = UpLog();
  EXPECT_THAT(log, HasSubstr(absl::StrCat(
                       "buildd: error: runner keeps crashing: 5 exits within 300s, the last with "
                       "exit status 2; giving up and stopping everything (log: ",
                       state_dir_, "/logs/runner.log)")));
  // 0.5 s, then doubling.
  for (const char* delay : {"in 0.5s", "in 1s", "in 2s", "in 4s"}) {
    EXPECT_THAT(log, HasSubstr(absl::StrCat("restarting it ", delay))) << log;
  }
  EXPECT_THAT(log, Not(HasSubstr("restarting it in 8s")));
  const std::string runner_log = ServiceLog("runner");
  std::vector<absl::string_view> starts = absl::StrSplit(runner_log, ": starting ");
  EXPECT_EQ(starts.size() - 1, 5u) << runner_log;
  EXPECT_THAT(runner_log, HasSubstr("--sandbox must be bwrap or none"));
  EXPECT_LT(took, std::chrono::seconds(60)) << log;

  for (const char* name : {"accounts", "broker", "gateway"}) {
    const std::vector<pid_t> pids = PidsInUpLog(name);
    ASSERT_EQ(pids.size(), 1u) << name << "\n" << log;
    EXPECT_FALSE(Alive(pids[0])) << name << " still runs";
    EXPECT_THAT(log, HasSubstr(absl::StrCat("stopping ", name, " (pid ", pids[0], ")")));
  }
}

}  // namespace
}  // namespace buildd
