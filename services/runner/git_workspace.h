#ifndef BUILDD_SERVICES_RUNNER_GIT_WORKSPACE_H_
#define BUILDD_SERVICES_RUNNER_GIT_WORKSPACE_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace buildd::runner {

// A task's checkout: a git worktree on its own branch.
struct Worktree {
  std::string name;  // the directory's name under worktrees/
  std::string path;
  std::string cache_dir;  // the repository's shared bare cache
  std::string branch;
  std::string base_sha;  // the commit the branch started from
};

struct CommitResult {
  bool changed = false;
  std::string sha;
  std::string diff_stat;  // `git diff --stat` against the base
  std::string patch;      // the diff against the base, cut at `max_patch_bytes`
  bool patch_truncated = false;
};

struct GitWorkspaceOptions {
  // Clean-up starts when the used fraction of the disk holding the root
  // reaches `high_watermark` and removes worktrees until it is below
  // `low_watermark`.
  double high_watermark = 0.85;
  double low_watermark = 0.70;
  // The used fraction (0..1) of the disk holding the root; empty means
  // UsedDiskFraction(root).
  std::function<double()> disk_usage;
};

// The used fraction of the file system holding `path` as an unprivileged
// process sees it (1 - available / total blocks); 0 when it cannot be read.
double UsedDiskFraction(const std::string& path);

// What may stop a task's git commands early: a file descriptor that
// becomes readable (cancel) and the task's deadline. They then fail with
// Cancelled or DeadlineExceeded.
struct GitControl {
  int cancel_fd = -1;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // The task's GIT_TOKEN: git's credential helper answers with it (user
  // x-access-token) when the repository's host asks for a password. It
  // reaches git's environment only, never a URL, a command line or a
  // message.
  std::string token{};
  // The host (and port, when the URL names one) the token is for, as git's
  // credential protocol names it (TokenHostOf); another host, e.g. one a
  // redirect leads to, gets nothing.
  std::string token_host{};
};

// Git checkouts for tasks under `root`: one bare cache per workspace and
// repository (cache/<hash of both>.git, fetched, never re-cloned) and one worktree
// per task (worktrees/<name>) on the task's work branch, so tasks of one
// repository run side by side. Every value that comes from a task (URL,
// branch names, messages, commits) reaches git through the environment,
// never through shell text.
//
// A worktree is in use from Prepare until Release (or Remove). Idle
// worktrees are kept for inspection and removed least recently used first
// (by the directory's mtime, set at Prepare and Release) once the disk fills
// up; see CleanUp.
//
// Thread-safe for different repositories and for the in-use bookkeeping;
// git calls on one repository are serialised only by git's own locks.
// `url` without the user and password of its authority
// ("https://me:token@host/x" → "https://***@host/x"), for messages.
std::string RedactUrl(const std::string& url);

// The host[:port] of `url` the way git's credential helpers receive it
// ("https://u@h:8443/x" → "h:8443"); "" for a URL without one.
std::string TokenHostOf(const std::string& url);

class GitWorkspace {
 public:
  // (stage, message): "cleanup", "fetch", "clone", "branch", "commit",
  // "revert", "push".
  using Progress = std::function<void(const std::string& stage, const std::string& message)>;

  explicit GitWorkspace(std::string root, GitWorkspaceOptions options = {});

  // Fetches the repository into its cache (cloning the first time) and adds
  // a worktree named `name` on `work_branch`, marked in use. The branch
  // starts from:
  //   - the cache's local branch of that name when it has commits the
  //     remote's branch lacks (an earlier task here committed without
  //     pushing), or when the remote has no such branch;
  //   - else the remote's branch (a continued task, maybe from another
  //     runner), which then contains any local branch;
  //   - else a new branch from `base_branch` (the remote's default branch
  //     when empty).
  // An idle worktree still holding `work_branch`, and an idle earlier
  // worktree called `name` (a retried task), are removed first. What the
  // former left uncommitted is carried over to the new worktree when that
  // starts on the same commit and `carry_over` is set, else kept as a stash
  // entry of the cache (`git stash list`); a retried task starts afresh.
  // Runs CleanUp before adding the worktree.
  // Fails with FailedPrecondition when `name`, or the worktree holding
  // `work_branch`, is in use; InvalidArgument for an empty URL or branch or
  // a `name` that is not a single path component.
  absl::StatusOr<Worktree> Prepare(const std::string& workspace_id, const std::string& repo_url,
                                   const std::string& base_branch,
                                   const std::string& work_branch, const std::string& name,
                                   const Progress& progress, bool carry_over = true,
                                   const GitControl& control = {});

  // Commits every change in the worktree (author `author`, "Name <email>");
  // changed=false and no commit when there is nothing to commit.
  absl::StatusOr<CommitResult> CommitAll(const Worktree& tree, const std::string& message,
                                         const std::string& author, size_t max_patch_bytes,
                                         const Progress& progress, const GitControl& control = {});

  // Commits the revert of `commit` (a sha or any revision naming a commit
  // reachable from the worktree's branch) on the branch, as `author`. The
  // result's diff stat and patch are those of the revert commit alone.
  // InvalidArgument when `commit` names no commit; FailedPrecondition when
  // it is not on the branch, the worktree has uncommitted changes, or the
  // revert conflicts with later changes (the revert is then aborted,
  // leaving the worktree as it was). When the branch already holds a revert
  // of `commit` that was not reverted in turn (a retry after a failed push),
  // that commit is the result and no new one is made.
  absl::StatusOr<CommitResult> Revert(const Worktree& tree, const std::string& commit,
                                      const std::string& author, size_t max_patch_bytes,
                                      const Progress& progress, const GitControl& control = {});

  // Pushes the work branch to the repository's remote.
  absl::Status Push(const Worktree& tree, const Progress& progress,
                    const GitControl& control = {});

  // Removes the worktree and its metadata in the cache (its branch stays in
  // the cache) and releases its name.
  absl::Status Remove(const Worktree& tree);

  // Marks the worktree idle and records now as its last use.
  void Release(const std::string& name);

  // When the disk usage is at or above the high watermark, removes idle
  // worktrees, least recently used first, until it is below the low
  // watermark or none is left. Reports each removal as "cleanup" progress
  // and returns the removed names in order.
  std::vector<std::string> CleanUp(const Progress& progress = nullptr);

 private:
  // Marks `name` in use unless it already is; true when it was marked.
  bool TryClaim(const std::string& name);
  void Unclaim(const std::string& name);
  absl::StatusOr<Worktree> AddWorktree(const std::string& workspace_id, const std::string& repo_url,
                                       const std::string& base_branch,
                                       const std::string& work_branch, const std::string& name,
                                       const Progress& progress, bool carry_over);
  // Frees `work_branch` in `cache_dir` when an idle worktree other than
  // `name` holds it. What that worktree left uncommitted goes into a stash
  // entry whose sha is put in `stash` ("" when there was nothing).
  absl::Status FreeBranch(const std::string& cache_dir, const std::string& work_branch,
                          const std::string& name, const Progress& progress,
                          std::string* stash);
  // Applies `stash` to `tree` (and drops it) when `carry_over` and the tree
  // is on the commit it was made from; else leaves it in the stash list.
  absl::Status ApplyStash(const Worktree& tree, const std::string& stash, bool carry_over,
                          const Progress& progress);
  std::string WorktreesDir() const;

  const std::string root_;
  const GitWorkspaceOptions options_;

  // Held across a whole CleanUp, so that two of them do not both remove
  // worktrees for the same shortage.
  absl::Mutex& RepoLock(const std::string& cache_dir);

  absl::Mutex cleanup_mu_;
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> in_use_ ABSL_GUARDED_BY(mu_);
  // One per repository cache; never removed (a handful per runner).
  std::map<std::string, std::unique_ptr<absl::Mutex>> repo_locks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_GIT_WORKSPACE_H_
