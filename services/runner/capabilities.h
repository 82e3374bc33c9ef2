#ifndef BUILDD_SERVICES_RUNNER_CAPABILITIES_H_
#define BUILDD_SERVICES_RUNNER_CAPABILITIES_H_

#include <string>
#include <vector>

#include "services/runner/agent_provider.h"

namespace buildd::runner {

// One thing this runner has, as reported in Hello.capabilities.
struct Capability {
  std::string name;
  std::string version;
};

// The provider every runner has: run a shell command.
inline constexpr char kCommandProvider[] = "command";

// Detects, once at start: "os" (uname: "Linux 6.1.0-18-amd64 x86_64"), the
// tools "git", "node", "docker" and the providers "claude", "codex" — at
// the paths `providers` names, else found on PATH — when they answer
// `--version`, and always the provider "command" (version =
// `runner_version`). Sets the providers' paths to what was found ("" when
// not offered). Runs child processes; takes up to a few seconds when a tool
// hangs.
std::vector<Capability> DetectCapabilities(const std::string& runner_version,
                                           ProviderSettings* providers);

// The version number in a tool's `--version` output: "git version 2.39.2" →
// "2.39.2", "v18.13.0" → "18.13.0", "Docker version 20.10.24+dfsg1, build x"
// → "20.10.24+dfsg1". Falls back to the trimmed first line.
std::string ParseVersion(const std::string& output);

// The full path of `program` found on PATH, or "" when absent.
std::string FindOnPath(const std::string& program);

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_CAPABILITIES_H_
