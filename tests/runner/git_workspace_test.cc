#include "services/runner/git_workspace.h"

#include <sys/stat.h>

#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/runner/process_group.h"

namespace buildd::runner {
namespace {

using ::testing::HasSubstr;

std::string Sh(const std::string& script) {
  auto r = RunCommand(script, std::chrono::seconds(60));
  EXPECT_TRUE(r.ok() && r->status.success()) << script << "\n" << (r.ok() ? r->stderr_text : "");
  return r.ok() ? r->stdout_text : "";
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

class GitWorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/buildd-git-XXXXXX";
    dir_ = mkdtemp(tmpl);
    remote_ = dir_ + "/remote.git";
    // A bare "remote" with one commit on main, reached by file://.
    Sh(absl::StrCat("set -e; git init -q --bare -b main ", remote_, "; git clone -q ", remote_, " ",
                    dir_, "/seed 2>/dev/null; cd ", dir_, "/seed; echo one > README.md; git add .;"
                    " git -c user.name=t -c user.email=t@t commit -q -m init; git push -q origin HEAD:main"));
    url_ = "file://" + remote_;
  }
  void TearDown() override { Sh("rm -rf " + dir_); }

  std::string dir_, remote_, url_;
};

TEST_F(GitWorkspaceTest, TwoTasksOfOneRepositoryGetSeparateWorktreesAndOneCache) {
  GitWorkspace ws(dir_ + "/runner");
  std::vector<std::string> stages;
  auto progress = [&](const std::string& stage, const std::string&) { stages.push_back(stage); };
  auto a = ws.Prepare(url_, "main", "buildd/aaaa", "task-a", progress);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = ws.Prepare(url_, "", "buildd/bbbb", "task-b", progress);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->cache_dir, b->cache_dir);
  EXPECT_NE(a->path, b->path);
  EXPECT_THAT(stages, ::testing::ElementsAre("clone", "branch", "fetch", "branch"));
  EXPECT_TRUE(Exists(a->path + "/README.md"));
  Write(a->path + "/a.txt", "from a\n");
  Write(b->path + "/b.txt", "from b\n");
  EXPECT_FALSE(Exists(a->path + "/b.txt"));
  EXPECT_EQ(Sh("git -C " + a->path + " rev-parse --abbrev-ref HEAD"), "buildd/aaaa");
}

TEST_F(GitWorkspaceTest, CommitsEverythingAndPushesTheBranchToTheRemote) {
  GitWorkspace ws(dir_ + "/runner");
  auto tree = ws.Prepare(url_, "main", "buildd/1234", "t1", nullptr);
  ASSERT_TRUE(tree.ok()) << tree.status();
  Write(tree->path + "/hello.txt", "hi\n");
  Write(tree->path + "/README.md", "two\n");
  auto commit = ws.CommitAll(*tree, "Say hello", "buildd bot <bot@buildd.dev>", 1 << 20, nullptr);
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
  GitWorkspace ws(dir_ + "/runner");
  auto tree = ws.Prepare(url_, "main", "buildd/none", "t2", nullptr);
  ASSERT_TRUE(tree.ok()) << tree.status();
  auto commit = ws.CommitAll(*tree, "nothing", "b <b@b>", 1000, nullptr);
  ASSERT_TRUE(commit.ok()) << commit.status();
  EXPECT_FALSE(commit->changed);
  EXPECT_EQ(Sh("git -C " + tree->path + " rev-parse HEAD"), tree->base_sha);
}

TEST_F(GitWorkspaceTest, AnExistingRemoteWorkBranchIsContinued) {
  GitWorkspace ws(dir_ + "/runner");
  auto first = ws.Prepare(url_, "main", "buildd/cont", "t3", nullptr);
  ASSERT_TRUE(first.ok()) << first.status();
  Write(first->path + "/step1.txt", "1\n");
  auto c1 = ws.CommitAll(*first, "step 1", "b <b@b>", 1000, nullptr);
  ASSERT_TRUE(c1.ok());
  ASSERT_TRUE(ws.Push(*first, nullptr).ok());
  ASSERT_TRUE(ws.Remove(*first).ok());
  GitWorkspace other(dir_ + "/other-runner");
  auto second = other.Prepare(url_, "main", "buildd/cont", "t4", nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->base_sha, c1->sha);
  EXPECT_TRUE(Exists(second->path + "/step1.txt"));
}

TEST_F(GitWorkspaceTest, PatchIsCutAtTheLimit) {
  GitWorkspace ws(dir_ + "/runner");
  auto tree = ws.Prepare(url_, "main", "buildd/big", "t5", nullptr);
  ASSERT_TRUE(tree.ok());
  Write(tree->path + "/big.txt", std::string(5000, 'x') + "\n");
  auto commit = ws.CommitAll(*tree, "big", "b <b@b>", 100, nullptr);
  ASSERT_TRUE(commit.ok());
  EXPECT_EQ(commit->patch.size(), 100u);
  EXPECT_TRUE(commit->patch_truncated);
}

TEST_F(GitWorkspaceTest, HostileNamesReachGitAsDataNotShell) {
  GitWorkspace ws(dir_ + "/runner");
  const std::string marker = dir_ + "/pwned";
  auto tree = ws.Prepare(url_, "main", "x\"; touch " + marker + "; echo \"", "t6", nullptr);
  EXPECT_FALSE(tree.ok());  // not a valid branch name
  EXPECT_FALSE(Exists(marker));
  auto bad_url = ws.Prepare("$(touch " + marker + ")", "main", "buildd/u", "t7", nullptr);
  EXPECT_FALSE(bad_url.ok());
  EXPECT_FALSE(Exists(marker));
}

TEST_F(GitWorkspaceTest, UnreachableRepositoryIsAClearError) {
  GitWorkspace ws(dir_ + "/runner");
  auto tree = ws.Prepare("file://" + dir_ + "/missing.git", "main", "buildd/m", "t8", nullptr);
  ASSERT_FALSE(tree.ok());
  EXPECT_THAT(std::string(tree.status().message()), HasSubstr("git failed"));
}

}  // namespace
}  // namespace buildd::runner
