#include "services/runner/drain.h"

#include "absl/time/time.h"
#include "common/logging.h"

namespace buildd::runner {

bool DrainRunner(RunnerAgent& agent, RunnerClient& client, const DrainOptions& options) {
  agent.BeginDrain();
  const int running = agent.running_tasks();
  if (running > 0) {
    Log()->info("draining: waiting up to {} ms for {} running tasks", options.drain_timeout.count(),
                running);
  }
  if (!agent.WaitUntilNoRunningTasks(absl::FromChrono(options.drain_timeout))) {
    Log()->warn("draining: tasks still running after {} ms: canceling them",
                options.drain_timeout.count());
    agent.CancelAll();
    const auto margin = std::chrono::milliseconds(5000);
    if (!agent.WaitUntilNoRunningTasks(absl::FromChrono(options.cancel_grace + margin))) {
      Log()->error("draining: tasks did not end after the cancel; they are killed on exit");
    }
  }
  bool delivered = agent.held_workers() == 0;
  if (!delivered) {
    if (client.connected() || client.reconnecting()) {
      delivered = agent.WaitUntilDelivered(absl::FromChrono(options.flush_timeout));
    }
    if (!delivered) {
      Log()->warn("draining: {} workers still have unacknowledged events", agent.held_workers());
    }
  }
  client.Stop();
  return delivered;
}

}  // namespace buildd::runner
