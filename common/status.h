#ifndef BUILDD_COMMON_STATUS_H_
#define BUILDD_COMMON_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Abseil 20220623 ships no status macros; these are the usual pair.
#define BUILDD_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status buildd_status_ = (expr);          \
    if (!buildd_status_.ok()) return buildd_status_; \
  } while (0)

#define BUILDD_CONCAT_INNER_(a, b) a##b
#define BUILDD_CONCAT_(a, b) BUILDD_CONCAT_INNER_(a, b)

#define BUILDD_ASSIGN_OR_RETURN(lhs, rexpr) \
  BUILDD_ASSIGN_OR_RETURN_IMPL_(BUILDD_CONCAT_(buildd_statusor_, __LINE__), lhs, rexpr)

#define BUILDD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // BUILDD_COMMON_STATUS_H_
