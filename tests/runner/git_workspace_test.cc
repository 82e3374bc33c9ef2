#include "services/runner/git_workspace.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/runner/process_group.h"
#include "tests/testing/files.h"
#include "tests/testing/matchers.h"

namespace buildd::runner {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::ReadFile;
using ::buildd::testing::Sh;
using ::buildd::testing::WriteFile;
using ::buildd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kAuthor[] = "buildd bot <bot@buildd.dev>";

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

class GitWorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/buildd-git-XXXXXX";
    dir_ = mkdtemp(tmpl);
    remote_ = dir_ + "/remote.git";
    // A bare "remote" with one commit on main, reached by file://.
    Sh(absl::StrCat("set -e; git init -q --bare -b main ", remote_, "; git clone -q ", remote_, " ",
                    dir_, "/seed 2>/dev/null; cd ", dir_,
                    "/seed; echo one > README.md; git add .;"
                    " git -c user.name=t -c user.email=t@t commit -q -m init;"
                    " git push -q origin HEAD:main"));
    url_ = "file://" + remote_;
  }
  void TearDown() override { Sh("rm -rf " + dir_); }

  // A runner's workspace under dir_/<root> on a disk that is as full as
  // disk_base_ plus a tenth for each of its worktrees.
  GitWorkspace Workspace(const std::string& root = "runner") {
    GitWorkspaceOptions options;
    const std::string worktrees = absl::StrCat(dir_, "/", root, "/worktrees");
    options.disk_usage = [this, worktrees] {
      std::error_code error;
      int count = 0;
      for (std::filesystem::directory_iterator it(worktrees, error), end; !error && it != end;
           it.increment(error)) {
        ++count;
      }
      return disk_base_ + 0.1 * count;
    };
    return GitWorkspace(absl::StrCat(dir_, "/", root), std::move(options));
  }

  // The worktrees the cache of `tree`'s repository knows.
  std::string CacheWorktrees(const Worktree& tree) {
    return Sh("git --git-dir=" + tree.cache_dir + " worktree list --porcelain");
  }

  // Sets the last use of worktree `name` of the default runner.
  void SetLastUse(const std::string& name, const std::string& date) {
    Sh(absl::StrCat("touch -d '", date, "' ", dir_, "/runner/worktrees/", name));
  }

  // Another runner (its own workspace) commits `content` to `file` on
  // `branch` and pushes it; the commit.
  CommitResult PushFromAnotherRunner(const std::string& branch, const std::string& file,
                                     const std::string& content) {
    GitWorkspace there = Workspace("other-runner");
    auto tree = there.Prepare("ws1", url_, "main", branch, "elsewhere", nullptr);
    EXPECT_TRUE(tree.ok()) << tree.status();
    if (!tree.ok()) return {};
    WriteFile(tree->path + "/" + file, content);
    auto commit = there.CommitAll(*tree, "elsewhere", kAuthor, 1000, nullptr);
    EXPECT_TRUE(commit.ok()) << commit.status();
    EXPECT_THAT(there.Push(*tree, nullptr), IsOk());
    there.Release("elsewhere");
    return commit.ok() ? *commit : CommitResult{};
  }

  // Worktree "t1" of `ws` on `branch` with one commit that changes
  // README.md from "one" to "two": the commit.
  CommitResult BreakTheReadme(GitWorkspace& ws, const std::string& branch, Worktree* tree) {
    auto prepared = ws.Prepare("ws1", url_, "main", branch, "t1", nullptr);
    EXPECT_TRUE(prepared.ok()) << prepared.status();
    if (!prepared.ok()) return {};
    *tree = *prepared;
    WriteFile(tree->path + "/README.md", "two\n");
    auto bad = ws.CommitAll(*tree, "Break the readme", kAuthor, 1 << 20, nullptr);
    EXPECT_TRUE(bad.ok()) << bad.status();
    return bad.ok() ? *bad : CommitResult{};
  }

  std::string dir_, remote_, url_;
  double disk_base_ = 0;
};

TEST_F(GitWorkspaceTest, TwoTasksOfOneRepositoryGetSeparateWorktreesAndOneCache) {
  GitWorkspace ws = Workspace();
  std::vector<std::string> stages;
  auto progress = [&](const std::string& stage, const std::string&) { stages.push_back(stage); };
  auto a = ws.Prepare("ws1", url_, "main", "buildd/aaaa", "task-a", progress);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = ws.Prepare("ws1", url_, "", "buildd/bbbb", "task-b", progress);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->cache_dir, b->cache_dir);
  EXPECT_NE(a->path, b->path);
  EXPECT_EQ(a->name, "task-a");
  EXPECT_THAT(stages, ElementsAre("clone", "branch", "fetch", "branch"));
  EXPECT_TRUE(Exists(a->path + "/README.md"));
  WriteFile(a->path + "/a.txt", "from a\n");
  WriteFile(b->path + "/b.txt", "from b\n");
  EXPECT_FALSE(Exists(a->path + "/b.txt"));
  EXPECT_EQ(Sh("git -C " + a->path + " rev-parse --abbrev-ref HEAD"), "buildd/aaaa");
}

TEST_F(GitWorkspaceTest, CommitsEverythingAndPushesTheBranchToTheRemote) {
  GitWorkspace ws = Workspace();
  auto tree = ws.Prepare("ws1", url_, "main", "buildd/1234", "t1", nullptr);
  ASSERT_TRUE(tree.ok()) << tree.status();
  WriteFile(tree->path + "/hello.txt", "hi\n");
  WriteFile(tree->path + "/README.md", "two\n");
  auto commit = ws.CommitAll(*tree, "Say hello", kAuthor, 1 << 20, nullptr);
  ASSERT_TRUE(commit.ok()) << commit.status();
  EXPECT_TRUE(commit->changed);
  EXPECT_EQ(commit->sha.size(), 40u);
  EXPECT_THAT(commit->diff_stat, HasSubstr("hello.txt"));
  EXPECT_THAT(commit->patch, HasSubstr("+hi"));
  ASSERT_TRUE(ws.Push(*tree, nullptr).ok());
  EXPECT_EQ(Sh("git --git-dir=" + remote_ + " rev-parse buildd/1234"), commit->sha);
  EXPECT_EQ(Sh("git --git-dir=" + remote_ + " log -1 --format='%an <%ae>|%s' buildd/1234"),
            "buildd bot <bot@buildd.dev>|Say hello");
  EXPECT_EQ(Sh("git --git-dir=" + remote_ + " show buildd/1234:hello.txt"), "hi");
}

TEST_F(GitWorkspaceTest, NothingChangedMeansNoCommit) {
  GitWorkspace ws = Workspace();
  auto tree = ws.Prepare("ws1", url_, "main", "buildd/none", "t2", nullptr);
  ASSERT_TRUE(tree.ok()) << tree.status();
  auto commit = ws.CommitAll(*tree, "nothing", "b <b@b>", 1000, nullptr);
  ASSERT_TRUE(commit.ok()) << commit.status();
  EXPECT_FALSE(commit->changed);
  EXPECT_EQ(Sh("git -C " + tree->path + " rev-parse HEAD"), tree->base_sha);
}

TEST_F(GitWorkspaceTest, APushedWorkBranchIsContinuedOnAnotherRunner) {
  GitWorkspace ws = Workspace();
  auto first = ws.Prepare("ws1", url_, "main", "buildd/cont", "t3", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->path + "/step1.txt", "1\n");
  auto c1 = ws.CommitAll(*first, "step 1", "b <b@b>", 1000, nullptr);
  ASSERT_TRUE(c1.ok());
  ASSERT_TRUE(ws.Push(*first, nullptr).ok());
  ASSERT_THAT(ws.Remove(*first), IsOk());
  EXPECT_FALSE(Exists(first->path));
  EXPECT_THAT(CacheWorktrees(*first), Not(HasSubstr("t3")));

  GitWorkspace other = Workspace("other-runner");
  auto second = other.Prepare("ws1", url_, "main", "buildd/cont", "t4", nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->base_sha, c1->sha);
  EXPECT_TRUE(Exists(second->path + "/step1.txt"));
}

TEST_F(GitWorkspaceTest, AnUnpushedLocalBranchIsContinued) {
  GitWorkspace ws = Workspace();
  auto first = ws.Prepare("ws1", url_, "main", "buildd/local", "t1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->path + "/local.txt", "not pushed\n");
  auto c1 = ws.CommitAll(*first, "local work", kAuthor, 1000, nullptr);
  ASSERT_TRUE(c1.ok());
  ASSERT_THAT(ws.Remove(*first), IsOk());

  auto second = ws.Prepare("ws1", url_, "main", "buildd/local", "t2", nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->base_sha, c1->sha);
  EXPECT_EQ(ReadFile(second->path + "/local.txt"), "not pushed\n");
  EXPECT_EQ(Sh("git --git-dir=" + remote_ + " branch --list buildd/local"), "");
}

TEST_F(GitWorkspaceTest, TheRemoteBranchWinsOverALocalBranchThatIsBehindIt) {
  GitWorkspace here = Workspace();
  auto first = here.Prepare("ws1", url_, "main", "buildd/shared", "t1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->path + "/one.txt", "1\n");
  ASSERT_TRUE(here.CommitAll(*first, "one", kAuthor, 1000, nullptr).ok());
  ASSERT_THAT(here.Push(*first, nullptr), IsOk());
  ASSERT_THAT(here.Remove(*first), IsOk());

  // Another runner moves the branch on.
  const CommitResult two = PushFromAnotherRunner("buildd/shared", "two.txt", "2\n");

  auto again = here.Prepare("ws1", url_, "main", "buildd/shared", "t3", nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->base_sha, two.sha);
  EXPECT_TRUE(Exists(again->path + "/two.txt"));
}

TEST_F(GitWorkspaceTest, UnpushedLocalCommitsWinOverTheRemoteBranch) {
  GitWorkspace ws = Workspace();
  auto first = ws.Prepare("ws1", url_, "main", "buildd/ahead", "t1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->path + "/pushed.txt", "1\n");
  ASSERT_TRUE(ws.CommitAll(*first, "pushed", kAuthor, 1000, nullptr).ok());
  ASSERT_THAT(ws.Push(*first, nullptr), IsOk());
  WriteFile(first->path + "/unpushed.txt", "2\n");
  auto unpushed = ws.CommitAll(*first, "unpushed", kAuthor, 1000, nullptr);
  ASSERT_TRUE(unpushed.ok());
  ASSERT_THAT(ws.Remove(*first), IsOk());

  auto second = ws.Prepare("ws1", url_, "main", "buildd/ahead", "t2", nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->base_sha, unpushed->sha);
  EXPECT_TRUE(Exists(second->path + "/unpushed.txt"));
}

TEST_F(GitWorkspaceTest, ABranchHeldByAFinishedTasksWorktreeIsTakenOver) {
  GitWorkspace ws = Workspace();
  auto first = ws.Prepare("ws1", url_, "main", "buildd/held", "t1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->path + "/first.txt", "1\n");
  auto c1 = ws.CommitAll(*first, "first", kAuthor, 1000, nullptr);
  ASSERT_TRUE(c1.ok());
  ws.Release("t1");

  std::vector<std::string> stages;
  auto progress = [&](const std::string& stage, const std::string&) { stages.push_back(stage); };
  auto second = ws.Prepare("ws1", url_, "main", "buildd/held", "t2", progress);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->base_sha, c1->sha);
  EXPECT_TRUE(Exists(second->path + "/first.txt"));
  EXPECT_FALSE(Exists(first->path));
  EXPECT_THAT(CacheWorktrees(*second), Not(HasSubstr(first->path)));
  EXPECT_THAT(stages, Contains("cleanup"));
}

TEST_F(GitWorkspaceTest, WhatAnEarlierTaskLeftUncommittedIsCarriedOver) {
  GitWorkspace ws = Workspace();
  auto first = ws.Prepare("ws1", url_, "main", "buildd/carry", "t1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->path + "/README.md", "edited\n");
  WriteFile(first->path + "/new.txt", "untracked\n");
  ws.Release("t1");

  std::vector<std::string> messages;
  auto progress = [&](const std::string&, const std::string& m) { messages.push_back(m); };
  auto second = ws.Prepare("ws1", url_, "main", "buildd/carry", "t2", progress);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(ReadFile(second->path + "/README.md"), "edited\n");
  EXPECT_EQ(ReadFile(second->path + "/new.txt"), "untracked\n");
  EXPECT_FALSE(Exists(first->path));
  EXPECT_THAT(messages, Contains(HasSubstr("carried over the uncommitted changes")));
  EXPECT_EQ(Sh("git -C " + second->path + " stash list"), "") << "the stash entry is dropped";
  // They are committed with the second task's work.
  auto commit = ws.CommitAll(*second, "both", kAuthor, 10000, nullptr);
  ASSERT_TRUE(commit.ok()) << commit.status();
  EXPECT_THAT(commit->diff_stat, HasSubstr("new.txt"));
  EXPECT_THAT(commit->diff_stat, HasSubstr("README.md"));
}

TEST_F(GitWorkspaceTest, UncommittedChangesOnABranchThatMovedOnAreKeptInTheStash) {
  GitWorkspace here = Workspace();
  auto first = here.Prepare("ws1", url_, "main", "buildd/moved", "t1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->path + "/README.md", "mine\n");
  here.Release("t1");

  // Another runner pushes the branch on meanwhile.
  const CommitResult theirs = PushFromAnotherRunner("buildd/moved", "README.md", "theirs\n");

  std::vector<std::string> messages;
  auto progress = [&](const std::string&, const std::string& m) { messages.push_back(m); };
  auto second = here.Prepare("ws1", url_, "main", "buildd/moved", "t2", progress);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->base_sha, theirs.sha);
  EXPECT_EQ(ReadFile(second->path + "/README.md"), "theirs\n");
  EXPECT_EQ(Sh("git -C " + second->path + " status --porcelain"), "") << "a clean start";
  EXPECT_THAT(messages, Contains(HasSubstr("are kept in stash")));
  // Nothing is lost: the stash holds the edit.
  EXPECT_THAT(Sh("git -C " + second->path + " stash show -p stash@{0}"), HasSubstr("+mine"));
}

TEST_F(GitWorkspaceTest, ABranchHeldByAWorktreeInUseIsRefused) {
  GitWorkspace ws = Workspace();
  auto first = ws.Prepare("ws1", url_, "main", "buildd/busy", "t1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();

  auto second = ws.Prepare("ws1", url_, "main", "buildd/busy", "t2", nullptr);
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("buildd/busy"));
  EXPECT_TRUE(Exists(first->path + "/README.md"));
  EXPECT_FALSE(Exists(dir_ + "/runner/worktrees/t2"));

  // Once the first task is over its branch can move on.
  ws.Release("t1");
  EXPECT_THAT(ws.Prepare("ws1", url_, "main", "buildd/busy", "t2", nullptr), IsOk());
}

TEST_F(GitWorkspaceTest, ARetriedTaskGetsAFreshWorktree) {
  GitWorkspace ws = Workspace();
  auto first = ws.Prepare("ws1", url_, "main", "buildd/retry", "t1", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteFile(first->path + "/leftover.txt", "half done\n");
  EXPECT_THAT(ws.Prepare("ws1", url_, "main", "buildd/retry", "t1", nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(Exists(first->path + "/leftover.txt"));
  ws.Release("t1");

  auto retried = ws.Prepare("ws1", url_, "main", "buildd/retry", "t1", nullptr);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_FALSE(Exists(retried->path + "/leftover.txt"));
  EXPECT_TRUE(Exists(retried->path + "/README.md"));
  ws.Release("t1");

  // Also when the retry works on another branch.
  auto moved = ws.Prepare("ws1", url_, "main", "buildd/retry-2", "t1", nullptr);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(Sh("git -C " + moved->path + " rev-parse --abbrev-ref HEAD"), "buildd/retry-2");
}

TEST_F(GitWorkspaceTest, RevertUndoesACommitWithANewCommitOnTheBranch) {
  GitWorkspace ws = Workspace();
  Worktree tree;
  const CommitResult bad = BreakTheReadme(ws, "buildd/revert", &tree);
  ASSERT_FALSE(HasFailure());
  WriteFile(tree.path + "/later.txt", "later\n");
  auto later = ws.CommitAll(tree, "Later work", kAuthor, 1 << 20, nullptr);
  ASSERT_TRUE(later.ok());

  std::vector<std::string> stages;
  auto progress = [&](const std::string& stage, const std::string&) { stages.push_back(stage); };
  auto revert = ws.Revert(tree, bad.sha, "reverter <r@buildd.dev>", 1 << 20, progress);
  ASSERT_TRUE(revert.ok()) << revert.status();
  EXPECT_TRUE(revert->changed);
  EXPECT_EQ(revert->sha.size(), 40u);
  EXPECT_EQ(Sh("git -C " + tree.path + " rev-parse HEAD"), revert->sha);
  EXPECT_EQ(Sh("git -C " + tree.path + " rev-parse HEAD^"), later->sha);
  EXPECT_EQ(ReadFile(tree.path + "/README.md"), "one\n");
  EXPECT_TRUE(Exists(tree.path + "/later.txt"));
  EXPECT_THAT(revert->diff_stat, AllOf(HasSubstr("README.md"), Not(HasSubstr("later.txt"))));
  EXPECT_THAT(revert->patch, AllOf(HasSubstr("-two"), HasSubstr("+one")));
  EXPECT_THAT(stages, ElementsAre("revert"));
  EXPECT_EQ(Sh("git -C " + tree.path + " log -1 --format='%an <%ae>|%cn|%s'"),
            "reverter <r@buildd.dev>|reverter|Revert \"Break the readme\"");

  ASSERT_THAT(ws.Push(tree, nullptr), IsOk());
  EXPECT_EQ(Sh("git --git-dir=" + remote_ + " rev-parse buildd/revert"), revert->sha);
  EXPECT_EQ(Sh("git --git-dir=" + remote_ + " show buildd/revert:README.md"), "one");
}

TEST_F(GitWorkspaceTest, ARevertRetriedAfterAFailedPushFindsTheRevertAndPushesIt) {
  GitWorkspace ws = Workspace();
  Worktree tree;
  const CommitResult bad = BreakTheReadme(ws, "buildd/again", &tree);
  ASSERT_FALSE(HasFailure());
  ASSERT_THAT(ws.Push(tree, nullptr), IsOk());
  auto first = ws.Revert(tree, bad.sha, kAuthor, 1 << 20, nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  ws.Release("t1");  // its push failed: the revert is only here

  auto retry = ws.Prepare("ws1", url_, "main", "buildd/again", "t2", nullptr);
  ASSERT_TRUE(retry.ok()) << retry.status();
  std::vector<std::string> messages;
  auto progress = [&](const std::string&, const std::string& m) { messages.push_back(m); };
  auto again = ws.Revert(*retry, bad.sha, kAuthor, 1 << 20, progress);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->sha, first->sha) << "no second revert commit";
  EXPECT_TRUE(again->changed);
  EXPECT_THAT(again->patch, AllOf(HasSubstr("-two"), HasSubstr("+one")));
  EXPECT_THAT(messages, ElementsAre(HasSubstr("already reverted")));
  ASSERT_THAT(ws.Push(*retry, nullptr), IsOk());
  EXPECT_EQ(Sh("git --git-dir=" + remote_ + " rev-parse buildd/again"), first->sha);

  // Once that revert is reverted in turn, the commit can be reverted again.
  auto undo = ws.Revert(*retry, first->sha, kAuthor, 1 << 20, nullptr);
  ASSERT_TRUE(undo.ok()) << undo.status();
  EXPECT_EQ(ReadFile(retry->path + "/README.md"), "two\n");
  auto third = ws.Revert(*retry, bad.sha, kAuthor, 1 << 20, nullptr);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_NE(third->sha, first->sha);
  EXPECT_EQ(ReadFile(retry->path + "/README.md"), "one\n");
}

TEST_F(GitWorkspaceTest, ARevertStartsFromTheCommittedBranchAndKeepsLeftoversInTheStash) {
  GitWorkspace ws = Workspace();
  Worktree tree;
  const CommitResult bad = BreakTheReadme(ws, "buildd/leftovers", &tree);
  ASSERT_FALSE(HasFailure());
  WriteFile(tree.path + "/half-done.txt", "left behind\n");
  ws.Release("t1");

  std::vector<std::string> messages;
  auto progress = [&](const std::string&, const std::string& m) { messages.push_back(m); };
  auto revert_tree = ws.Prepare("ws1", url_, "main", "buildd/leftovers", "t2", progress,
                                /*carry_over=*/false);
  ASSERT_TRUE(revert_tree.ok()) << revert_tree.status();
  EXPECT_FALSE(Exists(revert_tree->path + "/half-done.txt"));
  EXPECT_THAT(messages, Contains(HasSubstr("are kept in stash")));
  auto reverted = ws.Revert(*revert_tree, bad.sha, kAuthor, 1 << 20, nullptr);
  ASSERT_TRUE(reverted.ok()) << reverted.status();
  EXPECT_EQ(ReadFile(revert_tree->path + "/README.md"), "one\n");
  EXPECT_THAT(Sh("git -C " + revert_tree->path + " stash show --include-untracked -p stash@{0}"),
              HasSubstr("+left behind"));
}

TEST_F(GitWorkspaceTest, RevertOfAnUnknownCommitIsInvalidArgument) {
  GitWorkspace ws = Workspace();
  auto tree = ws.Prepare("ws1", url_, "main", "buildd/unknown", "t1", nullptr);
  ASSERT_TRUE(tree.ok()) << tree.status();
  const std::string missing = "0123456789abcdef0123456789abcdef01234567";
  auto revert = ws.Revert(*tree, missing, kAuthor, 1000, nullptr);
  EXPECT_THAT(revert, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(revert.status().message()), HasSubstr(missing));
  EXPECT_THAT(ws.Revert(*tree, "--help", kAuthor, 1000, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ws.Revert(*tree, "", kAuthor, 1000, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Sh("git -C " + tree->path + " rev-parse HEAD"), tree->base_sha);
}

TEST_F(GitWorkspaceTest, RevertOfACommitOnAnotherBranchIsRefused) {
  GitWorkspace ws = Workspace();
  auto other = ws.Prepare("ws1", url_, "main", "buildd/other", "t1", nullptr);
  ASSERT_TRUE(other.ok()) << other.status();
  WriteFile(other->path + "/other.txt", "x\n");
  auto elsewhere = ws.CommitAll(*other, "elsewhere", kAuthor, 1000, nullptr);
  ASSERT_TRUE(elsewhere.ok());
  auto tree = ws.Prepare("ws1", url_, "main", "buildd/mine", "t2", nullptr);
  ASSERT_TRUE(tree.ok()) << tree.status();

  auto revert = ws.Revert(*tree, elsewhere->sha, kAuthor, 1000, nullptr);
  EXPECT_THAT(revert, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(revert.status().message()),
              AllOf(HasSubstr(elsewhere->sha), HasSubstr("not on branch buildd/mine")));
}

TEST_F(GitWorkspaceTest, AConflictingRevertIsAbortedAndLeavesTheTreeClean) {
  GitWorkspace ws = Workspace();
  auto tree = ws.Prepare("ws1", url_, "main", "buildd/conflict", "t1", nullptr);
  ASSERT_TRUE(tree.ok()) << tree.status();
  WriteFile(tree->path + "/README.md", "two\n");
  auto first = ws.CommitAll(*tree, "two", kAuthor, 1000, nullptr);
  ASSERT_TRUE(first.ok());
  WriteFile(tree->path + "/README.md", "three\n");
  auto second = ws.CommitAll(*tree, "three", kAuthor, 1000, nullptr);
  ASSERT_TRUE(second.ok());

  auto revert = ws.Revert(*tree, first->sha, kAuthor, 1000, nullptr);
  EXPECT_THAT(revert, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(std::string(revert.status().message()),
              AllOf(HasSubstr(first->sha), HasSubstr("conflicts"), HasSubstr("README.md")));
  EXPECT_EQ(Sh("git -C " + tree->path + " rev-parse HEAD"), second->sha);
  EXPECT_EQ(Sh("git -C " + tree->path + " status --porcelain"), "");
  EXPECT_EQ(ReadFile(tree->path + "/README.md"), "three\n");
}

TEST_F(GitWorkspaceTest, CleanUpRemovesIdleWorktreesOldestFirstDownToTheLowWatermark) {
  GitWorkspace ws = Workspace();
  for (const char* name : {"w1", "w2", "w3", "w4", "w5"}) {
    ASSERT_THAT(ws.Prepare("ws1", url_, "main", absl::StrCat("buildd/", name), name, nullptr), IsOk());
  }
  // w1 is the oldest but still in use.
  for (const char* name : {"w2", "w3", "w4", "w5"}) ws.Release(name);
  SetLastUse("w1", "2020-01-01");
  SetLastUse("w4", "2020-01-02");
  SetLastUse("w2", "2020-01-03");
  SetLastUse("w5", "2020-01-04");
  SetLastUse("w3", "2020-01-05");

  // 5 worktrees: 95% used, down to 65% after three removals.
  disk_base_ = 0.45;
  std::vector<std::string> stages;
  auto progress = [&](const std::string& stage, const std::string&) { stages.push_back(stage); };
  EXPECT_THAT(ws.CleanUp(progress), ElementsAre("w4", "w2", "w5"));
  EXPECT_THAT(stages, ElementsAre("cleanup", "cleanup", "cleanup"));
  EXPECT_TRUE(Exists(dir_ + "/runner/worktrees/w1"));
  EXPECT_TRUE(Exists(dir_ + "/runner/worktrees/w3"));
  EXPECT_FALSE(Exists(dir_ + "/runner/worktrees/w2"));
  const std::string known =
      Sh("git --git-dir=$(ls -d " + dir_ + "/runner/cache/*.git) worktree list --porcelain");
  EXPECT_THAT(known, AllOf(HasSubstr("/w1"), HasSubstr("/w3"), Not(HasSubstr("/w2")),
                           Not(HasSubstr("/w4")), Not(HasSubstr("/w5"))));

  // 75%: between the watermarks, nothing more goes.
  disk_base_ = 0.55;
  EXPECT_THAT(ws.CleanUp(), IsEmpty());
  // Full again: only the idle one can go.
  disk_base_ = 0.9;
  EXPECT_THAT(ws.CleanUp(), ElementsAre("w3"));
  EXPECT_TRUE(Exists(dir_ + "/runner/worktrees/w1/README.md"));
}

TEST_F(GitWorkspaceTest, PrepareMakesRoomAndReleaseCountsAsTheLastUse) {
  GitWorkspace ws = Workspace();
  for (const char* name : {"w1", "w2", "w3"}) {
    ASSERT_THAT(ws.Prepare("ws1", url_, "main", absl::StrCat("buildd/", name), name, nullptr), IsOk());
    ws.Release(name);
  }
  SetLastUse("w1", "2020-01-01");
  SetLastUse("w2", "2020-01-02");
  SetLastUse("w3", "2020-01-03");
  // w1 is released again today (say, after a task inspected it).
  ws.Release("w1");

  // 3 worktrees: 85% used, down to 65% after two removals.
  disk_base_ = 0.55;
  std::vector<std::string> messages;
  auto progress = [&](const std::string& stage, const std::string& message) {
    if (stage == "cleanup") messages.push_back(message);
  };
  auto tree = ws.Prepare("ws1", url_, "main", "buildd/w4", "w4", progress);
  ASSERT_TRUE(tree.ok()) << tree.status();
  EXPECT_THAT(messages, ElementsAre(HasSubstr("w2"), HasSubstr("w3")));
  EXPECT_TRUE(Exists(dir_ + "/runner/worktrees/w1"));
  EXPECT_TRUE(Exists(tree->path + "/README.md"));
}

TEST_F(GitWorkspaceTest, PatchIsCutAtTheLimit) {
  GitWorkspace ws = Workspace();
  auto tree = ws.Prepare("ws1", url_, "main", "buildd/big", "t5", nullptr);
  ASSERT_TRUE(tree.ok());
  WriteFile(tree->path + "/big.txt", std::string(5000, 'x') + "\n");
  auto commit = ws.CommitAll(*tree, "big", "b <b@b>", 100, nullptr);
  ASSERT_TRUE(commit.ok());
  EXPECT_EQ(commit->patch.size(), 100u);
  EXPECT_TRUE(commit->patch_truncated);
}

TEST_F(GitWorkspaceTest, HostileNamesReachGitAsDataNotShell) {
  GitWorkspace ws = Workspace();
  const std::string marker = dir_ + "/pwned";
  auto tree = ws.Prepare("ws1", url_, "main", "x\"; touch " + marker + "; echo \"", "t6", nullptr);
  EXPECT_FALSE(tree.ok());  // not a valid branch name
  EXPECT_FALSE(Exists(marker));
  auto bad_url = ws.Prepare("ws1", "$(touch " + marker + ")", "main", "buildd/u", "t7", nullptr);
  EXPECT_FALSE(bad_url.ok());
  EXPECT_FALSE(Exists(marker));
  EXPECT_THAT(ws.Prepare("ws1", url_, "main", "buildd/up", "../escape", nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(Exists(dir_ + "/runner/escape"));
}

TEST_F(GitWorkspaceTest, UnreachableRepositoryIsAClearError) {
  GitWorkspace ws = Workspace();
  auto tree = ws.Prepare("ws1", "file://" + dir_ + "/missing.git", "main", "buildd/m", "t8", nullptr);
  ASSERT_FALSE(tree.ok());
  EXPECT_THAT(std::string(tree.status().message()), HasSubstr("git failed"));
  // The failed task's name is free again.
  EXPECT_THAT(ws.Prepare("ws1", url_, "main", "buildd/m", "t8", nullptr), IsOk());
}

TEST(UsedDiskFractionTest, IsAFractionAndZeroForAMissingPath) {
  const double used = UsedDiskFraction("/tmp");
  EXPECT_GE(used, 0.0);
  EXPECT_LE(used, 1.0);
  EXPECT_EQ(UsedDiskFraction("/nonexistent/buildd"), 0.0);
}

TEST_F(GitWorkspaceTest, TheCancelFdStopsASlowCloneAtOnce) {
  // A remote that never answers: ssh that just waits.
  // Git appends the host and command; the comment swallows them.
  setenv("GIT_SSH_COMMAND", "sleep 60 #", 1);
  GitWorkspace ws = Workspace();
  int stop[2];
  ASSERT_EQ(pipe(stop), 0);
  const auto start = std::chrono::steady_clock::now();
  auto prepare = std::async(std::launch::async, [&ws, &stop] {
    return ws.Prepare("ws1", "ssh://slow.invalid/repo.git", "main", "buildd/slow", "t-slow", nullptr,
                      true, GitControl{stop[0]});
  });
  ASSERT_EQ(prepare.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  ASSERT_EQ(write(stop[1], "x", 1), 1);
  auto result = prepare.get();
  close(stop[0]);
  close(stop[1]);
  unsetenv("GIT_SSH_COMMAND");
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  // The name is free again, and a later task is not interrupted.
  auto later = ws.Prepare("ws1", url_, "main", "buildd/slow", "t-slow", nullptr);
  EXPECT_TRUE(later.ok()) << later.status();
}

TEST_F(GitWorkspaceTest, TheTaskDeadlineStopsASlowClone) {
  setenv("GIT_SSH_COMMAND", "sleep 60 #", 1);
  GitWorkspace ws = Workspace();
  const auto start = std::chrono::steady_clock::now();
  GitControl control;
  control.deadline = start + std::chrono::milliseconds(500);
  auto result = ws.Prepare("ws1", "ssh://slow.invalid/repo.git", "main", "buildd/slow", "t-slow", nullptr,
                           true, control);
  unsetenv("GIT_SSH_COMMAND");
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("the task's time ran out"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(TokenHostTest, IsTheHostAndPortGitsCredentialHelperIsAskedFor) {
  EXPECT_EQ(TokenHostOf("https://github.com/acme/widgets.git"), "github.com");
  EXPECT_EQ(TokenHostOf("http://127.0.0.1:8080/acme/widgets.git"), "127.0.0.1:8080");
  EXPECT_EQ(TokenHostOf("https://someone@ghe.example.com:8443/a/b"), "ghe.example.com:8443");
  EXPECT_EQ(TokenHostOf("git@github.com:acme/widgets.git"), "");
  EXPECT_EQ(TokenHostOf("/srv/git/repo.git"), "");
}

TEST(RedactUrlTest, CredentialsInTheAuthorityAreHidden) {
  EXPECT_EQ(RedactUrl("https://me:ghp_secret@github.com/a/b.git"), "https://***@github.com/a/b.git");
  EXPECT_EQ(RedactUrl("https://token@host/x"), "https://***@host/x");
  EXPECT_EQ(RedactUrl("ssh://git@host/x"), "ssh://***@host/x");
  EXPECT_EQ(RedactUrl("https://host/a@b"), "https://host/a@b");
  EXPECT_EQ(RedactUrl("file:///srv/repo.git"), "file:///srv/repo.git");
  EXPECT_EQ(RedactUrl("/srv/repo.git"), "/srv/repo.git");
}

TEST_F(GitWorkspaceTest, PatchesKeepLongLinesWholeAndAreCutOnACharacterBoundary) {
  GitWorkspace ws = Workspace();
  auto tree = ws.Prepare("ws1", url_, "main", "buildd/long", "t-long", nullptr);
  ASSERT_TRUE(tree.ok()) << tree.status();
  const std::string line(200 * 1024, 'x');
  WriteFile(tree->path + "/minified.js", line + "\n");
  auto whole = ws.CommitAll(*tree, "long line", kAuthor, 1 << 20, nullptr);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_FALSE(whole->patch_truncated);
  EXPECT_NE(whole->patch.find("+" + line), std::string::npos) << "one line, not chunks";

  // "é" is two bytes; a cap in the middle of one must not split it.
  WriteFile(tree->path + "/accents.txt", std::string(4000, 'a') + "\n" + [] {
    std::string s;
    for (int i = 0; i < 2000; ++i) s += "\xc3\xa9";
    return s;
  }() + "\n");
  auto cut = ws.CommitAll(*tree, "accents", kAuthor, 4301, nullptr);
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_TRUE(cut->patch_truncated);
  EXPECT_LE(cut->patch.size(), 4301u);
  EXPECT_GE(cut->patch.size(), 4300u);
  EXPECT_EQ(SanitizeUtf8(cut->patch), cut->patch) << "valid UTF-8";
  EXPECT_EQ(cut->patch.find("\xef\xbf\xbd"), std::string::npos) << "no replacement character";
}


}  // namespace
}  // namespace buildd::runner
