#ifndef BUILDD_SERVICES_RUNNER_GIT_WORKSPACE_H_
#define BUILDD_SERVICES_RUNNER_GIT_WORKSPACE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace buildd::runner {

// A task's checkout: a git worktree on its own branch.
struct Worktree {
  std::string path;
  std::string cache_dir;  // the repository's shared bare cache
  std::string branch;
  std::string base_sha;   // the commit the branch started from
};

struct CommitResult {
  bool changed = false;
  std::string sha;
  std::string diff_stat;  // `git diff --stat` against the base
  std::string patch;      // the diff against the base, cut at `max_patch_bytes`
  bool patch_truncated = false;
};

// Git checkouts for tasks under `root`: one bare cache per repository
// (cache/<hash of the URL>.git, fetched, never re-cloned) and one worktree
// per task (worktrees/<name>) on the task's work branch, so tasks of one
// repository run side by side. Every value that comes from a task (URL,
// branch names, messages) reaches git through the environment, never through
// shell text. Thread-safe for different repositories; calls on one
// repository are serialised by git's own locks.
class GitWorkspace {
 public:
  // (stage, message): "fetch", "clone", "branch", "commit", "push".
  using Progress = std::function<void(const std::string& stage, const std::string& message)>;

  explicit GitWorkspace(std::string root) : root_(std::move(root)) {}

  // Fetches the repository into its cache (cloning the first time) and adds
  // a worktree named `name` on `work_branch`: the remote's branch of that
  // name when it exists (a continued task), else a new branch from
  // `base_branch` (the remote's default branch when empty).
  absl::StatusOr<Worktree> Prepare(const std::string& repo_url, const std::string& base_branch,
                                   const std::string& work_branch, const std::string& name,
                                   const Progress& progress);

  // Commits every change in the worktree (author `author`, "Name <email>");
  // changed=false and no commit when there is nothing to commit.
  absl::StatusOr<CommitResult> CommitAll(const Worktree& tree, const std::string& message,
                                         const std::string& author, size_t max_patch_bytes,
                                         const Progress& progress);

  // Pushes the work branch to the repository's remote.
  absl::Status Push(const Worktree& tree, const Progress& progress);

  // Removes the worktree (its branch stays in the cache).
  absl::Status Remove(const Worktree& tree);

 private:
  std::string root_;
};

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_GIT_WORKSPACE_H_
