#ifndef BUILDD_COMMON_GRPC_STATUS_H_
#define BUILDD_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace buildd {

// The one seam between absl::Status and grpc::Status; the codes are
// identical. INTERNAL details are logged, not sent.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace buildd

#endif  // BUILDD_COMMON_GRPC_STATUS_H_
