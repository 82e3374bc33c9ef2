#include "services/runner/sandbox.h"

#include <errno.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status.h"

namespace buildd::runner {
namespace fs = std::filesystem;
namespace {

// The top-level entries a task sees of the machine, read-only; each is a
// directory or (merged /usr) a symbolic link into /usr.
constexpr const char* kSystemDirs[] = {"/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32",
                                       "/libx32", "/etc"};

void AddSystemView(std::vector<std::string>& args) {
  for (const char* dir : kSystemDirs) {
    std::error_code ec;
    const fs::file_status st = fs::symlink_status(dir, ec);
    if (ec || !fs::exists(st)) continue;
    if (fs::is_symlink(st)) {
      const fs::path target = fs::read_symlink(dir, ec);
      if (!ec) args.insert(args.end(), {"--symlink", target.string(), dir});
    } else {
      args.insert(args.end(), {"--ro-bind", dir, dir});
    }
  }
  // /etc/resolv.conf may point there.
  args.insert(args.end(), {"--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"});
}

}  // namespace

absl::StatusOr<SandboxConfig> MakeSandboxConfig(const std::string& mode,
                                                const std::string& task_user,
                                                unsigned long memory_bytes,
                                                unsigned long max_processes,
                                                unsigned long open_files,
                                                std::vector<std::string> pass_env) {
  SandboxConfig config;
  if (mode == "none") {
    config.enabled = false;
  } else if (mode != "bwrap") {
    return absl::InvalidArgumentError(
        absl::StrCat("--sandbox must be bwrap or none, not \"", mode, "\""));
  }
  // execve() does not search PATH.
  for (const char* dir : {"/usr/bin", "/bin", "/usr/local/bin"}) {
    const std::string candidate = absl::StrCat(dir, "/bwrap");
    if (access(candidate.c_str(), X_OK) == 0) {
      config.bwrap = candidate;
      break;
    }
  }
  config.memory_bytes = memory_bytes;
  config.cgroups = FindCgroupRoots();
  config.max_processes = max_processes;
  config.open_files = open_files;
  config.pass_env = std::move(pass_env);
  if (geteuid() == 0 && config.enabled) {
    if (task_user.empty() || task_user == "root") {
      return absl::InvalidArgumentError(
          "--task_user: a runner started as root runs its tasks as another user; name one "
          "(./buildd up makes buildd-task: useradd --system --no-create-home buildd-task)");
    }
    const passwd* pw = getpwnam(task_user.c_str());
    if (pw == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--task_user: no user \"", task_user, "\" on this machine (useradd --system ",
          "--no-create-home ", task_user, ")"));
    }
    if (pw->pw_uid == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--task_user: \"", task_user, "\" has uid 0"));
    }
    config.uid = static_cast<int>(pw->pw_uid);
    config.gid = static_cast<int>(pw->pw_gid);
  }
  if (!config.enabled) return config;

  // One real sandbox, as tasks will get it: a machine without user
  // namespaces (or without bwrap) says so now, not at the first task.
  SandboxView view;
  view.cwd = "/";
  view.home = "/";
  SpawnOptions probe;
  probe.command = "exit 0";
  BUILDD_ASSIGN_OR_RETURN(SpawnOptions sandboxed, SandboxedSpawn(config, view, probe));
  absl::StatusOr<CommandResult> ran = RunCommand(sandboxed, std::chrono::seconds(30));
  if (!ran.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--sandbox=bwrap: cannot run ", config.bwrap, ": ", ran.status().message(),
                     " (apt-get install bubblewrap, or --sandbox=none)"));
  }
  if (!ran->status.success()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--sandbox=bwrap: bwrap cannot make a sandbox here (", ran->status.Describe(), "): ",
        ran->stderr_text, " — user namespaces may be off; --sandbox=none runs tasks unisolated"));
  }
  return config;
}

absl::StatusOr<SpawnOptions> SandboxedSpawn(const SandboxConfig& config, const SandboxView& view,
                                            const SpawnOptions& inner) {
  SpawnOptions out = inner;
  out.clear_env = true;
  out.uid = config.uid;
  out.gid = config.gid;
  out.cgroup_procs = view.cgroup_procs;
  // The task's own pids cgroup bounds its processes; RLIMIT_NPROC counts
  // every process of the task user on the machine (every task of every
  // runner sharing it), so it is the fallback only.
  if (config.max_processes > 0 && config.cgroups.pids.empty()) {
    out.rlimits.push_back({RLIMIT_NPROC, config.max_processes});
  }
  if (config.open_files > 0) out.rlimits.push_back({RLIMIT_NOFILE, config.open_files});

  // The environment: an allow-list, then the task's own variables.
  std::vector<std::pair<std::string, std::string>> env = {
      {"PATH", "/usr/local/bin:/usr/bin:/bin"},
      {"HOME", view.home},
      {"TMPDIR", "/tmp"},
      {"LANG", "C.UTF-8"},
  };
  if (const passwd* pw = config.uid >= 0 ? getpwuid(static_cast<uid_t>(config.uid)) : nullptr) {
    env.emplace_back("USER", pw->pw_name);
  }
  for (const std::string& name : config.pass_env) {
    if (const char* value = std::getenv(name.c_str())) env.emplace_back(name, value);
  }
  env.insert(env.end(), inner.env.begin(), inner.env.end());
  out.env = std::move(env);
  if (!config.enabled) return out;

  std::vector<std::string> args = {config.bwrap, "--unshare-all", "--die-with-parent"};
  if (view.network) args.push_back("--share-net");
  AddSystemView(args);
  args.insert(args.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"});
  const auto bind = [&](const std::string& path, bool writable) -> absl::Status {
    if (path.empty()) return absl::OkStatus();
    if (access(path.c_str(), F_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("sandbox: cannot see ", path, ": ", std::strerror(errno)));
    }
    args.insert(args.end(), {writable ? "--bind" : "--ro-bind", path, path});
    return absl::OkStatus();
  };
  // Read-only first: a writable directory inside one stays writable.
  std::set<std::string> seen;
  for (const auto* paths : {&config.tool_dirs, &view.read_only}) {
    for (const std::string& path : *paths) {
      if (!seen.insert(path).second) continue;
      if (absl::Status st = bind(path, false); !st.ok()) return st;
    }
  }
  if (view.home != "/") {
    if (absl::Status st = bind(view.home, true); !st.ok()) return st;
  }
  for (const std::string& path : view.writable) {
    if (absl::Status st = bind(path, true); !st.ok()) return st;
  }
  for (const std::string& path : view.protected_files) {
    if (absl::Status st = bind(path, false); !st.ok()) return st;
  }
  args.insert(args.end(), {"--chdir", inner.working_dir.empty() ? view.cwd : inner.working_dir});
  if (inner.argv.empty()) {
    args.insert(args.end(), {"--", "/bin/sh", "-c", inner.command});
  } else {
    args.push_back("--");
    args.insert(args.end(), inner.argv.begin(), inner.argv.end());
  }
  out.argv = std::move(args);
  // bwrap enters the directory itself, inside the sandbox.
  out.working_dir.clear();
  return out;
}

CgroupRoots FindCgroupRoots() {
  CgroupRoots roots;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    // "4:memory:/process_api/…": hierarchy id, controllers, path.
    std::vector<std::string> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) continue;
    for (absl::string_view controller : absl::StrSplit(fields[1], ',')) {
      std::string* root = controller == "memory" ? &roots.memory
                          : controller == "pids" ? &roots.pids
                                                 : nullptr;
      if (root == nullptr) continue;
      const std::string dir = absl::StrCat("/sys/fs/cgroup/", controller, fields[2]);
      // Usable only if a child can be made there.
      const std::string probe = absl::StrCat(dir, "/buildd-probe-", getpid());
      if (mkdir(probe.c_str(), 0755) == 0) {
        rmdir(probe.c_str());
        *root = dir;
      }
    }
  }
  return roots;
}

absl::StatusOr<std::unique_ptr<TaskCgroup>> TaskCgroup::Make(const SandboxConfig& config,
                                                             const std::string& name) {
  if (config.cgroups.memory.empty() && config.cgroups.pids.empty()) return nullptr;
  auto cgroup = std::unique_ptr<TaskCgroup>(new TaskCgroup());
  const auto make = [&](const std::string& root, const std::string& file,
                        unsigned long limit) -> absl::StatusOr<std::string> {
    const std::string dir = absl::StrCat(root, "/buildd-", name);
    // One left by a runner that died is taken over.
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("cannot make cgroup ", dir, ": ", std::strerror(errno)));
    }
    cgroup->dirs_.push_back(dir);
    if (limit > 0) {
      std::ofstream out(absl::StrCat(dir, "/", file));
      out << limit;
      out.close();
      if (!out) return absl::InternalError(absl::StrCat("cannot set ", dir, "/", file));
    }
    cgroup->procs_.push_back(dir + "/cgroup.procs");
    return dir;
  };
  if (!config.cgroups.memory.empty()) {
    BUILDD_ASSIGN_OR_RETURN(cgroup->memory_dir_,
                            make(config.cgroups.memory, "memory.limit_in_bytes", config.memory_bytes));
  }
  if (!config.cgroups.pids.empty()) {
    BUILDD_RETURN_IF_ERROR(make(config.cgroups.pids, "pids.max", config.max_processes).status());
  }
  return cgroup;
}

TaskCgroup::~TaskCgroup() {
  // The task's last processes (a sandbox's init, reaped by whoever inherits
  // it) may still be leaving: the cgroup is busy until they are gone.
  for (const std::string& dir : dirs_) {
    for (int attempt = 0; rmdir(dir.c_str()) != 0 && errno == EBUSY; ++attempt) {
      if (attempt == 500) {
        Log()->warn("cgroup {} still busy after 5 s; left in place", dir);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

bool TaskCgroup::HitMemoryLimit() const {
  if (memory_dir_.empty()) return false;
  std::ifstream in(memory_dir_ + "/memory.failcnt");
  long count = 0;
  return (in >> count) && count > 0;
}

absl::Status GiveTree(const std::string& path, int uid, int gid) {
  if (uid < 0) return absl::OkStatus();
  const auto give = [&](const fs::path& p) -> absl::Status {
    if (lchown(p.c_str(), static_cast<uid_t>(uid), static_cast<gid_t>(gid)) != 0) {
      return absl::InternalError(absl::StrCat("cannot give ", p.string(), " to uid ", uid, ": ",
                                              std::strerror(errno)));
    }
    return absl::OkStatus();
  };
  if (absl::Status st = give(path); !st.ok()) return st;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (absl::Status st = give(it->path()); !st.ok()) return st;
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot walk ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status MakeReachable(const std::string& path, int uid, int gid) {
  if (uid < 0) return absl::OkStatus();
  std::error_code ec;
  fs::path dir = fs::absolute(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot resolve ", path, ": ", ec.message()));
  for (; !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) continue;
    const bool passes = (st.st_uid == static_cast<uid_t>(uid) && (st.st_mode & S_IXUSR)) ||
                        (st.st_gid == static_cast<gid_t>(gid) && (st.st_mode & S_IXGRP)) ||
                        (st.st_mode & S_IXOTH);
    if (passes) continue;
    if (chmod(dir.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "the task user cannot reach ", path, ": cannot chmod o+x ", dir.string(), ": ",
          std::strerror(errno)));
    }
    Log()->info("allowed the task user to pass through {} (chmod o+x)", dir.string());
  }
  return absl::OkStatus();
}

std::string InstallationDir(const std::string& executable) {
  std::error_code ec;
  fs::path exe = executable;
  if (exe.is_relative() || exe.string().find('/') == std::string::npos) {
    // Found on PATH.
    const char* path = std::getenv("PATH");
    std::string found;
    for (absl::string_view dir : absl::StrSplit(path == nullptr ? "" : path, ':')) {
      const fs::path candidate = fs::path(std::string(dir)) / executable;
      if (access(candidate.c_str(), X_OK) == 0) {
        found = candidate.string();
        break;
      }
    }
    if (found.empty()) return "";
    exe = found;
  }
  const fs::path real = fs::canonical(exe, ec);
  if (ec) return "";
  for (const fs::path& p : {exe, real}) {
    const std::string text = p.string();
    const size_t at = text.find("/node_modules/");
    if (at != std::string::npos) return text.substr(0, at + std::strlen("/node_modules"));
  }
  const std::string dir = real.parent_path().string();
  if (absl::StartsWith(dir, "/usr/") || dir == "/usr" || dir == "/bin" || dir == "/sbin") {
    return "";
  }
  return dir;
}

}  // namespace buildd::runner
