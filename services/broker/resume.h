#ifndef BUILDD_SERVICES_BROKER_RESUME_H_
#define BUILDD_SERVICES_BROKER_RESUME_H_

#include "absl/status/status.h"
#include "buildd/v1/common.pb.h"
#include "services/broker/accounts_client.h"
#include "services/broker/broker_store.h"

namespace buildd::broker {

namespace pb = ::buildd::v1;

// For a new task with resumeFrom (no-op without): checks that the earlier
// task is one `p` may continue — visible to it, created by its account
// (unless admin), in the same workspace, run with the same provider, with a
// stored agent session — and takes its provider and branches where `task`
// names none. Errors name resumeFrom; an earlier task `p` may not see is
// "not found". Reads `store`; thread-safe.
absl::Status ResolveResumeFrom(BrokerStore& store, const Principal& p, pb::Task& task);

}  // namespace buildd::broker

#endif  // BUILDD_SERVICES_BROKER_RESUME_H_
