#ifndef BUILDD_TESTS_TESTING_FAKE_ANTHROPIC_H_
#define BUILDD_TESTS_TESTING_FAKE_ANTHROPIC_H_

// A scripted stand-in for the Anthropic Messages API on 127.0.0.1, so that
// tests can run the real Claude Code CLI offline and decide what "the model"
// answers at each turn.

#include <string>
#include <utility>
#include <vector>

#include "tests/testing/fake_model_server.h"

namespace buildd::testing {

// Serves, on 127.0.0.1 and an ephemeral port:
//   POST /v1/messages               a scripted turn, as server-sent events when
//                                   the request asks "stream": true, else as
//                                   one JSON message; an error turn gets
//                                   {"type":"error","error":{"type":...,
//                                   "message":...}}
//   POST /v1/messages/count_tokens  {"input_tokens": N}
//   anything else                   200 {}
// A turn's key is looked for in the request's `messages`; its history holds
// as many answers as it has assistant messages. Requests record the
// X-Claude-Code-Session-Id and x-api-key headers. Thread-safe.
class FakeAnthropic : public FakeModelServer {
 public:
  FakeAnthropic();

  // Environment for a claude CLI that should talk to this server only: the
  // base URL, a fake API key, and no telemetry, update checks or other
  // traffic besides the conversation.
  std::vector<std::pair<std::string, std::string>> ClaudeEnv() const;
};

// The claude CLI installed for tests, from $BUILDD_TEST_CLAUDE (`./buildd
// test` installs it and sets the variable). Aborts the test binary with a
// message that says so when the variable is unset.
std::string TestClaudeCli();

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_FAKE_ANTHROPIC_H_
