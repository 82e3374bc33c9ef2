#ifndef BUILDD_TESTS_TESTING_FAKE_MODEL_SERVER_H_
#define BUILDD_TESTS_TESTING_FAKE_MODEL_SERVER_H_

// What the fakes of model APIs (FakeAnthropic, FakeOpenAI) share: scripted
// turns, gates that hold a turn back, and an HTTP server on 127.0.0.1 that
// records every request. Each API's wire format sits behind FakeModelApi.

#include <cstddef>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/testing/loopback_http_server.h"

namespace google::protobuf {
class Struct;
class Value;
}  // namespace google::protobuf

namespace buildd::testing {

// One part of a model's answer.
struct FakeBlock {
  enum class Kind { kText, kToolUse, kCustomToolUse };

  static FakeBlock Text(std::string text);
  // A call of tool `name`; `input_json` is its input object, e.g. for
  // ("Write", R"({"file_path":"a.txt","content":"hi\n"})").
  static FakeBlock ToolUse(std::string name, std::string input_json);
  // A call of a tool whose input is free text rather than JSON (a custom
  // tool of the Responses API, such as Codex's apply_patch). The Messages
  // API has none: FakeAnthropic sends it as a tool_use with input
  // {"input": input}.
  static FakeBlock CustomToolUse(std::string name, std::string input);

  Kind kind = Kind::kText;
  std::string text;        // kText; kCustomToolUse: the input
  std::string name;        // kToolUse, kCustomToolUse
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
  // Not 200: the answer is the API's error body carrying error_message.
  int http_status = 200;
  std::string error_message;
};

// `s` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view s);

// The wire format of one model API. Implementations are stateless; their
// methods may run on several threads at once.
class FakeModelApi {
 public:
  struct Reply {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
  };

  virtual ~FakeModelApi() = default;

  // True for the requests that ask the model for its next turn.
  virtual bool AsksForTurn(absl::string_view method, absl::string_view path) const = 0;
  // The conversation in such a request's body, where script keys are looked
  // for; nullptr when the body has none.
  virtual const google::protobuf::Value* Conversation(const google::protobuf::Struct& body) const = 0;
  // How many answers of the model the conversation already holds.
  virtual int ModelTurns(const google::protobuf::Struct& body) const = 0;
  // The header in which the client names its session.
  virtual std::string SessionHeader() const = 0;
  // The header that carries the client's API key.
  virtual std::string KeyHeader() const = 0;
  // The answer to a turn request with `body` (of `body_bytes`); `id` is
  // unique per answer.
  virtual Reply Answer(const FakeTurn& turn, const google::protobuf::Struct& body,
                       size_t body_bytes, int id) const = 0;
  // The answer to any other request.
  virtual Reply Other(absl::string_view method, absl::string_view path,
                      const std::string& body) const = 0;
};

// Serves `api` on 127.0.0.1 and an ephemeral port. Connections are kept
// alive; each is served by its own thread. Every request is recorded.
// Thread-safe.
class FakeModelServer {
 public:
  // One request as received.
  struct Request {
    std::string method;
    std::string path;  // the target without its query string
    std::string body;
    // The scripted key found in the request's conversation; "" when none.
    std::string key;
    // How many answers of the model the request's history holds.
    int assistant_messages = 0;
    // The API's session header.
    std::string session_id;
    // The API's key header as sent ("Bearer sk-…" for Authorization).
    std::string api_key;
  };

  // Starts listening. Aborts the test binary when no socket can be bound.
  explicit FakeModelServer(std::unique_ptr<FakeModelApi> api);
  // Releases every gate, closes every connection and joins the threads.
  ~FakeModelServer();
  FakeModelServer(const FakeModelServer&) = delete;
  FakeModelServer& operator=(const FakeModelServer&) = delete;

  // "http://127.0.0.1:PORT".
  std::string base_url() const;

  // Conversations that contain `key` anywhere in their JSON are answered
  // from `turns`: a request whose history already holds N answers of the
  // model gets turns[N], so a conversation resumed with its history
  // continues at the right turn. Past the end it gets the text "Done.". A
  // request that matches no key gets the text "ok". When several keys match,
  // the one scripted first wins.
  void Script(std::string key, std::vector<FakeTurn> turns);

  // Lets every answer waiting at `gate`, and every later one, go.
  void Release(const std::string& gate);

  // True once an answer has reached `gate` (it then waits there until
  // Release); false when none did within `timeout`.
  bool WaitForGate(const std::string& gate, absl::Duration timeout);

  // Every request so far, in arrival order.
  std::vector<Request> requests() const;

 private:
  // Answers one request (on a connection's thread).
  HttpAnswer Answer(const HttpExchange& exchange);
  // Finds the script for a turn request; fills in `request`'s key and
  // assistant_messages.
  FakeTurn TurnFor(const google::protobuf::Struct& body, Request* request);
  // Blocks until `gate` is released (true) or the server stops (false).
  bool WaitAtGate(const std::string& gate);

  const std::unique_ptr<FakeModelApi> api_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<std::string, std::vector<FakeTurn>>> scripts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> reached_gates_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> released_gates_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: it stops (joining the threads that answer) before the rest goes.
  LoopbackHttpServer server_;
};

// "POST /v1/messages key=k assistant_messages=1 session_id=s", for test
// failure messages.
std::ostream& operator<<(std::ostream& os, const FakeModelServer::Request& request);

// One server-sent event: "event: <type>\ndata: <data>\n\n".
std::string SseEvent(absl::string_view type, absl::string_view data);
// The event types of a server-sent event stream, in order.
std::vector<std::string> EventNames(const std::string& body);

// A string field of `object`; "" when it is missing or not a string.
std::string StringField(const google::protobuf::Struct& object, const std::string& name);

// A rough token count, enough for a CLI's usage figures.
int TokenCount(absl::string_view text);

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_FAKE_MODEL_SERVER_H_
