#ifndef BUILDD_SERVICES_RUNNER_DRAIN_H_
#define BUILDD_SERVICES_RUNNER_DRAIN_H_

#include <chrono>

#include "services/runner/runner_agent.h"
#include "services/runner/runner_client.h"

namespace buildd::runner {

struct DrainOptions {
  // How long running tasks may take before they are canceled.
  std::chrono::milliseconds drain_timeout{60000};
  // The cancel grace; the wait after canceling is this plus a margin.
  std::chrono::milliseconds cancel_grace{10000};
  // How long to wait for the broker to acknowledge what is left.
  std::chrono::milliseconds flush_timeout{10000};
};

// The graceful stop (SIGTERM, SIGINT or the broker's Drain): rejects new
// work, lets running tasks finish within drain_timeout (then cancels them),
// waits (bounded) until the broker acknowledged every event and Finished,
// then closes the stream (WritesDone, Finish) and stops the client.
// Returns true when everything was delivered. Blocks.
bool DrainRunner(RunnerAgent& agent, RunnerClient& client, const DrainOptions& options);

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_DRAIN_H_
