#include "services/runner/git_workspace.h"

#include <fcntl.h>
#include <unistd.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"
#include "services/runner/process_group.h"

namespace buildd::runner {
namespace {

namespace fs = std::filesystem;

using Vars = std::vector<std::pair<std::string, std::string>>;

constexpr auto kGitTimeout = std::chrono::minutes(10);

// `vars` with `author` ("Name <email>") as both author and committer, so no
// global git identity is needed.
Vars WithAuthor(Vars vars, const std::string& author) {
  const size_t open = author.find(" <");
  const std::string name = open == std::string::npos ? author : author.substr(0, open);
  std::string email = open == std::string::npos ? author : author.substr(open + 2);
  if (!email.empty() && email.back() == '>') email.pop_back();
  vars.insert(vars.end(), {{"GIT_AUTHOR_NAME", name},
                           {"GIT_AUTHOR_EMAIL", email},
                           {"GIT_COMMITTER_NAME", name},
                           {"GIT_COMMITTER_EMAIL", email}});
  return vars;
}

}  // namespace

std::string TokenHostOf(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return "";
  std::string authority = url.substr(scheme + 3, url.find('/', scheme + 3) - scheme - 3);
  if (const size_t at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
  return authority;
}

std::string RedactUrl(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t host = scheme + 3;
  const size_t at = url.find('@', host);
  const size_t path = url.find('/', host);
  if (at == std::string::npos || (path != std::string::npos && at > path)) return url;
  return absl::StrCat(url.substr(0, host), "***@", url.substr(at + 1));
}

namespace {

// What may stop the git commands this thread runs for a public method;
// set by ControlScope.
thread_local GitControl current_control;

class ControlScope {
 public:
  explicit ControlScope(const GitControl& control) : saved_(current_control) {
    current_control = control;
  }
  ~ControlScope() { current_control = saved_; }
  ControlScope(const ControlScope&) = delete;
  ControlScope& operator=(const ControlScope&) = delete;

 private:
  GitControl saved_;
};

// git's credential helper for a task's token (see GitControl::token): the
// token is printable ASCII without spaces (checked by the broker), so it is
// one line of the credential protocol.
constexpr char kTokenHelper[] =
    "!f() { test \"$1\" = get || exit 0; h=;"
    " while IFS= read -r l && [ -n \"$l\" ]; do case \"$l\" in host=*) h=${l#host=};; esac; done;"
    " [ \"$h\" = \"$BUILDD_GIT_HOST\" ] || exit 0; echo username=x-access-token;"
    " printf 'password=%s\\n' \"$BUILDD_GIT_TOKEN\"; }; f";

// Runs a shell script whose task-supplied values come only from `vars`
// (quoted "$NAME" expansions are never re-parsed by the shell).
absl::StatusOr<std::string> Git(const std::string& script, const Vars& vars,
                                const std::string& dir = "") {
  SpawnOptions options;
  options.command = script;
  options.working_dir = dir;
  options.env = vars;
  // Never prompt for credentials: fail instead.
  options.env.emplace_back("GIT_TERMINAL_PROMPT", "0");
  // A worktree a task wrote must not make the runner's git run anything:
  // no hooks, no fsmonitor; and its files are the task user's.
  const std::string& token = current_control.token;
  options.env.insert(options.env.end(), {{"GIT_CONFIG_COUNT", token.empty() ? "3" : "5"},
                                         {"GIT_CONFIG_KEY_0", "core.hooksPath"},
                                         {"GIT_CONFIG_VALUE_0", "/dev/null"},
                                         {"GIT_CONFIG_KEY_1", "core.fsmonitor"},
                                         {"GIT_CONFIG_VALUE_1", "false"},
                                         {"GIT_CONFIG_KEY_2", "safe.directory"},
                                         {"GIT_CONFIG_VALUE_2", "*"}});
  if (!token.empty()) {
    // The task's token, for this git process alone: the helper (after an
    // empty value that drops the helpers configured elsewhere) reads it from
    // the environment git passes on, so it is on no command line.
    options.env.insert(options.env.end(),
                       {{"GIT_CONFIG_KEY_3", "credential.helper"},
                        {"GIT_CONFIG_VALUE_3", ""},
                        {"GIT_CONFIG_KEY_4", "credential.helper"},
                        {"GIT_CONFIG_VALUE_4", kTokenHelper},
                        {"BUILDD_GIT_TOKEN", token},
                        {"BUILDD_GIT_HOST", current_control.token_host}});
  }
  options.env.emplace_back("LC_ALL", "C");
  // A patch may hold very long lines; they must come back whole.
  options.max_line_bytes = 64 << 20;
  // The task's deadline when it comes first.
  const auto now = std::chrono::steady_clock::now();
  const bool task_deadline = current_control.deadline - now < kGitTimeout;
  const auto timeout =
      task_deadline ? std::max(std::chrono::steady_clock::duration::zero(), current_control.deadline - now)
                    : std::chrono::steady_clock::duration(kGitTimeout);
  auto result = RunCommand(options, std::chrono::ceil<std::chrono::milliseconds>(timeout),
                           current_control.cancel_fd);
  if (!result.ok()) return result.status();
  if (result->canceled) return absl::CancelledError("git was interrupted: the task was canceled");
  if (result->timed_out) {
    return absl::DeadlineExceededError(task_deadline ? "git was stopped: the task's time ran out"
                                                     : absl::StrCat("git timed out: ", script));
  }
  if (!result->status.success()) {
    std::string message = result->stderr_text.empty() ? result->stdout_text : result->stderr_text;
    // Credentials in a repository URL never reach an error message.
    for (const auto& [key, value] : vars) {
      if (key == "URL") message = absl::StrReplaceAll(message, {{value, RedactUrl(value)}});
    }
    if (!token.empty()) message = absl::StrReplaceAll(message, {{token, "***"}});
    return absl::FailedPreconditionError(
        absl::StrCat("git failed (", result->status.Describe(), "): ", message));
  }
  return result->stdout_text;
}

std::string Trimmed(const std::string& text) {
  return std::string(absl::StripAsciiWhitespace(text));
}

// The cache's name: one per workspace and repository, so that workspaces
// sharing a URL never see each other's branches or stashes.
std::string CacheName(const std::string& workspace_id, const std::string& url) {
  const std::string key = absl::StrCat(workspace_id, "\n", url);
  unsigned char hash[16];
  crypto_generichash(hash, sizeof hash, reinterpret_cast<const unsigned char*>(key.data()),
                     key.size(), nullptr, 0);
  char hex[sizeof hash * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
  return hex;
}

// A worktree name is one path component, so it cannot leave worktrees/.
bool IsPlainName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Sets the directory's mtime, the worktree's last use, to now.
void Touch(const std::string& path) { utimensat(AT_FDCWD, path.c_str(), nullptr, 0); }

// Removes the worktree at `path` and its metadata in the repository's cache
// (`cache_dir`, or the one the worktree names when empty). A directory that
// git does not know as a worktree is deleted all the same.
absl::Status RemoveWorktreeDir(const std::string& path, const std::string& cache_dir) {
  // The ceiling keeps git from taking a repository above worktrees/ (the
  // runner's root may sit inside some checkout) for this one's.
  return Git("if [ -z \"$CACHE\" ]; then\n"
             "  CACHE=$(GIT_CEILING_DIRECTORIES=\"$(dirname \"$TREE\")\" git -C \"$TREE\" "
             "rev-parse --path-format=absolute --git-common-dir 2>/dev/null) || CACHE=\n"
             "fi\n"
             "if [ -n \"$CACHE\" ]; then\n"
             "  git --git-dir=\"$CACHE\" worktree remove --force \"$TREE\" 2>/dev/null || true\n"
             "fi\n"
             "rm -rf \"$TREE\"\n"
             "if [ -n \"$CACHE\" ]; then git --git-dir=\"$CACHE\" worktree prune; fi\n",
             {{"TREE", path}, {"CACHE", cache_dir}})
      .status();
}

// Fills `result`'s diff stat and patch with the changes from `from` to `to`.
absl::Status DiffFrom(const std::string& tree_path, const std::string& from, size_t max_patch_bytes,
                      CommitResult* result, const std::string& to = "HEAD") {
  const Vars vars = {{"FROM", from}, {"TO", to}};
  BUILDD_ASSIGN_OR_RETURN(result->diff_stat,
                          Git("git diff --stat \"$FROM\" \"$TO\"", vars, tree_path));
  // One byte over the cap tells that the patch was cut.
  Vars capped = vars;
  capped.emplace_back("MAX", std::to_string(max_patch_bytes + 1));
  BUILDD_ASSIGN_OR_RETURN(result->patch, Git("git diff \"$FROM\" \"$TO\" | head -c \"$MAX\"",
                                             capped, tree_path));
  if (result->patch.size() > max_patch_bytes) {
    // Never half a character: the patch travels in protobuf strings.
    size_t cut = max_patch_bytes;
    while (cut > 0 && (static_cast<unsigned char>(result->patch[cut]) & 0xC0) == 0x80) --cut;
    result->patch.resize(cut);
    result->patch_truncated = true;
  }
  return absl::OkStatus();
}

}  // namespace

double UsedDiskFraction(const std::string& path) {
  struct statvfs vfs;
  if (statvfs(path.c_str(), &vfs) != 0 || vfs.f_blocks == 0) return 0;
  return 1.0 - static_cast<double>(vfs.f_bavail) / static_cast<double>(vfs.f_blocks);
}

GitWorkspace::GitWorkspace(std::string root, GitWorkspaceOptions options)
    : root_(std::move(root)), options_(std::move(options)) {}

absl::Mutex& GitWorkspace::RepoLock(const std::string& cache_dir) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<absl::Mutex>& repo = repo_locks_[cache_dir];
  if (repo == nullptr) repo = std::make_unique<absl::Mutex>();
  return *repo;
}

absl::StatusOr<Worktree> GitWorkspace::Prepare(const std::string& workspace_id,
                                               const std::string& repo_url,
                                               const std::string& base_branch,
                                               const std::string& work_branch,
                                               const std::string& name, const Progress& progress,
                                               bool carry_over, const GitControl& control) {
  if (repo_url.empty()) return absl::InvalidArgumentError("the workspace has no repoUrl");
  if (work_branch.empty()) return absl::InvalidArgumentError("the task has no work branch");
  if (!IsPlainName(name)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid worktree name \"", name, "\""));
  }
  // Claimed before anything else, so no clean-up removes it from under us.
  if (!TryClaim(name)) {
    return absl::FailedPreconditionError(absl::StrCat("worktree ", name, " is in use"));
  }
  ControlScope controlled(control);
  auto tree =
      AddWorktree(workspace_id, repo_url, base_branch, work_branch, name, progress, carry_over);
  if (!tree.ok()) Unclaim(name);
  return tree;
}

absl::StatusOr<Worktree> GitWorkspace::AddWorktree(const std::string& workspace_id,
                                                   const std::string& repo_url,
                                                   const std::string& base_branch,
                                                   const std::string& work_branch,
                                                   const std::string& name,
                                                   const Progress& progress, bool carry_over) {
  CleanUp(progress);
  Worktree tree;
  tree.name = name;
  tree.cache_dir = absl::StrCat(root_, "/cache/", CacheName(workspace_id, repo_url), ".git");
  tree.path = absl::StrCat(WorktreesDir(), "/", name);
  tree.branch = work_branch;
  Vars vars = {{"CACHE", tree.cache_dir},
               {"URL", repo_url},
               {"TREE", tree.path},
               {"WORK", work_branch},
               {"BASE", base_branch}};
  // Tasks of one repository share its cache: one fetch and worktree change
  // at a time.
  absl::MutexLock repo_lock(&RepoLock(tree.cache_dir));

  const bool cached = Exists(tree.cache_dir);
  if (progress) progress(cached ? "fetch" : "clone", RedactUrl(repo_url));
  BUILDD_RETURN_IF_ERROR(Git("set -e\n"
                             "if ! git --git-dir=\"$CACHE\" rev-parse --git-dir >/dev/null 2>&1; then\n"
                             "  rm -rf \"$CACHE\"\n"
                             "  mkdir -p \"$CACHE\"\n"
                             "  git init -q --bare \"$CACHE\"\n"
                             "  git --git-dir=\"$CACHE\" remote add origin -- \"$URL\"\n"
                             "fi\n"
                             "git --git-dir=\"$CACHE\" fetch -q --prune origin "
                             "'+refs/heads/*:refs/remotes/origin/*'\n",
                             vars)
                             .status());

  // The base: the given branch, else the remote's default (HEAD).
  if (base_branch.empty()) {
    BUILDD_ASSIGN_OR_RETURN(std::string head,
                            Git("git ls-remote --symref -- \"$URL\" HEAD | "
                                "sed -n 's#^ref: refs/heads/\\(.*\\)\tHEAD#\\1#p'",
                                vars));
    std::string base = Trimmed(head);
    if (base.empty()) base = "main";
    for (auto& [key, value] : vars) {
      if (key == "BASE") value = base;
    }
  }

  // git checks a branch out in one worktree at a time, and a retried task
  // gets a fresh checkout.
  std::string stash;
  BUILDD_RETURN_IF_ERROR(FreeBranch(tree.cache_dir, work_branch, name, progress, &stash));
  if (Exists(tree.path)) {
    BUILDD_RETURN_IF_ERROR(RemoveWorktreeDir(tree.path, ""));
    if (progress) progress("cleanup", absl::StrCat("removed the earlier worktree ", name));
  }

  // Start from the local branch when it has commits the remote's lacks
  // (never pushed), else from the remote's branch, else from the base. A
  // local branch that is behind the remote's is just an older push.
  BUILDD_ASSIGN_OR_RETURN(
      std::string head,
      Git("set -e\n"
          "mkdir -p \"$(dirname \"$TREE\")\"\n"
          "here=\"refs/heads/$WORK\"; there=\"refs/remotes/origin/$WORK\"\n"
          "has() { git --git-dir=\"$CACHE\" rev-parse -q --verify \"$1\" >/dev/null; }\n"
          "if has \"$here\"; then\n"
          "  start=$here\n"
          "  if has \"$there\" && "
          "git --git-dir=\"$CACHE\" merge-base --is-ancestor \"$here\" \"$there\"; then\n"
          "    start=$there\n"
          "  fi\n"
          "elif has \"$there\"; then\n"
          "  start=$there\n"
          "else\n"
          "  start=\"refs/remotes/origin/$BASE\"\n"
          "fi\n"
          "git --git-dir=\"$CACHE\" worktree add -q -B \"$WORK\" \"$TREE\" \"$start\"\n"
          "git -C \"$TREE\" rev-parse HEAD\n",
          vars));
  tree.base_sha = Trimmed(head);
  Touch(tree.path);
  if (progress) progress("branch", absl::StrCat(work_branch, " at ", tree.base_sha.substr(0, 12)));
  if (!stash.empty()) BUILDD_RETURN_IF_ERROR(ApplyStash(tree, stash, carry_over, progress));
  return tree;
}

absl::Status GitWorkspace::FreeBranch(const std::string& cache_dir, const std::string& work_branch,
                                      const std::string& name, const Progress& progress,
                                      std::string* stash) {
  // Pruning first forgets worktrees whose directories are gone.
  BUILDD_ASSIGN_OR_RETURN(std::string list,
                          Git("set -e\n"
                              "git --git-dir=\"$CACHE\" worktree prune\n"
                              "git --git-dir=\"$CACHE\" worktree list --porcelain\n",
                              {{"CACHE", cache_dir}}));
  const std::string ref = absl::StrCat("branch refs/heads/", work_branch);
  std::string path, holder;
  for (absl::string_view line : absl::StrSplit(list, '\n')) {
    if (absl::ConsumePrefix(&line, "worktree ")) {
      path = std::string(line);
    } else if (line == ref) {
      holder = path;
    }
  }
  if (holder.empty()) return absl::OkStatus();

  std::error_code error;
  const fs::path held(holder);
  if (!fs::equivalent(held.parent_path(), WorktreesDir(), error)) {
    return absl::FailedPreconditionError(absl::StrCat("branch ", work_branch, " is checked out at ",
                                                      holder, ", outside this runner's worktrees"));
  }
  const std::string holder_name = held.filename();
  // Prepare has claimed `name` already.
  const bool own = holder_name == name;
  if (!own && !TryClaim(holder_name)) {
    return absl::FailedPreconditionError(absl::StrCat("branch ", work_branch,
                                                      " is checked out by worktree ", holder_name,
                                                      ", which is still in use"));
  }
  // What the holder's task left uncommitted is stashed, for the worktree
  // that continues the branch; a retry (own) starts afresh instead.
  if (!own) {
    absl::StatusOr<std::string> stashed =
        Git("set -e\n"
            "if [ -n \"$(git status --porcelain)\" ]; then\n"
            "  before=$(git rev-parse -q --verify refs/stash || true)\n"
            "  git stash push -q --include-untracked -m \"$MESSAGE\"\n"
            "  after=$(git rev-parse -q --verify refs/stash || true)\n"
            "  if [ \"$after\" != \"$before\" ]; then echo \"$after\"; fi\n"
            "fi\n",
            WithAuthor({{"MESSAGE", absl::StrCat("buildd: left uncommitted in worktree ", holder_name)}},
                       "buildd <buildd@localhost>"),
            holder);
    if (stashed.ok()) {
      *stash = Trimmed(*stashed);
    } else if (progress) {
      // Such as a merge left half done: the branch must not stay stuck.
      progress("cleanup", absl::StrCat("cannot keep the uncommitted changes of worktree ",
                                       holder_name, ": ", stashed.status().message()));
    }
  }
  absl::Status removed = RemoveWorktreeDir(holder, cache_dir);
  if (!own) Unclaim(holder_name);
  BUILDD_RETURN_IF_ERROR(removed);
  if (progress) {
    progress("cleanup",
             absl::StrCat("removed worktree ", holder_name, ", which held ", work_branch));
  }
  return absl::OkStatus();
}

absl::Status GitWorkspace::ApplyStash(const Worktree& tree, const std::string& stash,
                                      bool carry_over, const Progress& progress) {
  const auto kept = [&](const char* why) {
    if (progress) {
      progress("branch", absl::StrCat("the uncommitted changes of the earlier worktree of ",
                                      tree.branch, " are kept in stash ", stash.substr(0, 12),
                                      ": ", why));
    }
    return absl::OkStatus();
  };
  if (!carry_over) return kept("this task starts from the committed branch");
  // On the commit it was made from the stash applies cleanly; elsewhere (the
  // branch moved on at the remote) it waits in the stash list. A failed
  // apply leaves it there too.
  BUILDD_ASSIGN_OR_RETURN(
      std::string applied,
      Git("set -e\n"
          "[ \"$(git rev-parse HEAD)\" = \"$(git rev-parse \"$STASH^1\")\" ] || exit 0\n"
          "git stash apply -q \"$STASH\" >/dev/null\n"
          "entry=$(git stash list --format='%gd %H' | sed -n \"s/ $STASH\\$//p\" | head -n 1)\n"
          "if [ -n \"$entry\" ]; then git stash drop -q \"$entry\"; fi\n"
          "echo applied\n",
          {{"STASH", stash}}, tree.path));
  if (Trimmed(applied) != "applied") return kept("the branch has moved on since");
  if (progress) {
    progress("branch", absl::StrCat("carried over the uncommitted changes of the earlier "
                                    "worktree of ", tree.branch));
  }
  return absl::OkStatus();
}

absl::StatusOr<CommitResult> GitWorkspace::CommitAll(const Worktree& tree,
                                                     const std::string& message,
                                                     const std::string& author,
                                                     size_t max_patch_bytes,
                                                     const Progress& progress,
                                                     const GitControl& control) {
  ControlScope controlled(control);
  Vars vars = WithAuthor({{"MESSAGE", message}}, author);
  BUILDD_ASSIGN_OR_RETURN(std::string status,
                          Git("git add -A && git status --porcelain", vars, tree.path));
  CommitResult result;
  if (!Trimmed(status).empty()) {
    if (progress) progress("commit", message);
    BUILDD_ASSIGN_OR_RETURN(std::string sha,
                            Git("set -e\n"
                                "git commit -q --no-verify -m \"$MESSAGE\"\n"
                                "git rev-parse HEAD\n",
                                vars, tree.path));
    result.changed = true;
    result.sha = Trimmed(sha);
  }
  BUILDD_RETURN_IF_ERROR(DiffFrom(tree.path, tree.base_sha, max_patch_bytes, &result));
  return result;
}

absl::StatusOr<CommitResult> GitWorkspace::Revert(const Worktree& tree, const std::string& commit,
                                                  const std::string& author, size_t max_patch_bytes,
                                                  const Progress& progress,
                                                  const GitControl& control) {
  if (commit.empty()) return absl::InvalidArgumentError("no commit to revert");
  ControlScope controlled(control);
  Vars vars = WithAuthor({{"COMMIT", commit}}, author);
  // A full sha from here on: `commit` may be any revision, even one that
  // looks like an option.
  BUILDD_ASSIGN_OR_RETURN(
      std::string resolved,
      Git("git rev-parse -q --verify --end-of-options \"$COMMIT^{commit}\" || true", vars,
          tree.path));
  const std::string sha = Trimmed(resolved);
  if (sha.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown commit \"", commit, "\""));
  }
  vars.emplace_back("SHA", sha);
  if (!Git("git merge-base --is-ancestor \"$SHA\" HEAD", vars, tree.path).ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("commit ", commit, " is not on branch ", tree.branch));
  }
  BUILDD_ASSIGN_OR_RETURN(std::string dirty, Git("git status --porcelain", vars, tree.path));
  if (!Trimmed(dirty).empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot revert ", commit, ": the worktree of ", tree.branch, " has uncommitted changes"));
  }

  // Already reverted on the branch (a retry after a failed push, or the
  // same request twice), and that revert not reverted in turn: that commit
  // is the result.
  BUILDD_ASSIGN_OR_RETURN(
      std::string earlier,
      Git("r=$(git log -n 1 --format=%H -F --grep=\"This reverts commit $SHA.\" \"$SHA..HEAD\")\n"
          "if [ -n \"$r\" ] && [ -z \"$(git log -n 1 --format=%H -F "
          "--grep=\"This reverts commit $r.\" \"$r..HEAD\")\" ]; then echo \"$r\"; fi\n",
          vars, tree.path));
  if (!Trimmed(earlier).empty()) {
    CommitResult result;
    result.changed = true;
    result.sha = Trimmed(earlier);
    if (progress) {
      progress("revert", absl::StrCat(commit, " is already reverted on ", tree.branch, " by ",
                                      result.sha.substr(0, 12)));
    }
    BUILDD_RETURN_IF_ERROR(DiffFrom(tree.path, result.sha + "^", max_patch_bytes, &result,
                                    result.sha));
    return result;
  }

  if (progress) progress("revert", absl::StrCat(commit, " on ", tree.branch));
  auto reverted =
      Git("git revert --no-edit \"$SHA\"\n", vars, tree.path);
  if (!reverted.ok()) {
    // A conflicted revert stays in progress; abort it so the worktree is as
    // it was.
    auto conflicts =
        Git("conflicts=$(git diff --name-only --diff-filter=U)\n"
            "if git rev-parse -q --verify REVERT_HEAD >/dev/null; then git revert --abort; fi\n"
            "printf '%s' \"$conflicts\"\n",
            vars, tree.path);
    if (conflicts.ok() && !Trimmed(*conflicts).empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("reverting ", commit, " conflicts with later changes on ", tree.branch,
                       " (in ", absl::StrJoin(absl::StrSplit(Trimmed(*conflicts), '\n'), ", "),
                       "); the revert was aborted"));
    }
    return absl::Status(reverted.status().code(),
                        absl::StrCat("cannot revert ", commit, " on ", tree.branch, ": ",
                                     reverted.status().message()));
  }

  CommitResult result;
  result.changed = true;
  BUILDD_ASSIGN_OR_RETURN(std::string head, Git("git rev-parse HEAD", vars, tree.path));
  result.sha = Trimmed(head);
  BUILDD_RETURN_IF_ERROR(DiffFrom(tree.path, result.sha + "^", max_patch_bytes, &result));
  return result;
}

absl::Status GitWorkspace::Push(const Worktree& tree, const Progress& progress,
                                const GitControl& control) {
  ControlScope controlled(control);
  if (progress) progress("push", tree.branch);
  return Git("git push -q origin \"HEAD:refs/heads/$WORK\"", {{"WORK", tree.branch}}, tree.path)
      .status();
}

absl::Status GitWorkspace::Remove(const Worktree& tree) {
  absl::Status removed = RemoveWorktreeDir(tree.path, tree.cache_dir);
  Unclaim(tree.name);
  return removed;
}

void GitWorkspace::Release(const std::string& name) {
  Unclaim(name);
  if (IsPlainName(name)) Touch(absl::StrCat(WorktreesDir(), "/", name));
}

std::vector<std::string> GitWorkspace::CleanUp(const Progress& progress) {
  absl::MutexLock cleaning(&cleanup_mu_);
  std::vector<std::string> removed;
  auto disk_usage = [this] {
    return options_.disk_usage ? options_.disk_usage() : UsedDiskFraction(root_);
  };
  double usage = disk_usage();
  if (usage < options_.high_watermark) return removed;

  // Least recently used first: by mtime, then by name for a stable order.
  std::vector<std::tuple<time_t, long, std::string>> idle;
  std::error_code error;
  for (fs::directory_iterator it(WorktreesDir(), error), end; !error && it != end;
       it.increment(error)) {
    struct stat st;
    if (stat(it->path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    idle.emplace_back(st.st_mtim.tv_sec, st.st_mtim.tv_nsec, it->path().filename());
  }
  std::sort(idle.begin(), idle.end());

  for (const auto& [sec, nsec, name] : idle) {
    if (usage < options_.low_watermark) break;
    // Claimed while it is removed. A Prepare of the same name meanwhile
    // fails as in use.
    if (!TryClaim(name)) continue;
    absl::Status status = RemoveWorktreeDir(absl::StrCat(WorktreesDir(), "/", name), "");
    Unclaim(name);
    if (!status.ok()) {
      if (progress) {
        progress("cleanup", absl::StrCat("cannot remove worktree ", name, ": ", status.message()));
      }
      continue;
    }
    removed.push_back(name);
    if (progress) {
      progress("cleanup", absl::StrCat("removed idle worktree ", name, " (disk ",
                                       static_cast<int>(usage * 100), "% used)"));
    }
    usage = disk_usage();
  }
  return removed;
}

bool GitWorkspace::TryClaim(const std::string& name) {
  absl::MutexLock lock(&mu_);
  return in_use_.insert(name).second;
}

void GitWorkspace::Unclaim(const std::string& name) {
  absl::MutexLock lock(&mu_);
  in_use_.erase(name);
}

std::string GitWorkspace::WorktreesDir() const { return absl::StrCat(root_, "/worktrees"); }

}  // namespace buildd::runner
