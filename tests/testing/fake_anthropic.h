#ifndef BUILDD_TESTS_TESTING_FAKE_ANTHROPIC_H_
#define BUILDD_TESTS_TESTING_FAKE_ANTHROPIC_H_

// A scripted stand-in for the Anthropic Messages API on 127.0.0.1, so that
// tests can run the real Claude Code CLI offline and decide what "the model"
// answers at each turn.

#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace google::protobuf {
class Struct;
}  // namespace google::protobuf

namespace buildd::testing {

// One content block of an assistant turn.
struct FakeBlock {
  enum class Kind { kText, kToolUse };

  static FakeBlock Text(std::string text);
  // `input_json` is the tool's input object, e.g. for ("Write",
  // R"({"file_path":"a.txt","content":"hi\n"})").
  static FakeBlock ToolUse(std::string name, std::string input_json);

  Kind kind = Kind::kText;
  std::string text;        // kText
  std::string name;        // kToolUse
  std::string input_json;  // kToolUse
};

// One answer of the model.
struct FakeTurn {
  // An answer made of `blocks`.
  static FakeTurn Reply(std::vector<FakeBlock> blocks);
  // The API's error answer: `http_status` (not 200) with `message`.
  static FakeTurn Error(int http_status, std::string message);
  // This turn, held back until Release(gate).
  FakeTurn HeldAt(std::string gate) &&;

  std::vector<FakeBlock> blocks;
  // When not empty, the answer waits until Release(gate).
  std::string gate;
  // Not 200: the answer is the API's error body
  // {"type":"error","error":{"type":...,"message":error_message}}.
  int http_status = 200;
  std::string error_message;
};

// Serves, on 127.0.0.1 and an ephemeral port:
//   POST /v1/messages               a scripted turn, as server-sent events when
//                                   the request asks "stream": true, else as
//                                   one JSON message
//   POST /v1/messages/count_tokens  {"input_tokens": N}
//   anything else                   200 {}
// Connections are kept alive; each is served by its own thread. Every
// request is recorded. Thread-safe.
class FakeAnthropic {
 public:
  // One request as received.
  struct Request {
    std::string method;
    std::string path;  // the target without its query string
    std::string body;
    // The scripted key found in the request's messages; "" when none.
    std::string key;
    // How many assistant messages the request's history holds.
    int assistant_messages = 0;
    // The X-Claude-Code-Session-Id header.
    std::string session_id;
    // The x-api-key header: the key the CLI was given.
    std::string api_key;
  };

  // Starts listening. Aborts the test binary when no socket can be bound.
  FakeAnthropic();
  // Releases every gate, closes every connection and joins the threads.
  ~FakeAnthropic();
  FakeAnthropic(const FakeAnthropic&) = delete;
  FakeAnthropic& operator=(const FakeAnthropic&) = delete;

  // "http://127.0.0.1:PORT".
  std::string base_url() const;

  // Conversations whose request `messages` contain `key` anywhere in their
  // JSON are answered from `turns`: a request whose history already holds N
  // assistant messages gets turns[N], so a conversation resumed with its
  // history continues at the right turn. Past the end it gets the text
  // "Done.". A request that matches no key gets the text "ok". When several
  // keys match, the one scripted first wins.
  void Script(std::string key, std::vector<FakeTurn> turns);

  // Lets every answer waiting at `gate`, and every later one, go.
  void Release(const std::string& gate);

  // True once an answer has reached `gate` (it then waits there until
  // Release); false when none did within `timeout`.
  bool WaitForGate(const std::string& gate, absl::Duration timeout);

  // Every request so far, in arrival order.
  std::vector<Request> requests() const;

  // Environment for a claude CLI that should talk to this server only: the
  // base URL, a fake API key, and no telemetry, update checks or other
  // traffic besides the conversation.
  std::vector<std::pair<std::string, std::string>> ClaudeEnv() const;

 private:
  struct Net;
  struct Connection;

  void AcceptLoop();
  // Answers the requests of one connection until the client closes it.
  void Serve(Connection* connection);
  // Finds the script for a POST /v1/messages; fills in `request`'s key and
  // assistant_messages.
  FakeTurn TurnFor(const google::protobuf::Struct& body, Request* request);
  // Blocks until `gate` is released or the server stops.
  void WaitAtGate(const std::string& gate);

  std::unique_ptr<Net> net_;
  int port_ = 0;
  std::thread accept_thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<std::string, std::vector<FakeTurn>>> scripts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> reached_gates_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> released_gates_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

// "POST /v1/messages key=k assistant_messages=1 session_id=s", for test
// failure messages.
std::ostream& operator<<(std::ostream& os, const FakeAnthropic::Request& request);

// The claude CLI installed for tests, from $BUILDD_TEST_CLAUDE (`./buildd
// test` installs it and sets the variable). Aborts the test binary with a
// message that says so when the variable is unset.
std::string TestClaudeCli();

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_FAKE_ANTHROPIC_H_
