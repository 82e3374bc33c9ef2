#include "services/broker/resume.h"

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status.h"
#include "services/broker/conversions.h"

namespace buildd::broker {

absl::Status ResolveResumeFrom(BrokerStore& store, const Principal& p, pb::Task& task) {
  const std::string from = task.resume_from();
  if (from.empty()) return absl::OkStatus();
  BUILDD_RETURN_IF_ERROR(CheckUuid(from, "resumeFrom"));
  absl::StatusOr<TaskRecord> earlier = store.GetTask(from);
  if (absl::IsNotFound(earlier.status()) || (earlier.ok() && !p.CanSee(earlier->workspace_id))) {
    return absl::InvalidArgumentError(absl::StrCat("resumeFrom: task ", from, " not found"));
  }
  BUILDD_RETURN_IF_ERROR(earlier.status());
  // A conversation goes only to the account that had it (or an admin).
  if (!p.is_admin && earlier->created_by != p.account_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "resumeFrom: task ", from, " was created by another account; only it may continue it"));
  }
  if (earlier->workspace_id != task.workspace_id()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resumeFrom: task ", from, " belongs to another workspace"));
  }
  const pb::Task spec = TaskToProto(*earlier);
  if (task.provider().empty()) task.set_provider(spec.provider());
  if (task.provider() != spec.provider()) {
    return absl::InvalidArgumentError(absl::StrCat("resumeFrom: task ", from, " ran provider ",
                                                   spec.provider(), ", not ", task.provider()));
  }
  if (task.work_branch().empty()) task.set_work_branch(spec.work_branch());
  if (task.base_branch().empty()) task.set_base_branch(spec.base_branch());
  BUILDD_ASSIGN_OR_RETURN(auto session, store.GetSession(from));
  if (!session.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("resumeFrom: task ", from, " left no agent session to resume (yet)"));
  }
  return absl::OkStatus();
}

}  // namespace buildd::broker
