#ifndef BUILDD_BENCH_REPORT_H_
#define BUILDD_BENCH_REPORT_H_

#include <optional>
#include <string>
#include <vector>

namespace buildd::bench {

// One figure of the summary table, its target and the peer's figure.
struct Figure {
  Figure(std::string name, std::string unit) : name(std::move(name)), unit(std::move(unit)) {}

  std::string name;
  std::string unit;
  // The measured figure, or why it could not be measured.
  std::optional<double> value;
  std::string missing;
  bool lower_is_better = true;
  // The target: at most (lower_is_better) or at least `limit`, and, with
  // `peer_factor`, at most / at least peer_factor times the peer's figure.
  // A figure without a limit is shown for what it tells, with no verdict.
  std::optional<double> limit;
  std::optional<double> peer_factor;
  // Whether the peer runs a comparable workload, and its figure (or why not).
  bool has_peer = false;
  std::optional<double> peer;
  std::string peer_missing;
};

// Prints the figures as one table: figure, buildd, peer, buildd/peer,
// target, and whether it was met. A part of a target that cannot be judged
// (no figure, no peer) leaves it not met, saying why.
void PrintSummary(const std::vector<Figure>& figures);

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_REPORT_H_
