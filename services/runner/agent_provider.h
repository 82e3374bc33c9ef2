#ifndef BUILDD_SERVICES_RUNNER_AGENT_PROVIDER_H_
#define BUILDD_SERVICES_RUNNER_AGENT_PROVIDER_H_

#include <memory>
#include <string>

#include <google/protobuf/struct.pb.h>

#include "absl/status/statusor.h"
#include "services/runner/agent_stream.h"
#include "services/runner/process_group.h"

namespace buildd::runner {

// Where this runner finds the coding-agent CLIs and keeps their state.
struct ProviderSettings {
  // The executables; "claude" / "codex" (looked up on PATH) when empty.
  std::string claude_path;
  std::string codex_path;
  // Claude Code's configuration directory (sessions live under
  // projects/<cwd>/<id>.jsonl): $CLAUDE_CONFIG_DIR, else ~/.claude.
  std::string claude_config_dir;
  // Codex's home (sessions under sessions/…/rollout-…-<id>.jsonl):
  // $CODEX_HOME, else ~/.codex.
  std::string codex_home;
};

// Fills the empty directories of `settings` with the CLIs' defaults under
// $HOME (the runner's flags already fall back to $CLAUDE_CONFIG_DIR and
// $CODEX_HOME).
ProviderSettings ResolveProviderSettings(ProviderSettings settings);

// What a task may choose about its agent, from Task.provider_options:
//   model, permissionMode, allowedTools, disallowedTools, maxTurns,
//   appendSystemPrompt (Claude Code); model, sandbox (Codex).
// Tool lists are a string ("Bash Edit") or a list of strings.
struct ProviderOptions {
  std::string model;
  // Claude Code. acceptEdits with an allowlist works as root too, where the
  // CLI refuses bypassPermissions.
  std::string permission_mode = "acceptEdits";
  std::string allowed_tools = "Bash Edit MultiEdit Write Read Glob Grep LS NotebookEdit TodoWrite";
  std::string disallowed_tools;
  int max_turns = 0;
  std::string append_system_prompt;
  // Codex: read-only, workspace-write or danger-full-access.
  std::string sandbox = "workspace-write";
};

// Reads Task.provider_options; InvalidArgument names the field
// ("providerOptions.maxTurns must be a positive number").
absl::StatusOr<ProviderOptions> ParseProviderOptions(const google::protobuf::Struct& options);

// One invocation of an agent CLI.
struct AgentRun {
  std::string prompt;
  // Non-empty: continue this session.
  std::string session_id;
  // A planning pass: the agent may read but not change anything.
  bool plan = false;
};

// The command that runs `provider` ("claude" or "codex") in `dir`. Values
// reach the shell only through the environment, never as shell text:
//   claude -p --output-format stream-json --verbose --permission-mode M
//          [--model …] [--allowedTools …] [--resume ID] -- PROMPT
//   codex exec --json --skip-git-repo-check -c sandbox_mode="…" [-m …]
//          [resume ID] -- PROMPT
// with CLAUDE_CONFIG_DIR or CODEX_HOME set to the settings' directory.
SpawnOptions AgentCommand(const std::string& provider, const ProviderSettings& settings,
                          const ProviderOptions& options, const AgentRun& run,
                          const std::string& dir);

// Creates the state directory of `provider` (settings.claude_config_dir or
// codex_home; nothing when empty) when it is missing: Codex refuses to
// start with a CODEX_HOME that does not exist.
absl::Status EnsureStateDir(const std::string& provider, const ProviderSettings& settings);

// Makes a task's own state directory of `provider` (in `task`) from the
// runner's (in `runner`): its settings (Claude Code's settings.json, Codex's
// config.toml), never other tasks' sessions; the runner user's login
// (.credentials.json, auth.json) only when the task brings no key.
absl::Status SeedStateDir(const std::string& provider, const ProviderSettings& runner,
                          const ProviderSettings& task, bool has_key);

// OK for a session id that may go on an agent's command line: 1 to 128
// letters, digits, '-' and '_', starting with a letter or digit.
absl::Status CheckSessionId(const std::string& id);

// The parser of `provider`'s machine output.
std::unique_ptr<AgentStreamParser> MakeStreamParser(const std::string& provider);

// Claude Code's directory name for a project at `cwd`: every character
// other than a letter or digit becomes '-' ("/tmp/a.b" → "-tmp-a-b").
std::string ClaudeProjectDirName(const std::string& cwd);

// The stored transcript of session `session_id` run in `dir`, read from
// the provider's state directory (Claude Code: exactly
// projects/<ClaudeProjectDirName(dir)>/<id>.jsonl, where it writes).
// NotFound when it has none.
absl::StatusOr<std::string> ReadSessionSnapshot(const std::string& provider,
                                                const ProviderSettings& settings,
                                                const std::string& session_id,
                                                const std::string& dir);

// Writes a transcript taken on another runner where `provider` looks for it
// when resuming `session_id` in `dir`: Claude Code's
// projects/<ClaudeProjectDirName(dir)>/<id>.jsonl, or Codex's
// sessions/YYYY/MM/DD/rollout-YYYY-MM-DDTHH-MM-SS-<id>.jsonl (the time the
// session began). An existing local copy is kept.
absl::Status RestoreSessionSnapshot(const std::string& provider, const ProviderSettings& settings,
                                    const std::string& session_id, const std::string& data,
                                    const std::string& dir);

}  // namespace buildd::runner

#endif  // BUILDD_SERVICES_RUNNER_AGENT_PROVIDER_H_
