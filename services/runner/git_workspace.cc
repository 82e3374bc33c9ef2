#include "services/runner/git_workspace.h"

#include <sodium.h>
#include <sys/stat.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/runner/process_group.h"

namespace buildd::runner {
namespace {

using Vars = std::vector<std::pair<std::string, std::string>>;

constexpr auto kGitTimeout = std::chrono::minutes(10);

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
  options.env.emplace_back("LC_ALL", "C");
  auto result = RunCommand(options, kGitTimeout);
  if (!result.ok()) return result.status();
  if (result->timed_out) return absl::DeadlineExceededError(absl::StrCat("git timed out: ", script));
  if (!result->status.success()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "git failed (", result->status.Describe(), "): ",
        result->stderr_text.empty() ? result->stdout_text : result->stderr_text));
  }
  return result->stdout_text;
}

std::string UrlHash(const std::string& url) {
  unsigned char hash[16];
  crypto_generichash(hash, sizeof hash, reinterpret_cast<const unsigned char*>(url.data()),
                     url.size(), nullptr, 0);
  char hex[sizeof hash * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
  return hex;
}

}  // namespace

absl::StatusOr<Worktree> GitWorkspace::Prepare(const std::string& repo_url,
                                               const std::string& base_branch,
                                               const std::string& work_branch,
                                               const std::string& name, const Progress& progress) {
  if (repo_url.empty()) return absl::InvalidArgumentError("the workspace has no repoUrl");
  if (work_branch.empty()) return absl::InvalidArgumentError("the task has no work branch");
  Worktree tree;
  tree.cache_dir = absl::StrCat(root_, "/cache/", UrlHash(repo_url), ".git");
  tree.path = absl::StrCat(root_, "/worktrees/", name);
  tree.branch = work_branch;
  Vars vars = {{"CACHE", tree.cache_dir}, {"URL", repo_url}, {"TREE", tree.path},
               {"WORK", work_branch}, {"BASE", base_branch}};

  struct stat st;
  const bool cached = stat(tree.cache_dir.c_str(), &st) == 0;
  if (progress) progress(cached ? "fetch" : "clone", repo_url);
  auto fetched = Git(
      "set -e\n"
      "if [ ! -d \"$CACHE\" ]; then\n"
      "  mkdir -p \"$CACHE\"\n"
      "  git init -q --bare \"$CACHE\"\n"
      "  git --git-dir=\"$CACHE\" remote add origin \"$URL\"\n"
      "fi\n"
      "git --git-dir=\"$CACHE\" fetch -q --prune origin '+refs/heads/*:refs/remotes/origin/*'\n",
      vars);
  if (!fetched.ok()) return fetched.status();

  // The base: the given branch, else the remote's default (HEAD).
  std::string base = base_branch;
  if (base.empty()) {
    auto head = Git("git ls-remote --symref \"$URL\" HEAD | sed -n 's#^ref: refs/heads/\\(.*\\)\tHEAD#\\1#p'",
                    vars);
    if (!head.ok()) return head.status();
    base = std::string(absl::StripAsciiWhitespace(*head));
    if (base.empty()) base = "main";
    for (auto& [key, value] : vars) {
      if (key == "BASE") value = base;
    }
  }
  // Continue the remote's work branch when it exists, else branch off base.
  auto added = Git(
      "set -e\n"
      "mkdir -p \"$(dirname \"$TREE\")\"\n"
      "if git --git-dir=\"$CACHE\" rev-parse -q --verify \"refs/remotes/origin/$WORK\" >/dev/null; then\n"
      "  start=\"refs/remotes/origin/$WORK\"\n"
      "else\n"
      "  start=\"refs/remotes/origin/$BASE\"\n"
      "fi\n"
      "git --git-dir=\"$CACHE\" worktree add -q -B \"$WORK\" \"$TREE\" \"$start\"\n"
      "git -C \"$TREE\" rev-parse HEAD\n",
      vars);
  if (!added.ok()) return added.status();
  tree.base_sha = std::string(absl::StripAsciiWhitespace(*added));
  if (progress) progress("branch", absl::StrCat(work_branch, " at ", tree.base_sha.substr(0, 12)));
  return tree;
}

absl::StatusOr<CommitResult> GitWorkspace::CommitAll(const Worktree& tree,
                                                     const std::string& message,
                                                     const std::string& author,
                                                     size_t max_patch_bytes,
                                                     const Progress& progress) {
  Vars vars = {{"MESSAGE", message}, {"AUTHOR", author}, {"BASE_SHA", tree.base_sha}};
  auto status = Git("git add -A && git status --porcelain", vars, tree.path);
  if (!status.ok()) return status.status();
  CommitResult result;
  if (!absl::StripAsciiWhitespace(*status).empty()) {
    if (progress) progress("commit", message);
    // Committer = author, so no global git identity is needed.
    auto sha = Git(
        "set -e\n"
        "name=${AUTHOR%% <*}; email=${AUTHOR##*<}; email=${email%>}\n"
        "GIT_AUTHOR_NAME=\"$name\" GIT_AUTHOR_EMAIL=\"$email\" "
        "GIT_COMMITTER_NAME=\"$name\" GIT_COMMITTER_EMAIL=\"$email\" "
        "git commit -q --no-verify -m \"$MESSAGE\"\n"
        "git rev-parse HEAD\n",
        vars, tree.path);
    if (!sha.ok()) return sha.status();
    result.changed = true;
    result.sha = std::string(absl::StripAsciiWhitespace(*sha));
  }
  auto stat = Git("git diff --stat \"$BASE_SHA\" HEAD", vars, tree.path);
  if (!stat.ok()) return stat.status();
  result.diff_stat = *stat;
  auto patch = Git("git diff \"$BASE_SHA\" HEAD", vars, tree.path);
  if (!patch.ok()) return patch.status();
  result.patch = *patch;
  if (result.patch.size() > max_patch_bytes) {
    result.patch.resize(max_patch_bytes);
    result.patch_truncated = true;
  }
  return result;
}

absl::Status GitWorkspace::Push(const Worktree& tree, const Progress& progress) {
  if (progress) progress("push", tree.branch);
  return Git("git push -q origin \"HEAD:refs/heads/$WORK\"", {{"WORK", tree.branch}}, tree.path)
      .status();
}

absl::Status GitWorkspace::Remove(const Worktree& tree) {
  return Git("git --git-dir=\"$CACHE\" worktree remove --force \"$TREE\"",
             {{"CACHE", tree.cache_dir}, {"TREE", tree.path}})
      .status();
}

}  // namespace buildd::runner
