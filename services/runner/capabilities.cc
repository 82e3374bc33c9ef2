#include "services/runner/capabilities.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "services/runner/process_group.h"

namespace buildd::runner {
namespace {

constexpr auto kVersionTimeout = std::chrono::seconds(5);

// `program --version`, or "" when it fails.
std::string ToolVersion(const std::string& path) {
  // Single quotes keep the path one word for the shell.
  std::string quoted = "'";
  for (char c : path) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += "'";
  auto result = RunCommand(absl::StrCat(quoted, " --version 2>/dev/null"), kVersionTimeout);
  if (!result.ok() || result->timed_out || !result->status.success()) return "";
  return ParseVersion(result->stdout_text);
}

}  // namespace

std::string ParseVersion(const std::string& output) {
  absl::string_view first_line = output;
  first_line = first_line.substr(0, first_line.find('\n'));
  first_line = absl::StripAsciiWhitespace(first_line);
  for (absl::string_view word : absl::StrSplit(first_line, absl::ByAnyChar(" \t"))) {
    while (!word.empty() && (word.back() == ',' || word.back() == ';' || word.back() == ')')) {
      word.remove_suffix(1);
    }
    if (word.size() > 1 && (word[0] == 'v' || word[0] == 'V') && absl::ascii_isdigit(word[1])) {
      word.remove_prefix(1);
    }
    if (!word.empty() && absl::ascii_isdigit(word[0]) &&
        word.find('.') != absl::string_view::npos) {
      return std::string(word);
    }
  }
  return std::string(first_line);
}

std::string FindOnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty()) dir = ".";
    std::string candidate = absl::StrCat(dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::vector<Capability> DetectCapabilities(const std::string& runner_version,
                                           ProviderSettings* providers) {
  std::vector<Capability> capabilities;
  utsname uts;
  if (uname(&uts) == 0) {
    capabilities.push_back({"os", absl::StrCat(uts.sysname, " ", uts.release, " ", uts.machine)});
  }
  for (const char* tool : {"git", "node", "docker"}) {
    const std::string path = FindOnPath(tool);
    if (path.empty()) continue;
    const std::string version = ToolVersion(path);
    if (version.empty()) {
      Log()->debug("{} found at {} but `--version` failed; not reported", tool, path);
      continue;
    }
    capabilities.push_back({tool, version});
  }
  capabilities.push_back({kCommandProvider, runner_version});
  for (std::string* configured : {&providers->claude_path, &providers->codex_path}) {
    const std::string provider = configured == &providers->claude_path ? "claude" : "codex";
    const std::string path = configured->empty() ? FindOnPath(provider) : *configured;
    if (path.empty()) continue;
    const std::string version = ToolVersion(path);
    if (version.empty()) {
      if (configured->empty()) {
        Log()->debug("{} found at {} but `--version` failed; not reported", provider, path);
      } else {
        Log()->warn("{} at {} does not answer `--version`; not offered", provider, path);
      }
      configured->clear();
      continue;
    }
    *configured = path;
    capabilities.push_back({provider, version});
  }
  return capabilities;
}

}  // namespace buildd::runner
