#include "services/broker/task_validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "tests/testing/matchers.h"

namespace buildd::broker {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kWorkspace[] = "6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b";

pb::Task PromptTask() {
  pb::Task task;
  task.set_workspace_id(kWorkspace);
  task.set_prompt("add error handling to the API");
  return task;
}

pb::Task RevertTask() {
  pb::Task task;
  task.set_workspace_id(kWorkspace);
  task.set_kind("revert");
  task.set_revert_commit("0123abc");
  task.set_work_branch("main");
  return task;
}

absl::Status WithWorkBranch(const std::string& branch) {
  pb::Task task = PromptTask();
  task.set_work_branch(branch);
  return ValidateNewTask(task);
}

pb::CreateWorkspaceRequest Workspace(const std::string& repo_url) {
  pb::CreateWorkspaceRequest req;
  req.set_name("api");
  req.set_repo_url(repo_url);
  return req;
}

TEST(TaskValidationTest, PromptTaskGetsDefaults) {
  pb::Task task = PromptTask();
  ASSERT_THAT(ValidateNewTask(task), IsOk());
  EXPECT_EQ(task.provider(), "claude");
  EXPECT_EQ(task.max_attempts(), kDefaultMaxAttempts);
  EXPECT_EQ(task.title(), "add error handling to the API");
}

TEST(TaskValidationTest, ADescriptionIsThePromptAsTheSeedsWriteIt) {
  pb::Task task;
  task.set_workspace_id(kWorkspace);
  task.set_title("Fix the login bug");
  task.set_description("The login form accepts an empty password");
  ASSERT_THAT(ValidateNewTask(task), IsOk());
  EXPECT_EQ(task.prompt(), "The login form accepts an empty password");
  EXPECT_EQ(task.description(), "") << "kept once, as the prompt";
  EXPECT_EQ(task.provider(), "claude");
  EXPECT_EQ(task.title(), "Fix the login bug");

  pb::Task both = PromptTask();
  both.set_description(both.prompt());
  EXPECT_THAT(ValidateNewTask(both), IsOk());
  pb::Task differ = PromptTask();
  differ.set_description("something else");
  EXPECT_THAT(ValidateNewTask(differ),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("description")));
  // Checked as the prompt is.
  pb::Task control;
  control.set_workspace_id(kWorkspace);
  control.set_description("bad\x01text");
  EXPECT_THAT(ValidateNewTask(control), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt")));
}

TEST(TaskValidationTest, CommandTaskDefaultsToTheCommandProvider) {
  pb::Task task;
  task.set_workspace_id(kWorkspace);
  task.set_command("make test");
  ASSERT_THAT(ValidateNewTask(task), IsOk());
  EXPECT_EQ(task.provider(), "command");
  EXPECT_EQ(task.title(), "make test");
}

TEST(TaskValidationTest, DefaultTitleIsTheFirst80CharactersOfThePrompt) {
  pb::Task task = PromptTask();
  task.set_prompt(std::string(200, 'p'));
  ASSERT_THAT(ValidateNewTask(task), IsOk());
  EXPECT_EQ(task.title(), std::string(80, 'p'));
}

TEST(TaskValidationTest, WorkspaceIdIsRequiredAndAUuid) {
  pb::Task task = PromptTask();
  task.clear_workspace_id();
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("workspaceId")));
  task.set_workspace_id("not-a-uuid");
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("workspaceId")));
}

TEST(TaskValidationTest, BadBranchNamesAreRefusedNamingTheField) {
  for (const std::string& bad :
       {std::string("-rf"), std::string("/abs"), std::string(".hidden"), std::string("a..b"),
        std::string("a//b"), std::string("a/.b"), std::string("ends/"), std::string("ends."),
        std::string("refs.lock"), std::string("has space"), std::string("semi;colon"),
        std::string("new\nline"), std::string(201, 'b')}) {
    EXPECT_THAT(WithWorkBranch(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                              StartsWith("workBranch \"" + bad.substr(0, 5))))
        << bad;
  }
  pb::Task task = PromptTask();
  task.set_base_branch("a..b");
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "baseBranch \"a..b\" is not a valid branch name: it must not contain .. // or /."));
}

TEST(TaskValidationTest, GitStyleBranchNamesAreTaken) {
  for (const char* good : {"main", "feature/x-1", "release_2.0", "fix+y", "buildd/abc12345"}) {
    EXPECT_THAT(WithWorkBranch(good), IsOk()) << good;
  }
}

TEST(TaskValidationTest, ControlCharactersAreRefusedNamingTheField) {
  pb::Task task = PromptTask();
  task.set_title("a\x01title");
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("title")));

  task = PromptTask();
  task.set_concurrency_key("key\n");
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "concurrencyKey must not contain control characters"));

  task = PromptTask();
  task.add_required_labels("gpu\x7f");
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("requiredLabels")));

  task = PromptTask();
  task.set_prompt(std::string("a\0b", 3));
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt")));
}

TEST(TaskValidationTest, PromptsAndCommandsMayHoldNewlines) {
  pb::Task task = PromptTask();
  task.set_prompt("first line\n\tsecond line\r\n");
  EXPECT_THAT(ValidateNewTask(task), IsOk());
}

TEST(TaskValidationTest, EmptyLabelsAreRefused) {
  pb::Task task = PromptTask();
  task.add_required_labels("");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "requiredLabels must not hold empty labels"));
}

TEST(TaskValidationTest, PriorityMustBeWithinBounds) {
  for (int ok : {kMinPriority, 0, kMaxPriority}) {
    pb::Task task = PromptTask();
    task.set_priority(ok);
    EXPECT_THAT(ValidateNewTask(task), IsOk()) << ok;
  }
  for (int bad : {kMinPriority - 1, kMaxPriority + 1}) {
    pb::Task task = PromptTask();
    task.set_priority(bad);
    EXPECT_THAT(ValidateNewTask(task),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         absl::StrCat("priority must be within -100…100, not ", bad)));
  }
}

TEST(TaskValidationTest, MaxAttemptsMustBeWithinBounds) {
  pb::Task task = PromptTask();
  task.set_max_attempts(kMaxAttempts);
  EXPECT_THAT(ValidateNewTask(task), IsOk());
  for (int bad : {-1, kMaxAttempts + 1}) {
    task = PromptTask();
    task.set_max_attempts(bad);
    EXPECT_THAT(ValidateNewTask(task),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         absl::StrCat("maxAttempts must be within 1…10 (0 means 3), not ", bad)));
  }
}

TEST(TaskValidationTest, NegativeTimeoutIsRefused) {
  pb::Task task = PromptTask();
  task.set_timeout_seconds(-1);
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "timeoutSeconds must not be negative"));
}

TEST(TaskValidationTest, OverlongFieldsAreRefusedNamingTheField) {
  pb::Task task = PromptTask();
  task.set_title(std::string(501, 't'));
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "title is longer than 500 characters"));
  task = PromptTask();
  task.set_prompt(std::string(100 * 1024 + 1, 'p'));
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "prompt is longer than 102400 bytes"));
  task = PromptTask();
  task.set_concurrency_key(std::string(201, 'k'));
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "concurrencyKey is longer than 200 characters"));
}

TEST(TaskValidationTest, ProviderMustBeKnown) {
  pb::Task task = PromptTask();
  task.set_provider("gpt");
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "provider must be command, claude or codex, not \"gpt\""));
  task.set_provider("codex");
  EXPECT_THAT(ValidateNewTask(task), IsOk());
}

TEST(TaskValidationTest, CommandProviderNeedsACommand) {
  pb::Task task = PromptTask();
  task.set_provider("command");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "command is required when provider is command"));
}

TEST(TaskValidationTest, AgentProvidersNeedAPrompt) {
  pb::Task task;
  task.set_workspace_id(kWorkspace);
  task.set_provider("codex");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "prompt is required when provider is codex"));
}

TEST(TaskValidationTest, UnnamedRunnerPreferenceIsRefused) {
  pb::Task task = PromptTask();
  task.set_runner_preference(static_cast<pb::Task::RunnerPreference>(99));
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runnerPreference")));
}

TEST(TaskValidationTest, NetworkMustBeOnOrNone) {
  pb::Task task = PromptTask();
  task.set_network("none");
  EXPECT_THAT(ValidateNewTask(task), IsOk());
  task.set_network("host");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "network must be empty (on) or none, not \"host\""));
}

TEST(TaskValidationTest, UnknownKindIsRefused) {
  pb::Task task = PromptTask();
  task.set_kind("rebase");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "kind must be empty, revert or integration, not \"rebase\""));
}

TEST(TaskValidationTest, AnIntegrationIsAnAgentOnABranch) {
  pb::Task task = PromptTask();
  task.set_kind("integration");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "workBranch is required: the branch to install on"));
  task.set_work_branch("kits");
  EXPECT_THAT(ValidateNewTask(task), IsOk());
  task.set_provider("command");
  task.set_command("true");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "provider must be claude or codex for kind integration"));
}

TEST(TaskValidationTest, RevertGetsItsDefaults) {
  pb::Task task = RevertTask();
  task.set_revert_commit("0123ABCDEF");
  ASSERT_THAT(ValidateNewTask(task), IsOk());
  EXPECT_EQ(task.revert_commit(), "0123abcdef");
  EXPECT_EQ(task.provider(), "command");
  EXPECT_EQ(task.title(), "Revert 0123abcdef");
  EXPECT_TRUE(task.auto_commit());
}

TEST(TaskValidationTest, RevertNeedsACommitSha) {
  for (const char* bad : {"", "0123ab", "xyz1234", "0123abc!"}) {
    pb::Task task = RevertTask();
    task.set_revert_commit(bad);
    EXPECT_THAT(ValidateNewTask(task),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "revertCommit must be a commit sha (7 to 64 hex digits)"))
        << bad;
  }
}

TEST(TaskValidationTest, RevertNeedsAWorkBranch) {
  pb::Task task = RevertTask();
  task.clear_work_branch();
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "workBranch is required: the branch to revert on"));
}

TEST(TaskValidationTest, RevertRunsOnlyAsACommand) {
  pb::Task task = RevertTask();
  task.set_provider("claude");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "provider must be empty or command for kind revert"));
}

TEST(TaskValidationTest, RevertCommitIsOnlyForReverts) {
  pb::Task task = PromptTask();
  task.set_revert_commit("0123abc");
  EXPECT_THAT(ValidateNewTask(task), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "revertCommit is only for kind revert"));
}

TEST(TaskValidationTest, ResumeFromMustBeAUuid) {
  pb::Task task = PromptTask();
  task.set_resume_from("earlier");
  EXPECT_THAT(ValidateNewTask(task),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resumeFrom")));
}

TEST(TaskValidationTest, WorkspaceNeedsAName) {
  pb::CreateWorkspaceRequest req = Workspace("");
  req.clear_name();
  EXPECT_THAT(ValidateNewWorkspace(req),
              StatusIs(absl::StatusCode::kInvalidArgument, "name is required"));
  req.set_name(std::string(201, 'n'));
  EXPECT_THAT(ValidateNewWorkspace(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  "name is longer than 200 characters"));
  req.set_name("bad\tname");
  EXPECT_THAT(ValidateNewWorkspace(req),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
}

TEST(TaskValidationTest, RepoUrlWithCredentialsIsRefused) {
  for (const char* bad : {"https://user:secret@github.com/o/r.git", "https://ghp_token@github.com/o/r",
                          "HTTP://token@example.com/r", "ssh://git:secret@example.com/r"}) {
    EXPECT_THAT(ValidateNewWorkspace(Workspace(bad)),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         StartsWith("repoUrl must not embed credentials")))
        << bad;
  }
}

TEST(TaskValidationTest, RepoUrlsGitUnderstandsAreTaken) {
  for (const char* good : {"", "https://github.com/o/r.git", "ssh://git@github.com/o/r.git",
                           "git@github.com:o/r.git", "/srv/git/r.git", "file:///srv/r"}) {
    EXPECT_THAT(ValidateNewWorkspace(Workspace(good)), IsOk()) << good;
  }
}

TEST(TaskValidationTest, RepoUrlMustNotLookLikeAnOptionOrHoldControlCharacters) {
  EXPECT_THAT(ValidateNewWorkspace(Workspace("--upload-pack=evil")),
              StatusIs(absl::StatusCode::kInvalidArgument, "repoUrl must not start with '-'"));
  EXPECT_THAT(ValidateNewWorkspace(Workspace("https://example.com/r\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "repoUrl must not hold control characters"));
  EXPECT_THAT(ValidateNewWorkspace(Workspace(std::string(2001, 'u'))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "repoUrl is longer than 2000 characters"));
}

TEST(TaskValidationTest, WorkspaceDefaultBranchAndNetworkAreChecked) {
  pb::CreateWorkspaceRequest req = Workspace("");
  req.set_default_branch("-main");
  EXPECT_THAT(ValidateNewWorkspace(req),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("defaultBranch \"-main\"")));
  req.clear_default_branch();
  req.set_network("bridge");
  EXPECT_THAT(ValidateNewWorkspace(req),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("network")));
}

TEST(TaskValidationTest, ControlNeedsAnIdAndAnAction) {
  pb::ControlWorkerRequest req;
  EXPECT_THAT(ValidateControlWorker(req),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id")));
  req.set_id(kWorkspace);
  EXPECT_THAT(ValidateControlWorker(req),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "action is required: pause, resume, cancel or input"));
  req.set_action(pb::ControlWorkerRequest::input);
  req.set_text("yes\x01");
  EXPECT_THAT(ValidateControlWorker(req),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("text")));
  req.set_text("yes, go on\n");
  EXPECT_THAT(ValidateControlWorker(req), IsOk());
}

TEST(TaskValidationTest, SubscribeChecksItsFilters) {
  pb::SubscribeRequest req;
  EXPECT_THAT(ValidateSubscribe(req), IsOk());
  req.set_task_id("t1");
  EXPECT_THAT(ValidateSubscribe(req),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("taskId")));
  req.clear_task_id();
  req.set_after_id(-1);
  EXPECT_THAT(ValidateSubscribe(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                               "lastEventId must not be negative"));
  req.set_after_id(0);
  req.set_branch("feature/x");
  EXPECT_THAT(ValidateSubscribe(req), IsOk());
  req.set_branch("a b");
  EXPECT_THAT(ValidateSubscribe(req),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("branch")));
}

TEST(TaskValidationTest, OversizedRequestIsRefused) {
  pb::CreateTaskRequest req;
  req.mutable_task()->set_prompt(std::string((4 << 20) + 1, 'p'));
  EXPECT_THAT(CheckRequestSize(req), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(CheckRequestSize(pb::CreateTaskRequest()), IsOk());
}

TEST(TaskValidationTest, NewTaskRecordKeepsOnlyWhatTheClientDescribes) {
  pb::Task task = PromptTask();
  task.set_id("client-chosen");
  task.set_state(pb::Task::running);
  task.set_attempts(2);
  task.set_created_by("someone-else");
  task.set_priority(5);
  task.add_required_labels("gpu");
  ASSERT_THAT(ValidateNewTask(task), IsOk());
  const TaskRecord record = NewTaskRecord(task, "account-1");
  EXPECT_NE(record.id, "client-chosen");
  ASSERT_NE(record.spec, nullptr);
  EXPECT_TRUE(record.spec->id().empty());
  EXPECT_EQ(record.spec->state(), pb::Task::state_unspecified);
  EXPECT_EQ(record.spec->attempts(), 0);
  EXPECT_TRUE(record.spec->created_by().empty());
  EXPECT_EQ(record.created_by, "account-1");
  EXPECT_EQ(record.workspace_id, kWorkspace);
  EXPECT_EQ(record.provider, "claude");
  EXPECT_EQ(record.priority, 5);
  EXPECT_EQ(record.max_attempts, kDefaultMaxAttempts);
  EXPECT_EQ(record.runner_preference, "any");
  EXPECT_THAT(record.required_labels, ::testing::ElementsAre("gpu"));
  EXPECT_THAT(record.spec->prompt(), HasSubstr("add error handling"));
}

TEST(TaskValidationTest, NewTaskRecordDefaultsWorkBranchAndConcurrencyKey) {
  pb::Task task = PromptTask();
  ASSERT_THAT(ValidateNewTask(task), IsOk());
  const TaskRecord record = NewTaskRecord(task, "a");
  EXPECT_EQ(record.spec->work_branch(), TaskRecord::DefaultWorkBranch(record.id));
  EXPECT_EQ(record.concurrency_key, record.spec->work_branch());
  EXPECT_TRUE(record.KeyIsOwn());

  pb::Task named = PromptTask();
  named.set_work_branch("feature/x");
  named.set_concurrency_key("deploys");
  ASSERT_THAT(ValidateNewTask(named), IsOk());
  const TaskRecord keyed = NewTaskRecord(named, "a");
  EXPECT_EQ(keyed.spec->work_branch(), "feature/x");
  EXPECT_EQ(keyed.concurrency_key, "deploys");
}

}  // namespace
}  // namespace buildd::broker
