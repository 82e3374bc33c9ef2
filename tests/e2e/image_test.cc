// The container images of `./buildd image` (images/*/Containerfile), run
// with podman: every binary starts in its image, and a runner container on
// the host network registers with a mesh of the real binaries on the host
// and runs a command task to completion.
//
// The image_build test (the buildd_images fixture) builds the images once
// per ctest run and writes their ids to <build>/image/*.iid; these tests run
// those ids, so another checkout retagging the images cannot change what is
// tested here.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/runner/process_group.h"
#include "tests/e2e/mesh_fixture.h"
#include "tests/testing/files.h"
#include "tests/testing/matchers.h"

namespace buildd {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPodman[] = "/usr/bin/podman";

std::string ImageId(const std::string& name) {
  const std::string path = testing::BuiltBinary(absl::StrCat("image/", name, ".iid"));
  std::string id(absl::StripAsciiWhitespace(testing::ReadFile(path)));
  EXPECT_FALSE(id.empty()) << "no image id in " << path << ": the image_build test builds it";
  return id;
}

// podman with what works on any host: runc (crun fails where cgroup v1 and
// v2 are mixed), cgroupfs and a file for events (no systemd needed).
std::vector<std::string> Podman(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kPodman, "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                                   "--events-backend", "file"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// `podman run` with limits a container may have (podman's default open-file
// limit is above the hard limit of many shells), and no network of its own:
// the host's, or none.
std::vector<std::string> PodmanRun(const std::string& network) {
  return Podman({"run", "--rm", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                 "--network", network});
}

// Runs a container to its end; its exit status and output (stdout, then
// stderr).
struct Ran {
  runner::ExitStatus status;
  std::string output;
};
Ran RunContainer(std::vector<std::string> args) {
  std::vector<std::string> argv = PodmanRun("none");
  argv.insert(argv.end(), args.begin(), args.end());
  runner::SpawnOptions options;
  options.argv = argv;
  absl::StatusOr<runner::CommandResult> result =
      runner::RunCommand(options, std::chrono::seconds(120));
  EXPECT_THAT(result, testing::IsOk());
  if (!result.ok()) return {};
  EXPECT_FALSE(result->timed_out) << absl::StrJoin(argv, " ");
  return {result->status, absl::StrCat(result->stdout_text, "\n", result->stderr_text)};
}

TEST(ImageTest, EveryBinaryStartsInItsImage) {
  const std::string services = ImageId("services");
  for (const std::string binary : {"buildd-accounts", "buildd-broker", "buildd-gateway"}) {
    Ran ran = RunContainer({services, binary, "--help"});
    // absl's --help exits with 1 once it printed the usage; a library the
    // image lacks would end the binary before that, with 127.
    EXPECT_EQ(ran.status.exit_code, 1) << binary << ": " << ran.output;
    EXPECT_THAT(ran.output, AllOf(HasSubstr(absl::StrCat(binary, ": ")), HasSubstr("--helpfull"),
                                  Not(HasSubstr("error while loading shared libraries"))))
        << binary;
  }
  // The runner image's entrypoint is the runner (under tini).
  Ran ran = RunContainer({ImageId("runner"), "--help"});
  EXPECT_EQ(ran.status.exit_code, 1) << ran.output;
  EXPECT_THAT(ran.output, AllOf(HasSubstr("buildd-runner --api_key=KEY"), HasSubstr("--helpfull")));
}

TEST(ImageTest, EveryLibraryOfTheBinariesIsInItsImage) {
  for (const std::string name : {"services", "runner"}) {
    Ran ran =
        RunContainer({"--entrypoint", "/bin/sh", ImageId(name), "-c", "ldd /usr/bin/buildd-*"});
    EXPECT_TRUE(ran.status.success()) << name << ": " << ran.output;
    EXPECT_THAT(ran.output, HasSubstr("libgrpc++.so")) << name;
    EXPECT_THAT(ran.output, Not(HasSubstr("not found"))) << name;
  }
}

TEST(ImageTest, RunnerImageRunsAsUid10001WithAHomeAndAWorkDirectory) {
  Ran ran = RunContainer({"--entrypoint", "/bin/sh", ImageId("runner"), "-c",
                          "id -u; id -g; echo \"$HOME\"; echo \"$BUILDD_WORK_DIR\"; "
                          "test -w \"$HOME\" && test -w \"$BUILDD_WORK_DIR\" && echo writable; "
                          "git --version; bwrap --version; tini --version"});
  ASSERT_TRUE(ran.status.success()) << ran.output;
  std::vector<std::string> lines = absl::StrSplit(ran.output, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 8u) << ran.output;
  EXPECT_EQ(lines[0], "10001");
  EXPECT_EQ(lines[1], "10001");
  EXPECT_EQ(lines[2], "/home/buildd");
  EXPECT_EQ(lines[3], "/var/lib/buildd/runner");
  EXPECT_EQ(lines[4], "writable");
  EXPECT_THAT(lines[5], HasSubstr("git version"));
  EXPECT_THAT(lines[6], HasSubstr("bubblewrap"));
  EXPECT_THAT(lines[7], HasSubstr("tini version"));

  ran = RunContainer({"--entrypoint", "/bin/sh", ImageId("services"), "-c", "id -u"});
  EXPECT_EQ(std::string(absl::StripAsciiWhitespace(ran.output)), "10001") << ran.output;
}

// A runner container against the mesh on the host's loopback.
class RunnerImageTest : public MeshTest {
 protected:
  void TearDown() override {
    if (runner_ != nullptr) {
      // podman passes SIGTERM on to tini, which passes it to the runner:
      // the runner drains and the container exits by itself.
      const int status = runner_->Stop(SIGTERM, 30000);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "status " << status << "\n" << runner_->Log();
      EXPECT_THAT(runner_->Log(), AllOf(HasSubstr("received SIGTERM"), HasSubstr("stopped")));
    }
    // Whatever happened, leave no container behind.
    runner::SpawnOptions remove;
    remove.argv = Podman({"rm", "--force", "--time", "5", "--ignore", name_});
    (void)runner::RunCommand(remove, std::chrono::seconds(60));
    runner_.reset();
  }

  // Starts the runner image with its API key in a file mounted into the
  // container, and waits until the broker has it.
  void StartRunnerContainer(const std::string& api_key, const std::string& name,
                            const std::vector<std::string>& podman_args,
                            const std::vector<std::string>& runner_args) {
    name_ = absl::StrCat("buildd-test-", name, "-", getpid());
    const std::string key_file = absl::StrCat(mesh_.dir(), "/", name, ".key");
    testing::WriteFile(key_file, api_key);
    // Readable by the container's user (uid 10001) and no one else.
    ASSERT_EQ(chmod(key_file.c_str(), 0400), 0);
    if (geteuid() == 0) {
      ASSERT_EQ(chown(key_file.c_str(), 10001, 10001), 0);
    }

    const std::string image = ImageId("runner");
    std::vector<std::string> args = PodmanRun("host");
    args.insert(args.end(), {"--name", name_, "--volume",
                             absl::StrCat(key_file, ":/run/secrets/buildd/api_key:ro")});
    if (!RunnerHasFlag(image, "api_key_file")) {
      // Until the runner reads its key from a file: the variable, from a
      // file podman reads, so the key is on no command line.
      const std::string env_file = absl::StrCat(mesh_.dir(), "/", name, ".env");
      testing::WriteFile(env_file, absl::StrCat("BUILDD_API_KEY=", api_key, "\n"));
      ASSERT_EQ(chmod(env_file.c_str(), 0600), 0);
      args.insert(args.end(), {"--env-file", env_file});
    }
    args.insert(args.end(), podman_args.begin(), podman_args.end());
    args.push_back(image);
    args.insert(args.end(), {absl::StrCat("--server=", mesh_.broker_addr()),
                             absl::StrCat("--name=", name),
                             absl::StrCat("--listen=127.0.0.1:", testing::FreePort())});
    if (RunnerHasFlag(image, "api_key_file")) {
      args.push_back("--api_key_file=/run/secrets/buildd/api_key");
    }
    args.insert(args.end(), runner_args.begin(), runner_args.end());
    runner_ = testing::Process::Start(args[0], std::vector<std::string>(args.begin() + 1, args.end()),
                                      {}, absl::StrCat(mesh_.dir(), "/runner-", name, ".log"));
    ASSERT_TRUE(mesh_.broker().WaitForLog(absl::StrCat("name=", name, " account="), 60000))
        << runner_->Log() << mesh_.broker().Log();
  }

  static bool RunnerHasFlag(const std::string& image, const std::string& flag) {
    static const std::string* help = [&image] {
      Ran ran = RunContainer({image, "--helpfull"});
      return new std::string(ran.output);
    }();
    return help->find(absl::StrCat("--", flag, " ")) != std::string::npos;
  }

  // Runs `command` as a task through the gateway; returns its output lines
  // ("stdout:…") once it completed.
  std::vector<std::string> RunTask(const Setup& s, const std::string& command) {
    auto live = SseStream::Open(mesh_.gateway_url(), "/api/events?workspaceId=" + s.workspace_id,
                                {{"Authorization", "Bearer " + mesh_.admin_key()}});
    EXPECT_THAT(live, testing::IsOk());
    if (!live.ok()) return {};
    const std::string task_id = CreateTask(s.api_key, s.workspace_id, command);
    std::vector<SseItem> events = ReadTaskEvents(**live, task_id, {"completed", "error", "failed"});
    std::vector<std::string> types, lines;
    for (const auto& e : events) {
      types.push_back(e.event);
      Struct body = Json(e.data);
      if (e.event == "output") lines.push_back(Str(body, "stream") + ":" + Str(body, "text"));
    }
    EXPECT_THAT(types, Contains("started"));
    EXPECT_THAT(types, Contains("completed")) << runner_->Log();
    Struct state = WaitForTaskState(task_id, "completed");
    EXPECT_EQ(Str(Obj(state, "task"), "state"), "completed");
    return lines;
  }

  std::string name_;
  std::unique_ptr<testing::Process> runner_;
};

TEST_F(RunnerImageTest, RunnerContainerOnTheHostNetworkCompletesACommandTask) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  StartRunnerContainer(s.api_key, "image-runner", {}, {"--sandbox=none"});
  // The subshell leaves an orphan behind, which reparents to PID 1.
  std::vector<std::string> lines =
      RunTask(s, "echo hello from the image; id -u; cat /proc/1/comm; (sleep 0.2 &)");
  EXPECT_THAT(lines, Contains("stdout:hello from the image"));
  // Without a sandbox the task runs as the runner's user, under tini.
  EXPECT_THAT(lines, Contains("stdout:10001"));
  EXPECT_THAT(lines, Contains("stdout:tini"));

  // tini reaped it: the runner waits only for its own children.
  lines = RunTask(s,
                  "sleep 1; for f in /proc/[0-9]*/stat; do read -r pid comm state rest <\"$f\"; "
                  "if [ \"$state\" = Z ]; then echo \"zombie $pid $comm\"; fi; done; echo counted");
  EXPECT_THAT(lines, Contains("stdout:counted"));
  EXPECT_THAT(lines, Not(Contains(HasSubstr("zombie"))));
}

// bubblewrap mounts a /proc of its own, which the kernel allows only where
// no part of the container's /proc is masked.
TEST_F(RunnerImageTest, RunnerContainerSandboxesTasksWithBubblewrapWhenProcIsUnmasked) {
  Setup s = CreateAccountAndWorkspace("service", true, true);
  StartRunnerContainer(s.api_key, "image-bwrap", {"--security-opt", "unmask=/proc/*"}, {});
  std::vector<std::string> lines =
      RunTask(s, "echo hello from the sandbox; id -u; test -e /run/secrets/buildd/api_key || "
                 "echo no key in sight");
  EXPECT_THAT(lines, Contains("stdout:hello from the sandbox"));
  EXPECT_THAT(lines, Contains("stdout:10001"));
  // The sandbox shows the task none of the runner's files.
  EXPECT_THAT(lines, Contains("stdout:no key in sight"));
}

}  // namespace
}  // namespace buildd
