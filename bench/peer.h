#ifndef BUILDD_BENCH_PEER_H_
#define BUILDD_BENCH_PEER_H_

#include <string>

#include "bench/bench_util.h"

namespace buildd::bench {

// The peer's figures for the workloads buildd runs: graphile-worker, by
// bench/peer/graphile_bench.mjs.
struct PeerResult {
  bool ok = false;
  std::string error;  // why there are no figures
  std::string name, version, node;
  int concurrency = 0;
  Latency one_creator;    // addJob called -> handler starts
  int creators = 0;
  Latency many_creators;
  double lifecycle_jobs_per_s = 0;  // first addJob -> the last job's delete committed
  int lifecycle_jobs = 0;
};

struct PeerOptions {
  std::string tools_dir;     // holds node_modules/graphile-worker
  std::string database_url;  // the peer's own database
  int one_creator_jobs = 1000;
  int jobs = 2000;
  int creators = 8;
  int concurrency = 64;
  std::string log_path;      // the script's stderr
};

// Runs the peer's script with node and reads its JSON line.
PeerResult RunPeer(const PeerOptions& options);

}  // namespace buildd::bench

#endif  // BUILDD_BENCH_PEER_H_
