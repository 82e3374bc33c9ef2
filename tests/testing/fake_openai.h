#ifndef BUILDD_TESTS_TESTING_FAKE_OPENAI_H_
#define BUILDD_TESTS_TESTING_FAKE_OPENAI_H_

// A scripted stand-in for the OpenAI Responses API on 127.0.0.1, so that
// tests can run the real Codex CLI offline and decide what "the model"
// answers at each turn.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "tests/testing/fake_model_server.h"

namespace buildd::testing {

// Serves, on 127.0.0.1 and an ephemeral port:
//   POST /v1/responses  a scripted turn, as server-sent events
//                       (response.created, response.output_item.added, the
//                       text or arguments delta, response.output_item.done
//                       per block, response.completed with usage) when the
//                       request asks "stream": true, else as one response
//                       object. Text blocks become assistant messages, tool
//                       blocks function calls, custom tool blocks custom
//                       tool calls. An error turn gets
//                       {"error":{"message":...,"type":...}}.
//   GET /v1/models      {"object":"list","data":[]}
//   anything else       200 {}
// A turn's key is looked for in the request's `input`; its history holds as
// many answers as it has runs of model output (assistant messages, function
// calls, reasoning) between tool results and user messages. Requests record
// the session-id header, which Codex sets to its thread id. Thread-safe.
class FakeOpenAI : public FakeModelServer {
 public:
  FakeOpenAI();

  // Writes $CODEX_HOME/config.toml into `codex_home` (created if needed): a
  // model provider that speaks the Responses API to this server with the key
  // from CodexEnv(), model gpt-5.5 (which the CLI knows), no retries, and no
  // analytics or plugin traffic.
  absl::Status WriteCodexConfig(const std::string& codex_home) const;

  // Environment for a codex CLI whose CODEX_HOME holds WriteCodexConfig's
  // file: the provider's API key (OPENAI_API_KEY, sent as "Authorization:
  // Bearer …"), and loopback exempt from any proxy.
  std::vector<std::pair<std::string, std::string>> CodexEnv() const;
};

// A call of Codex's exec_command tool that runs `command` with bash in the
// session's working directory (no login shell).
FakeBlock CodexShell(const std::string& command);

// A call of Codex's apply_patch tool (a custom tool: its input is the patch,
// "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n").
FakeBlock CodexApplyPatch(std::string patch);

// An apply_patch call that creates `path` (relative to the session's
// working directory) with `content`.
FakeBlock CodexAddFile(const std::string& path, const std::string& content);

// The codex CLI installed for tests, from $BUILDD_TEST_CODEX (`./buildd
// test` installs it and sets the variable). Aborts the test binary with a
// message that says so when the variable is unset.
std::string TestCodexCli();

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_FAKE_OPENAI_H_
