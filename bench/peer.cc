#include "bench/peer.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/process.h"

namespace buildd::bench {

namespace {

using google::protobuf::Struct;

double Number(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? 0 : it->second.number_value();
}

std::string Text(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "" : it->second.string_value();
}

Latency LatencyOf(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end()) return {};
  const Struct& l = it->second.struct_value();
  return Latency{static_cast<size_t>(Number(l, "count")), Number(l, "p50"), Number(l, "p95"),
                 Number(l, "p99")};
}

}  // namespace

PeerResult RunPeer(const PeerOptions& o) {
  PeerResult r;
  const std::string script = buildd::testing::SourceFile("bench/peer/graphile_bench.mjs");
  // The URL (with its password) goes through the environment, not argv.
  setenv("PEER_DATABASE_URL", o.database_url.c_str(), 1);
  const std::string command =
      absl::StrCat("node ", script, " --tools_dir=", o.tools_dir,
                   " --one_creator_jobs=", o.one_creator_jobs, " --jobs=", o.jobs,
                   " --creators=", o.creators, " --concurrency=", o.concurrency, " 2>", o.log_path);
  std::FILE* f = popen(command.c_str(), "r");
  unsetenv("PEER_DATABASE_URL");
  if (f == nullptr) {
    r.error = "cannot run node";
    return r;
  }
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  const int status = pclose(f);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    r.error = absl::StrCat("the peer's script failed (exit status ", status, "); see ", o.log_path);
    return r;
  }
  std::string json;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipWhitespace())) json = std::string(line);
  Struct s;
  if (auto st = google::protobuf::util::JsonStringToMessage(json, &s); !st.ok()) {
    r.error = absl::StrCat("the peer's script printed no JSON: ", out.substr(0, 300));
    return r;
  }
  r.ok = true;
  r.name = Text(s, "name");
  r.version = Text(s, "version");
  r.node = Text(s, "node");
  r.concurrency = static_cast<int>(Number(s, "concurrency"));
  r.one_creator = LatencyOf(s, "one_creator");
  r.creators = static_cast<int>(Number(s, "creators"));
  r.many_creators = LatencyOf(s, "many_creators");
  r.lifecycle_jobs = static_cast<int>(Number(s, "lifecycle_jobs"));
  r.lifecycle_jobs_per_s = Number(s, "lifecycle_jobs_per_s");
  return r;
}

}  // namespace buildd::bench
