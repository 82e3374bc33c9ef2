#include "bench/report.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace buildd::bench {

namespace {

std::string Value(double v, const std::string& unit) {
  if (unit == "ms") return absl::StrFormat("%.2f ms", v);
  if (v >= 100) return absl::StrFormat("%.0f %s", v, unit);
  return absl::StrFormat("%.1f %s", v, unit);
}

std::string Target(const Figure& f) {
  if (!f.limit) return "(none)";
  const char* op = f.lower_is_better ? "<=" : ">=";
  std::string t = absl::StrCat(op, " ", Value(*f.limit, f.unit));
  if (f.peer_factor) {
    absl::StrAppend(&t, absl::StrFormat(" and %s %gx peer", op, *f.peer_factor));
  }
  return t;
}

// "met", or "NOT met" with the reasons.
std::string Verdict(const Figure& f) {
  if (!f.limit) return "";
  if (!f.value) return "NOT met: not measured";
  auto within = [&](double bound) { return f.lower_is_better ? *f.value <= bound : *f.value >= bound; };
  std::vector<std::string> misses;
  if (!within(*f.limit)) misses.push_back(absl::StrCat("misses ", Value(*f.limit, f.unit)));
  if (f.peer_factor) {
    if (!f.peer) {
      misses.push_back("peer not measured");
    } else if (!within(*f.peer_factor * *f.peer)) {
      misses.push_back(absl::StrFormat("misses %gx peer", *f.peer_factor));
    }
  }
  if (misses.empty()) return "met";
  std::string out = "NOT met (";
  for (size_t i = 0; i < misses.size(); ++i) absl::StrAppend(&out, i ? "; " : "", misses[i]);
  return out + ")";
}

}  // namespace

void PrintSummary(const std::vector<Figure>& figures) {
  struct Row {
    std::string cells[6];
  };
  std::vector<Row> rows = {{{"figure", "buildd", "peer", "buildd/peer", "target", "verdict"}}};
  for (const Figure& f : figures) {
    Row r;
    r.cells[0] = f.name;
    r.cells[1] = f.value ? Value(*f.value, f.unit) : "-";
    if (!f.has_peer) {
      r.cells[2] = "(none)";
      r.cells[3] = "";
    } else if (f.peer) {
      r.cells[2] = Value(*f.peer, f.unit);
      r.cells[3] = f.value && *f.peer > 0 ? absl::StrFormat("%.2f", *f.value / *f.peer) : "-";
    } else {
      r.cells[2] = "-";
      r.cells[3] = "-";
    }
    r.cells[4] = Target(f);
    r.cells[5] = Verdict(f);
    rows.push_back(std::move(r));
  }
  size_t width[5] = {};
  for (const Row& r : rows) {
    for (int i = 0; i < 5; ++i) width[i] = std::max(width[i], r.cells[i].size());
  }
  std::printf("\nsummary (buildd/peer: below 1 is faster for latencies, above 1 for rates)\n");
  for (const Row& r : rows) {
    std::printf("  %-*s  %*s  %*s  %*s  %-*s  %s\n", static_cast<int>(width[0]), r.cells[0].c_str(),
                static_cast<int>(width[1]), r.cells[1].c_str(), static_cast<int>(width[2]),
                r.cells[2].c_str(), static_cast<int>(width[3]), r.cells[3].c_str(),
                static_cast<int>(width[4]), r.cells[4].c_str(), r.cells[5].c_str());
  }
  bool notes = false;
  for (const Figure& f : figures) {
    if (!f.value || (f.has_peer && !f.peer)) {
      if (!notes) std::printf("  why some figures are missing:\n");
      notes = true;
      if (!f.value) std::printf("    %s: %s\n", f.name.c_str(), f.missing.c_str());
      if (f.has_peer && !f.peer) std::printf("    %s (peer): %s\n", f.name.c_str(), f.peer_missing.c_str());
    }
  }
}

}  // namespace buildd::bench
