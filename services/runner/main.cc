// buildd-runner: dials the broker, takes the tasks it pushes, runs them and
// streams their events back. Wiring only; the behaviour lives in
// buildd_runner_core.

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "absl/synchronization/mutex.h"
#include "common/admin_http.h"
#include "common/config.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "services/runner/capabilities.h"
#include "services/runner/drain.h"
#include "services/runner/runner_agent.h"
#include "services/runner/runner_client.h"
#include "services/runner/runner_config.h"

ABSL_FLAG(std::string, server, "127.0.0.1:7002",
          "The broker's address, host:port (a leading http://, https:// or grpc:// is ignored).");
ABSL_FLAG(std::string, api_key, "", "The runner's API key (required, or --api_key_file).");
ABSL_FLAG(std::string, api_key_file, "", "A file holding the runner's API key.");
ABSL_FLAG(bool, once, false,
          "Take one task, finish it and exit 0 (an ephemeral runner: a CI job, a Kubernetes Job).");
ABSL_FLAG(absl::Duration, idle_exit, absl::ZeroDuration(),
          "Exit 0 after holding no task for this long, e.g. 5m (0: never).");
ABSL_FLAG(std::string, workspace, "",
          "Only take tasks of these workspace ids (comma-separated, or the flag repeated).");
ABSL_FLAG(int, max_tasks, 3, "How many tasks may run at once.");
ABSL_FLAG(std::string, task, "",
          "Only take this task (its id), as the GitHub Actions run a repository_dispatch "
          "started for it does (with --once).");
ABSL_FLAG(std::string, name, "", "The runner's name (default: the host name).");
ABSL_FLAG(std::string, labels, "", "Comma-separated labels tasks may require.");
ABSL_FLAG(std::string, listen, "127.0.0.1:7003",
          "Address of the /health and /metrics HTTP endpoint (empty: none).");
ABSL_FLAG(std::string, work_dir, "", "Where tasks run (default: $HOME/.buildd/runner).");
ABSL_FLAG(int, cancel_grace_ms, 10000, "Time between SIGTERM and SIGKILL when canceling.");
ABSL_FLAG(int, drain_timeout_ms, 60000,
          "On SIGTERM/SIGINT or Drain: how long running tasks may take before being canceled.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error.");
ABSL_FLAG(std::string, claude, "", "The Claude Code CLI (default: `claude` on PATH).");
ABSL_FLAG(std::string, codex, "", "The Codex CLI (default: `codex` on PATH).");
ABSL_FLAG(std::string, claude_config_dir, "",
          "Claude Code's configuration and session directory (default: $CLAUDE_CONFIG_DIR, "
          "else ~/.claude).");
ABSL_FLAG(std::string, codex_home, "", "Codex's home (default: $CODEX_HOME, else ~/.codex).");
ABSL_FLAG(std::string, commit_author, "buildd <buildd@localhost>",
          "The author of the commits tasks make, \"Name <email>\".");
ABSL_FLAG(double, disk_high_watermark, 0.85,
          "Used fraction of the work directory's disk above which old worktrees are removed.");
ABSL_FLAG(double, disk_low_watermark, 0.70, "Remove old worktrees until the disk is below this.");
ABSL_FLAG(std::string, sandbox, "bwrap",
          "How tasks are isolated: bwrap (a bubblewrap sandbox per task) or none (machines "
          "without user namespaces: tasks then see everything the runner's user can).");
ABSL_FLAG(std::string, task_user, "buildd-task",
          "The user tasks run as when the runner is root.");
ABSL_FLAG(uint64_t, task_memory, uint64_t{4} << 30,
          "Memory of each task's processes together, in bytes (a cgroup per task, where the "
          "runner may make them; 0: unbounded).");
ABSL_FLAG(uint64_t, task_pids, 4096,
          "Processes each task may have (its pids cgroup; without one, the task user's "
          "RLIMIT_NPROC, shared by its tasks) (0: unbounded).");
ABSL_FLAG(uint64_t, task_open_files, 4096, "Open files of each task process (0: the runner's).");
ABSL_FLAG(std::string, task_env, "",
          "Comma-separated names of the runner's environment variables that tasks get too "
          "(proxies, ANTHROPIC_BASE_URL); nothing else of the runner's environment reaches them.");

namespace {

namespace runner = buildd::runner;

// Set by a signal or the broker's Drain; main waits on it.
struct StopRequest {
  absl::Mutex mu;
  bool requested = false;
  std::string why;

  void Request(const std::string& reason) {
    absl::MutexLock lock(&mu);
    if (requested) return;
    requested = true;
    why = reason;
  }
};

StopRequest& Stop() {
  static auto* stop = new StopRequest;  // never destroyed: the signal thread outlives main
  return *stop;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "buildd-runner: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Every thread inherits this mask; one thread takes the signals with
  // sigwait. Children get a clean mask (see ProcessGroup::Spawn).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  buildd::ParseFlagsWithEnv(argc, argv,
                            {{"server", "BUILDD_SERVER"},
                             {"api_key", "BUILDD_API_KEY"},
                             {"api_key_file", "BUILDD_API_KEY_FILE"},
                             {"idle_exit", "BUILDD_IDLE_EXIT"},
                             {"workspace", "BUILDD_WORKSPACE"},
                             {"task", "BUILDD_TASK_ID"},
                             {"max_tasks", "BUILDD_MAX_TASKS"},
                             {"name", "BUILDD_RUNNER_NAME"},
                             {"labels", "BUILDD_RUNNER_LABELS"},
                             {"listen", "BUILDD_RUNNER_LISTEN"},
                             {"work_dir", "BUILDD_WORK_DIR"},
                             {"claude", "BUILDD_CLAUDE"},
                             {"codex", "BUILDD_CODEX"},
                             {"commit_author", "BUILDD_COMMIT_AUTHOR"},
                             {"claude_config_dir", "CLAUDE_CONFIG_DIR"},
                             {"codex_home", "CODEX_HOME"},
                             {"log_level", "BUILDD_LOG_LEVEL"},
                             {"sandbox", "BUILDD_SANDBOX"},
                             {"task_user", "BUILDD_TASK_USER"},
                             {"task_env", "BUILDD_TASK_ENV"}},
                            "buildd-runner --api_key=KEY [--server=host:port | https://host:port] [--once] [flags]\n"
                            "Runs the tasks the buildd broker pushes to it.");
  buildd::InitLogging("runner", absl::GetFlag(FLAGS_log_level));

  runner::ClientOptions client_options;
  client_options.api_key = buildd::SecretFlagOrExit("api_key");
  if (client_options.api_key.empty()) {
    return Fail("an API key is required: pass --api_key or --api_key_file, or set BUILDD_API_KEY");
  }
  buildd::TlsClientFiles tls = buildd::TlsClientFlags();
  absl::StatusOr<runner::ServerAddress> server =
      runner::ParseServerAddress(absl::GetFlag(FLAGS_server), tls.tls);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  client_options.server = server->address;
  tls.tls = server->tls;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      buildd::ChannelCredentials(tls);
  if (!credentials.ok()) return Fail(std::string(credentials.status().message()));
  client_options.credentials = *std::move(credentials);
  const int max_tasks = absl::GetFlag(FLAGS_max_tasks);
  if (max_tasks < 1) return Fail("--max_tasks must be at least 1");
  const int cancel_grace_ms = absl::GetFlag(FLAGS_cancel_grace_ms);
  const int drain_timeout_ms = absl::GetFlag(FLAGS_drain_timeout_ms);
  if (cancel_grace_ms < 0 || drain_timeout_ms < 0) {
    return Fail("--cancel_grace_ms and --drain_timeout_ms must not be negative");
  }
  const bool once = absl::GetFlag(FLAGS_once);
  const absl::Duration idle_exit = absl::GetFlag(FLAGS_idle_exit);
  if (idle_exit < absl::ZeroDuration()) return Fail("--idle_exit must not be negative");

  runner::AgentOptions agent_options;
  agent_options.name = absl::GetFlag(FLAGS_name);
  if (agent_options.name.empty()) agent_options.name = runner::HostName();
  agent_options.labels = runner::SplitLabels(absl::GetFlag(FLAGS_labels));
  // One task at a time, and only one, with --once.
  agent_options.max_tasks = once ? 1 : max_tasks;
  agent_options.once = once;
  agent_options.version = BUILDD_VERSION;
  // Repeated, every occurrence counts (absl keeps only the last).
  for (const std::string& value : runner::FlagValues(argc, argv, "workspace", absl::GetFlag(FLAGS_workspace))) {
    for (const std::string& ws : runner::SplitLabels(value)) {
      if (!buildd::IsUuid(ws)) return Fail("--workspace: \"" + ws + "\" is not a workspace id");
      if (std::find(agent_options.workspace_ids.begin(), agent_options.workspace_ids.end(), ws) ==
          agent_options.workspace_ids.end()) {
        agent_options.workspace_ids.push_back(ws);
      }
    }
  }
  agent_options.task_id = absl::GetFlag(FLAGS_task);
  if (!agent_options.task_id.empty() && !buildd::IsUuid(agent_options.task_id)) {
    return Fail("--task: \"" + agent_options.task_id.substr(0, 60) + "\" is not a task id");
  }
  agent_options.work_dir = absl::GetFlag(FLAGS_work_dir);
  if (agent_options.work_dir.empty()) agent_options.work_dir = runner::DefaultWorkDir();
  agent_options.cancel_grace = std::chrono::milliseconds(cancel_grace_ms);
  std::error_code ec;
  std::filesystem::create_directories(agent_options.work_dir + "/tasks", ec);
  if (ec) return Fail("cannot create " + agent_options.work_dir + "/tasks: " + ec.message());

  const double high_watermark = absl::GetFlag(FLAGS_disk_high_watermark);
  const double low_watermark = absl::GetFlag(FLAGS_disk_low_watermark);
  if (!(low_watermark >= 0 && low_watermark <= high_watermark && high_watermark <= 1)) {
    return Fail("the disk watermarks must satisfy 0 <= --disk_low_watermark <= "
                "--disk_high_watermark <= 1");
  }
  const std::string commit_author = absl::GetFlag(FLAGS_commit_author);
  if (!runner::IsCommitAuthor(commit_author)) {
    return Fail("--commit_author must look like \"Name <email>\"");
  }
  runner::GitWorkspaceOptions git_options;
  git_options.high_watermark = high_watermark;
  git_options.low_watermark = low_watermark;
  runner::GitWorkspace git(agent_options.work_dir + "/git", git_options);
  agent_options.git = &git;
  agent_options.commit_author = commit_author;
  runner::ProviderSettings providers;
  providers.claude_path = absl::GetFlag(FLAGS_claude);
  providers.codex_path = absl::GetFlag(FLAGS_codex);
  providers.claude_config_dir = absl::GetFlag(FLAGS_claude_config_dir);
  providers.codex_home = absl::GetFlag(FLAGS_codex_home);
  std::vector<std::string> pass_env = runner::SplitLabels(absl::GetFlag(FLAGS_task_env));
  absl::StatusOr<runner::SandboxConfig> sandbox = runner::MakeSandboxConfig(
      absl::GetFlag(FLAGS_sandbox), absl::GetFlag(FLAGS_task_user), absl::GetFlag(FLAGS_task_memory),
      absl::GetFlag(FLAGS_task_pids), absl::GetFlag(FLAGS_task_open_files), std::move(pass_env));
  if (!sandbox.ok()) return Fail(std::string(sandbox.status().message()));
  if (!sandbox->enabled) {
    buildd::Log()->warn("--sandbox=none: tasks run as this runner's user and see all it can see");
  }
  if (sandbox->cgroups.memory.empty()) {
    buildd::Log()->warn("no memory cgroup this runner may make children in: --task_memory does "
                        "not bound its tasks (run it in a cgroup of its own, or as root)");
  } else {
    buildd::Log()->info("tasks get cgroups under {} (memory) and {} (pids)", sandbox->cgroups.memory,
                        sandbox->cgroups.pids.empty() ? "-" : sandbox->cgroups.pids);
  }
  if (sandbox->enabled) {
    absl::Status reachable =
        runner::MakeReachable(agent_options.work_dir + "/tasks", sandbox->uid, sandbox->gid);
    if (!reachable.ok()) return Fail(std::string(reachable.message()));
  }
  agent_options.capabilities = runner::DetectCapabilities(BUILDD_VERSION, &providers);
  agent_options.providers = runner::ResolveProviderSettings(providers);
  // The agent CLIs' installations, which every sandbox shows read-only.
  for (const auto& capability : agent_options.capabilities) {
    const std::string* path = capability.name == "claude"  ? &providers.claude_path
                              : capability.name == "codex" ? &providers.codex_path
                                                           : nullptr;
    if (path == nullptr || !sandbox->enabled) continue;
    const std::string dir = runner::InstallationDir(path->empty() ? capability.name : *path);
    if (dir.empty()) continue;
    absl::Status reachable = runner::MakeReachable(dir, sandbox->uid, sandbox->gid);
    if (!reachable.ok()) return Fail(std::string(reachable.message()));
    sandbox->tool_dirs.push_back(dir);
  }
  agent_options.sandbox = &*sandbox;
  std::vector<std::string> described;
  for (const auto& capability : agent_options.capabilities) {
    described.push_back(capability.name + " " + capability.version);
  }
  buildd::Log()->info(
      "runner {} version {} server={}{} max_tasks={} labels=[{}] workspace={} "
      "work_dir={} capabilities=[{}]",
      agent_options.name, BUILDD_VERSION, client_options.server, tls.tls ? " (TLS)" : "", max_tasks,
      absl::StrJoin(agent_options.labels, ","),
      agent_options.workspace_ids.empty() ? "*" : absl::StrJoin(agent_options.workspace_ids, ","),
      agent_options.work_dir,
      absl::StrJoin(described, ", "));

  runner::RunnerAgent agent(agent_options);
  runner::RunnerClient client(client_options, &agent);
  agent.SetDrainRequestedCallback([&client] {
    client.DisableReconnect();
    Stop().Request("the broker asked to drain");
  });

  auto& metrics = buildd::Metrics::Global();
  metrics.Gauge("buildd_runner_running_tasks", "Tasks whose process is running.",
                [&agent] { return static_cast<double>(agent.running_tasks()); });
  metrics.Gauge("buildd_runner_held_workers", "Workers with events not yet acknowledged.",
                [&agent] { return static_cast<double>(agent.held_workers()); });
  metrics.Gauge("buildd_runner_connected", "1 while the broker stream is up.",
                [&client] { return client.connected() ? 1.0 : 0.0; });
  metrics.Gauge("buildd_runner_sessions", "Broker streams established since start.",
                [&client] { return static_cast<double>(client.sessions()); });

  std::unique_ptr<buildd::AdminHttpServer> admin;
  const std::string listen = buildd::ListenAddress(absl::GetFlag(FLAGS_listen), "127.0.0.1");
  if (!listen.empty()) {
    auto started = buildd::AdminHttpServer::Start(listen, [] { return true; });
    if (!started.ok()) {
      buildd::Log()->error("cannot serve /health on {}: {}", listen, started.status().message());
      return 1;
    }
    admin = std::move(started).value();
    buildd::Log()->info("health and metrics on {} (port {})", listen, admin->port());
  }

  std::thread([stop_signals] {
    while (true) {
      int sig = 0;
      if (sigwait(&stop_signals, &sig) != 0) continue;
      buildd::Log()->info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      Stop().Request(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
  }).detach();

  // With --once: done when its one task is delivered; with --idle_exit,
  // when it held nothing for that long (a pod scaled to zero).
  std::thread idle_watch;
  if (once || idle_exit > absl::ZeroDuration()) {
    idle_watch = std::thread([&agent, once, idle_exit] {
      const absl::Duration quiet = idle_exit > absl::ZeroDuration() ? idle_exit : absl::InfiniteDuration();
      switch (agent.WaitUntilIdle(quiet, once ? 1 : 0)) {
        case runner::RunnerAgent::Idle::kEnough:
          return Stop().Request("its one task is done");
        case runner::RunnerAgent::Idle::kIdle:
          return Stop().Request(absl::StrCat("idle for ", absl::FormatDuration(idle_exit)));
        case runner::RunnerAgent::Idle::kStopped:
          return;
      }
    });
  }

  client.Start();
  {
    StopRequest& stop = Stop();
    absl::MutexLock lock(&stop.mu);
    stop.mu.Await(absl::Condition(&stop.requested));
    buildd::Log()->info("draining ({})", stop.why);
  }
  agent.StopWaiting();
  if (idle_watch.joinable()) idle_watch.join();
  runner::DrainOptions drain;
  drain.drain_timeout = std::chrono::milliseconds(drain_timeout_ms);
  drain.cancel_grace = std::chrono::milliseconds(cancel_grace_ms);
  const bool delivered = runner::DrainRunner(agent, client, drain);
  buildd::Log()->info("stopped{}", delivered ? "" : " (some events were not acknowledged)");
  admin.reset();
  return 0;
}
