#ifndef BUILDD_SERVICES_RUNNER_SANDBOX_H_
#define BUILDD_SERVICES_RUNNER_SANDBOX_H_

#include <sys/types.h>

#include <memory>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/runner/process_group.h"

namespace buildd::runner {

// The cgroup (v1) hierarchies in which the runner may make a cgroup for each
// task: the directory of its own cgroup in each; empty when it may not.
struct CgroupRoots {
  std::string memory;
  std::string pids;
};

// Finds them from /proc/self/cgroup, checking that a child can be made.
CgroupRoots FindCgroupRoots();

// How a runner isolates its tasks; fixed at start-up.
struct SandboxConfig {
  // False: --sandbox=none, tasks run as the runner's user in its view of the
  // machine (machines without user namespaces); every task logs a warning.
  bool enabled = true;
  std::string bwrap = "bwrap";
  // The user tasks run as (--task_user), and its group; -1 keeps the
  // runner's (a runner that is not root).
  int uid = -1;
  int gid = -1;
  // Per task: memory of all its processes in bytes (its memory cgroup),
  // processes (its pids cgroup; without one, RLIMIT_NPROC for the task user
  // as a whole), open files per process (RLIMIT_NOFILE); 0 leaves them
  // unbounded.
  unsigned long memory_bytes = 0;
  unsigned long max_processes = 0;
  unsigned long open_files = 0;
  // Where the per-task cgroups go; without them memory is not bounded.
  CgroupRoots cgroups;
  // Names of the runner's environment variables that tasks get too
  // (--task_env: proxies, a provider's base URL).
  std::vector<std::string> pass_env;
  // Read-only in every sandbox: the agent CLIs' installations
  // (InstallationDir of each), found at start-up.
  std::vector<std::string> tool_dirs;
};

// Resolves --sandbox, --task_user and the limits into a config. As root
// without --sandbox=none, `task_user` must name a user other than root.
// InvalidArgument names the flag; FailedPrecondition when bwrap cannot make
// a sandbox on this machine (with the reason it gave).
absl::StatusOr<SandboxConfig> MakeSandboxConfig(const std::string& mode,
                                                const std::string& task_user,
                                                unsigned long memory_bytes,
                                                unsigned long max_processes,
                                                unsigned long open_files,
                                                std::vector<std::string> pass_env);

// What one task's processes may see: the directories it writes (its
// worktree, its home with the agent's configuration) and reads (the
// repository's cache; the config's tool_dirs too), each at the same path as
// outside; the rest of the machine is /usr, /etc and a private /tmp.
struct SandboxView {
  std::string cwd;
  std::string home;
  std::vector<std::string> writable;
  std::vector<std::string> read_only;
  // Files inside a writable directory that stay read-only and cannot be
  // replaced (a worktree's .git file).
  std::vector<std::string> protected_files;
  // The cgroup.procs files the task's processes join (TaskCgroup::procs()).
  std::vector<std::string> cgroup_procs;
  bool network = true;
};

// `inner` (a `/bin/sh -c` command with its working directory and the task's
// own variables) as it runs in a sandbox: `bwrap … -- /bin/sh -c command`
// as the task user with the limits, and an environment of PATH, LANG, HOME,
// TMPDIR, USER, the config's pass_env and inner.env only. bwrap runs as the
// task user, which must be able to reach the view's paths (MakeReachable).
// With the sandbox off only the environment, user and limits apply.
absl::StatusOr<SpawnOptions> SandboxedSpawn(const SandboxConfig& config, const SandboxView& view,
                                            const SpawnOptions& inner);

// Lets `uid` pass through every directory above `path` (adding o+x where it
// could not, as ./buildd does for PostgreSQL), so that bwrap, running as the
// task user, finds the directories it mounts; nothing is made listable.
absl::Status MakeReachable(const std::string& path, int uid, int gid);

// A task's own cgroups, with the config's limits; removed when destroyed
// (after the task's processes are gone). Not thread-safe.
class TaskCgroup {
 public:
  // Nothing (a null pointer) when the config has no cgroup roots.
  static absl::StatusOr<std::unique_ptr<TaskCgroup>> Make(const SandboxConfig& config,
                                                          const std::string& name);
  ~TaskCgroup();
  TaskCgroup(const TaskCgroup&) = delete;
  TaskCgroup& operator=(const TaskCgroup&) = delete;

  const std::vector<std::string>& procs() const { return procs_; }
  // True once the task's memory reached its limit (the kernel then kills).
  bool HitMemoryLimit() const;

 private:
  TaskCgroup() = default;
  std::vector<std::string> dirs_;
  std::vector<std::string> procs_;
  std::string memory_dir_;
};

// Gives `path` and everything below it (symbolic links themselves, never
// their targets) to uid:gid. Nothing to do for uid < 0.
absl::Status GiveTree(const std::string& path, int uid, int gid);

// The directory to mount for an executable so that it runs inside the
// sandbox: the top `node_modules` of an npm installation (its launcher
// needs the package's other files), else the directory holding it. Empty
// when `executable` is under /usr or /bin (always visible) or not found.
std::string InstallationDir(const std::string& executable);

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_SANDBOX_H_
