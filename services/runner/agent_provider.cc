#include "services/runner/agent_provider.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <algorithm>
#include <optional>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status.h"

namespace buildd::runner {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Struct;
using google::protobuf::Value;

std::string HomeDir() {
  const char* home = std::getenv("HOME");
  return home != nullptr && *home != '\0' ? home : "/root";
}

absl::Status BadOption(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("providerOptions.", field, " ", what));
}

absl::StatusOr<std::string> StringOption(const Value& v, const std::string& field) {
  if (!v.has_string_value()) return BadOption(field, "must be a string");
  return v.string_value();
}

// "Bash Edit", "Bash,Edit" or ["Bash", "Edit"] → "Bash Edit".
absl::StatusOr<std::string> ToolsOption(const Value& v, const std::string& field) {
  std::vector<std::string> tools;
  if (v.has_string_value()) {
    for (absl::string_view t : absl::StrSplit(v.string_value(), absl::ByAnyChar(" ,"), absl::SkipEmpty())) {
      tools.emplace_back(t);
    }
  } else if (v.has_list_value()) {
    for (const Value& t : v.list_value().values()) {
      if (!t.has_string_value() || t.string_value().empty()) {
        return BadOption(field, "must hold tool names (strings)");
      }
      tools.push_back(t.string_value());
    }
  } else {
    return BadOption(field, "must be a string or a list of strings");
  }
  return absl::StrJoin(tools, " ");
}

}  // namespace

// A session id names a file and goes on a command line.
absl::Status CheckSessionId(const std::string& id) {
  if (id.empty() || id.size() > 128 || !absl::ascii_isalnum(static_cast<unsigned char>(id[0]))) {
    return absl::InvalidArgumentError(absl::StrCat("bad session id \"", id, "\""));
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      return absl::InvalidArgumentError(absl::StrCat("bad session id \"", id, "\""));
    }
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// `path` read only when it is a regular file inside `root` with no symbolic
// link on the way: the task wrote that directory, and the runner must not be
// made to read its own secrets into a transcript.
absl::StatusOr<std::string> ReadFileWithin(const fs::path& root, const fs::path& path) {
  std::error_code ec;
  const fs::path real_root = fs::canonical(root, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read ", root.string()));
  const fs::path real = fs::canonical(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  const fs::path expected = real_root / fs::relative(fs::absolute(path).lexically_normal(),
                                                      fs::absolute(root).lexically_normal(), ec);
  if (ec || real != expected || !fs::is_regular_file(fs::symlink_status(real, ec))) {
    return absl::PermissionDeniedError(
        absl::StrCat(path.string(), " is not a plain file of the agent's directory"));
  }
  return ReadFile(real);
}

absl::Status WriteFile(const fs::path& path, const std::string& data) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", path.parent_path().string(), ": ", ec.message()));
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << data;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp.string()));
  }
  fs::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename ", tmp.string(), ": ", ec.message()));
  return absl::OkStatus();
}

// The first file under `root` whose name ends with `suffix`.
std::optional<fs::path> FindFile(const fs::path& root, const std::string& suffix) {
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
  if (ec) return std::nullopt;
  for (const fs::directory_entry& entry : it) {
    if (entry.is_regular_file(ec) && absl::EndsWith(entry.path().filename().string(), suffix)) {
      return entry.path();
    }
  }
  return std::nullopt;
}

// When a Codex session began, from the first line of its transcript
// ({"timestamp":"2026-11-22T01:59:36.417Z","type":"session_meta",...}); now
// when that line does not say.
absl::Time CodexSessionStart(const std::string& transcript) {
  Struct first;
  const std::string line = transcript.substr(0, transcript.find('\n'));
  if (google::protobuf::util::JsonStringToMessage(line, &first).ok()) {
    auto it = first.fields().find("timestamp");
    absl::Time start;
    std::string error;
    if (it != first.fields().end() &&
        absl::ParseTime(absl::RFC3339_full, it->second.string_value(), &start, &error)) {
      return start;
    }
  }
  return absl::Now();
}

}  // namespace

ProviderSettings ResolveProviderSettings(ProviderSettings settings) {
  if (settings.claude_config_dir.empty()) settings.claude_config_dir = HomeDir() + "/.claude";
  if (settings.codex_home.empty()) settings.codex_home = HomeDir() + "/.codex";
  return settings;
}

absl::StatusOr<ProviderOptions> ParseProviderOptions(const Struct& options) {
  ProviderOptions out;
  for (const auto& [key, value] : options.fields()) {
    if (key == "model") {
      BUILDD_ASSIGN_OR_RETURN(out.model, StringOption(value, key));
    } else if (key == "permissionMode") {
      BUILDD_ASSIGN_OR_RETURN(out.permission_mode, StringOption(value, key));
      static const char* const kModes[] = {"acceptEdits", "bypassPermissions", "default", "plan",
                                           "dontAsk", "auto"};
      if (std::find(std::begin(kModes), std::end(kModes), out.permission_mode) == std::end(kModes)) {
        return BadOption(key, absl::StrCat("must be one of acceptEdits, bypassPermissions, default, "
                                           "dontAsk, auto or plan, not \"",
                                           out.permission_mode, "\""));
      }
    } else if (key == "allowedTools") {
      BUILDD_ASSIGN_OR_RETURN(out.allowed_tools, ToolsOption(value, key));
    } else if (key == "disallowedTools") {
      BUILDD_ASSIGN_OR_RETURN(out.disallowed_tools, ToolsOption(value, key));
    } else if (key == "maxTurns") {
      if (!value.has_number_value() || value.number_value() < 1 || value.number_value() > 10000 ||
          value.number_value() != static_cast<int>(value.number_value())) {
        return BadOption(key, "must be a whole number from 1 to 10000");
      }
      out.max_turns = static_cast<int>(value.number_value());
    } else if (key == "appendSystemPrompt") {
      BUILDD_ASSIGN_OR_RETURN(out.append_system_prompt, StringOption(value, key));
    } else if (key == "sandbox") {
      BUILDD_ASSIGN_OR_RETURN(out.sandbox, StringOption(value, key));
      if (out.sandbox != "read-only" && out.sandbox != "workspace-write" &&
          out.sandbox != "danger-full-access") {
        return BadOption(key, "must be read-only, workspace-write or danger-full-access");
      }
    } else {
      return BadOption(key, "is not a known option (model, permissionMode, allowedTools, "
                            "disallowedTools, maxTurns, appendSystemPrompt, sandbox)");
    }
  }
  for (char c : out.model) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_' &&
        c != ':' && c != '[' && c != ']' && c != '/' && c != '@') {
      return BadOption("model", absl::StrCat("\"", out.model, "\" is not a model name"));
    }
  }
  return out;
}

SpawnOptions AgentCommand(const std::string& provider, const ProviderSettings& settings,
                          const ProviderOptions& options, const AgentRun& run,
                          const std::string& dir) {
  SpawnOptions spawn;
  spawn.working_dir = dir;
  // Agent lines (a tool result with a whole file) can be long.
  spawn.max_line_bytes = 16 << 20;
  auto& env = spawn.env;
  env.emplace_back("BUILDD_AGENT_PROMPT", run.prompt);
  std::string command;
  // `flag "$VAR"` with VAR=value in the environment, when there is a value.
  const auto add = [&](const char* flag, const char* var, const std::string& value) {
    if (value.empty()) return;
    env.emplace_back(var, value);
    absl::StrAppend(&command, " ", flag, " \"$", var, "\"");
  };
  if (provider == "codex") {
    env.emplace_back("BUILDD_AGENT_BIN", settings.codex_path.empty() ? "codex" : settings.codex_path);
    // Where ReadSessionSnapshot looks for the transcript afterwards.
    if (!settings.codex_home.empty()) env.emplace_back("CODEX_HOME", settings.codex_home);
    command = R"(exec "$BUILDD_AGENT_BIN" exec --json --skip-git-repo-check)";
    add("-c", "BUILDD_AGENT_SANDBOX",
        absl::StrCat("sandbox_mode=\"", run.plan ? "read-only" : options.sandbox, "\""));
    add("-m", "BUILDD_AGENT_MODEL", options.model);
    add("resume", "BUILDD_AGENT_SESSION", run.session_id);
  } else {
    env.emplace_back("BUILDD_AGENT_BIN", settings.claude_path.empty() ? "claude" : settings.claude_path);
    env.emplace_back("CLAUDE_CONFIG_DIR", settings.claude_config_dir);
    command = R"(exec "$BUILDD_AGENT_BIN" -p --output-format stream-json --verbose)";
    add("--permission-mode", "BUILDD_AGENT_MODE", run.plan ? "plan" : options.permission_mode);
    add("--model", "BUILDD_AGENT_MODEL", options.model);
    add("--allowedTools", "BUILDD_AGENT_ALLOWED", options.allowed_tools);
    add("--disallowedTools", "BUILDD_AGENT_DISALLOWED", options.disallowed_tools);
    add("--max-turns", "BUILDD_AGENT_MAX_TURNS",
        options.max_turns > 0 ? std::to_string(options.max_turns) : "");
    add("--append-system-prompt", "BUILDD_AGENT_SYSTEM", options.append_system_prompt);
    add("--resume", "BUILDD_AGENT_SESSION", run.session_id);
  }
  // "--": a prompt that starts with '-' is still the prompt.
  command += R"( -- "$BUILDD_AGENT_PROMPT")";
  spawn.command = std::move(command);
  return spawn;
}

absl::Status EnsureStateDir(const std::string& provider, const ProviderSettings& settings) {
  const std::string& dir = provider == "codex" ? settings.codex_home : settings.claude_config_dir;
  if (dir.empty()) return absl::OkStatus();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status SeedStateDir(const std::string& provider, const ProviderSettings& runner,
                          const ProviderSettings& task, bool has_key) {
  const bool codex = provider == "codex";
  const std::string& from = codex ? runner.codex_home : runner.claude_config_dir;
  const std::string& to = codex ? task.codex_home : task.claude_config_dir;
  std::vector<std::string> files = {codex ? "config.toml" : "settings.json"};
  if (!has_key) files.push_back(codex ? "auth.json" : ".credentials.json");
  BUILDD_RETURN_IF_ERROR(EnsureStateDir(provider, task));
  if (from.empty()) return absl::OkStatus();
  for (const std::string& file : files) {
    std::error_code ec;
    const fs::path source = fs::path(from) / file;
    if (!fs::is_regular_file(fs::symlink_status(source, ec))) continue;
    fs::copy_file(source, fs::path(to) / file, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot copy ", source.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

std::unique_ptr<AgentStreamParser> MakeStreamParser(const std::string& provider) {
  if (provider == "codex") return std::make_unique<CodexStreamParser>();
  return std::make_unique<ClaudeStreamParser>();
}

std::string ClaudeProjectDirName(const std::string& cwd) {
  std::string out = cwd;
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) c = '-';
  }
  return out;
}

absl::StatusOr<std::string> ReadSessionSnapshot(const std::string& provider,
                                                const ProviderSettings& settings,
                                                const std::string& session_id,
                                                const std::string& dir) {
  BUILDD_RETURN_IF_ERROR(CheckSessionId(session_id));
  if (provider != "codex") {
    // Only the project of this directory: a copy restored elsewhere for an
    // earlier task may be older.
    return ReadFileWithin(settings.claude_config_dir,
                          fs::path(settings.claude_config_dir) / "projects" /
                              ClaudeProjectDirName(dir) / absl::StrCat(session_id, ".jsonl"));
  }
  // rollout-<time>-<id>.jsonl, in dated folders.
  const fs::path root = fs::path(settings.codex_home) / "sessions";
  std::optional<fs::path> file = FindFile(root, absl::StrCat("-", session_id, ".jsonl"));
  if (!file) {
    return absl::NotFoundError(
        absl::StrCat("no transcript of session ", session_id, " under ", root.string()));
  }
  return ReadFileWithin(settings.codex_home, *file);
}

absl::Status RestoreSessionSnapshot(const std::string& provider, const ProviderSettings& settings,
                                    const std::string& session_id, const std::string& data,
                                    const std::string& dir) {
  BUILDD_RETURN_IF_ERROR(CheckSessionId(session_id));
  fs::path target;
  if (provider == "codex") {
    const fs::path root = fs::path(settings.codex_home) / "sessions";
    if (FindFile(root, absl::StrCat("-", session_id, ".jsonl"))) return absl::OkStatus();
    // Codex resumes only from a file named like its own,
    // rollout-<YYYY-MM-DDTHH-MM-SS>-<id>.jsonl; the directory may be any
    // under sessions/, so the day's one, as Codex would have chosen.
    const absl::Time start = CodexSessionStart(data);
    const absl::TimeZone utc = absl::UTCTimeZone();
    target = root / absl::FormatTime("%Y/%m/%d", start, utc) /
             absl::StrCat("rollout-", absl::FormatTime("%Y-%m-%dT%H-%M-%S", start, utc), "-",
                          session_id, ".jsonl");
  } else {
    target = fs::path(settings.claude_config_dir) / "projects" / ClaudeProjectDirName(dir) /
             absl::StrCat(session_id, ".jsonl");
    std::error_code ec;
    if (fs::exists(target, ec)) return absl::OkStatus();
  }
  return WriteFile(target, data);
}

}  // namespace buildd::runner
