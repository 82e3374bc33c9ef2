#include "services/broker/github_webhook.h"

#include <sodium.h>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status.h"
#include "services/broker/conversions.h"
#include "services/broker/github_client.h"
#include "services/broker/resume.h"
#include "services/broker/task_validation.h"

namespace buildd::broker {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

const Struct& Obj(const Struct& s, const std::string& key) {
  static const Struct* empty = new Struct();
  auto it = s.fields().find(key);
  if (it == s.fields().end() || it->second.kind_case() != Value::kStructValue) return *empty;
  return it->second.struct_value();
}

std::string Str(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "" : it->second.string_value();
}

std::string Num(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || it->second.kind_case() != Value::kNumberValue) return "";
  return absl::StrCat(static_cast<int64_t>(it->second.number_value()));
}

// Who may ask for work by a comment: those GitHub says belong to the
// repository (a public repository's strangers may comment too).
bool Trusted(const Struct& comment) {
  const std::string who = Str(comment, "author_association");
  return who == "OWNER" || who == "MEMBER" || who == "COLLABORATOR";
}

// Control characters but tab and newline become spaces (GitHub's bodies
// carry \r\n); the text is cut at `max` bytes, never inside a character.
std::string Clean(const std::string& text, size_t max) {
  std::string out = text.substr(0, max);
  while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
  if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
  for (char& c : out) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') || c == 0x7f) c = ' ';
  }
  return out;
}

std::string Line(const std::string& text, size_t max) {
  std::string out = Clean(text, max);
  for (char& c : out) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

}  // namespace

GitHubWebhook::GitHubWebhook(std::string secret, BrokerStore& store, ActionDispatch::Targets targets)
    : secret_(std::move(secret)), store_(store), targets_(std::move(targets)) {}

absl::Status GitHubWebhook::Verify(const std::string& signature, const std::string& body) const {
  if (secret_.empty()) {
    return absl::UnauthenticatedError("this broker takes no GitHub webhooks (no webhook secret)");
  }
  if (signature.empty()) {
    return absl::UnauthenticatedError("X-Hub-Signature-256 is missing");
  }
  constexpr absl::string_view kPrefix = "sha256=";
  unsigned char given[crypto_auth_hmacsha256_BYTES];
  size_t len = 0;
  if (!absl::StartsWith(signature, kPrefix) ||
      signature.size() != kPrefix.size() + 2 * sizeof given ||
      sodium_hex2bin(given, sizeof given, signature.data() + kPrefix.size(),
                     signature.size() - kPrefix.size(), nullptr, &len, nullptr) != 0 ||
      len != sizeof given) {
    return absl::UnauthenticatedError("X-Hub-Signature-256 is not sha256=<64 hex digits>");
  }
  unsigned char expected[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret_.data()),
                              secret_.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  crypto_auth_hmacsha256_final(&state, expected);
  if (sodium_memcmp(given, expected, sizeof given) != 0) {
    return absl::UnauthenticatedError("X-Hub-Signature-256 does not match the body");
  }
  return absl::OkStatus();
}

absl::StatusOr<GitHubWebhook::Outcome> GitHubWebhook::TaskFor(const std::string& event,
                                                              const std::string& body) {
  Struct payload;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(body, &payload, options).ok()) {
    return absl::InvalidArgumentError("the delivery's body is not a JSON object");
  }
  const auto ignored = [](std::string why) { return Outcome{std::nullopt, std::move(why)}; };
  if (event == "ping") return ignored("pong");
  const std::string action = Str(payload, "action");
  const std::string repo = Str(Obj(payload, "repository"), "full_name");
  if (repo.empty()) return absl::InvalidArgumentError("repository.full_name is missing");

  // What the delivery asks for.
  enum class Kind { kNone, kIssue, kComment, kReview } kind = Kind::kNone;
  const Struct& issue = Obj(payload, "issue");
  const Struct& comment = Obj(payload, event == "pull_request_review" ? "review" : "comment");
  std::string prompt;
  if (event == "issues") {
    if (action != "labeled" || Str(Obj(payload, "label"), "name") != "buildd") {
      return ignored("not an issue labelled buildd");
    }
    kind = Kind::kIssue;
  } else if (event == "issue_comment") {
    if (action != "created") return ignored("not a new comment");
    const std::string text = std::string(absl::StripLeadingAsciiWhitespace(Str(comment, "body")));
    if (!absl::StartsWith(text, "/buildd ") && !absl::StartsWith(text, "/buildd\n")) {
      return ignored("the comment does not start with /buildd");
    }
    if (!Trusted(comment)) return ignored("the commenter is not the repository's owner, a member or a collaborator");
    prompt = std::string(absl::StripAsciiWhitespace(text.substr(7)));
    if (prompt.empty()) return ignored("/buildd without a prompt");
    kind = Kind::kComment;
  } else if (event == "pull_request_review_comment" || event == "pull_request_review") {
    if (action != (event == "pull_request_review" ? "submitted" : "created")) {
      return ignored("not a new review comment");
    }
    if (Str(comment, "body").empty()) return ignored("the review has no comment");
    if (!Trusted(comment)) return ignored("the reviewer is not the repository's owner, a member or a collaborator");
    kind = Kind::kReview;
  } else {
    return ignored(absl::StrCat("event ", event.substr(0, 60), " asks for nothing"));
  }
  // The workspace of the repository.
  BUILDD_ASSIGN_OR_RETURN(std::vector<WorkspaceRecord> spaces, store_.ListWorkspaces(std::nullopt));
  const WorkspaceRecord* workspace = nullptr;
  for (const WorkspaceRecord& ws : spaces) {
    absl::StatusOr<std::string> of = GitHubRepoOf(ws.repo_url);
    if (of.ok() && absl::AsciiStrToLower(*of) == absl::AsciiStrToLower(repo)) {
      workspace = &ws;
      break;
    }
  }
  if (workspace == nullptr) return ignored(absl::StrCat("no workspace has the repoUrl of ", repo));

  pb::Task task;
  task.set_workspace_id(workspace->id);
  std::string created_by;
  if (kind == Kind::kReview) {
    // The task that opened the pull request.
    const std::string pr_url = Str(Obj(payload, "pull_request"), "html_url");
    if (pr_url.empty()) return absl::InvalidArgumentError("pull_request.html_url is missing");
    BUILDD_ASSIGN_OR_RETURN(std::vector<TaskRecord> tasks,
                            store_.ListTasks(workspace->id, "", 1000, std::nullopt));
    const TaskRecord* opener = nullptr;
    for (const TaskRecord& t : tasks) {
      if (TaskToProto(t).artifacts().pr_url() == pr_url) {
        opener = &t;
        break;
      }
    }
    if (opener == nullptr) return ignored("the pull request was not opened by a buildd task");
    created_by = opener->created_by;
    task.set_resume_from(opener->id);
    const pb::Task earlier = TaskToProto(*opener);
    task.set_auto_commit(earlier.auto_commit());
    task.set_push(earlier.push());
    task.set_runner_preference(earlier.runner_preference());
    const std::string where = Str(comment, "path").empty()
                                  ? ""
                                  : absl::StrCat(" on ", Line(Str(comment, "path"), 300),
                                                 Num(comment, "line").empty() ? "" : ":",
                                                 Num(comment, "line"));
    task.set_title(Line(absl::StrCat("Review", where, ": ", Str(comment, "body")), 200));
    task.set_prompt(absl::StrCat("A reviewer commented on your pull request ", pr_url, where,
                                 ":\n\n", Clean(Str(comment, "body"), 60000),
                                 "\n\nAddress the comment."));
    Principal earlier_account;
    earlier_account.account_id = created_by;
    earlier_account.visible = {workspace->id};
    if (absl::Status st = ResolveResumeFrom(store_, earlier_account, task); !st.ok()) {
      return ignored(absl::StrCat("the task that opened the pull request cannot be continued: ",
                                  st.message()));
    }
  } else {
    BUILDD_ASSIGN_OR_RETURN(std::vector<ActionTarget> targets, targets_(workspace->id));
    auto target = std::find_if(targets.begin(), targets.end(), [&](const ActionTarget& t) {
      return absl::AsciiStrToLower(t.repo) == absl::AsciiStrToLower(repo);
    });
    if (target == targets.end()) {
      return ignored(absl::StrCat("no action account with githubId ", repo,
                                  " and a githubToken may claim the workspace's tasks"));
    }
    created_by = target->account_id;
    const std::string number = Num(issue, "number");
    const std::string title = Line(Str(issue, "title"), 200);
    if (kind == Kind::kIssue) {
      task.set_title(Line(absl::StrCat("#", number, " ", title), 200));
      task.set_prompt(absl::StrCat(title, "\n\n", Clean(Str(issue, "body"), 60000),
                                   "\n\n(GitHub issue ", Str(issue, "html_url"), ")"));
    } else {
      task.set_title(Line(absl::StrCat("#", number, " ", prompt), 200));
      task.set_prompt(absl::StrCat(Clean(prompt, 60000), "\n\n(asked in a comment on ",
                                   issue.fields().count("pull_request") > 0 ? "pull request" : "issue",
                                   " #", number, " ", title, ": ", Str(comment, "html_url"), ")"));
    }
  }
  BUILDD_RETURN_IF_ERROR(ValidateNewTask(task));
  return Outcome{NewTaskRecord(std::move(task), created_by), "created"};
}

}  // namespace buildd::broker
