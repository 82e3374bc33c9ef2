#ifndef BUILDD_TESTS_E2E_MESH_FIXTURE_H_
#define BUILDD_TESTS_E2E_MESH_FIXTURE_H_

// The REST and SSE helpers end-to-end tests share (GatewayTest), and a
// fixture over the real binaries (tests/testing/mesh.h) that uses them.

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "buildd/v1/runner.grpc.pb.h"
#include "common/db.h"
#include "tests/testing/files.h"
#include "tests/testing/http_client.h"
#include "tests/testing/mesh.h"

namespace buildd {

using ::buildd::testing::HttpResult;
using ::buildd::testing::Mesh;
using ::buildd::testing::SseItem;
using ::buildd::testing::SseStream;
using Struct = google::protobuf::Struct;

inline Struct Json(const std::string& text) {
  Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(text, &s);
  EXPECT_TRUE(status.ok()) << "not JSON: " << text;
  return s;
}

inline std::string Str(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "" : it->second.string_value();
}

inline double Num(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? -1 : it->second.number_value();
}

inline const Struct& Obj(const Struct& s, const std::string& key) {
  static const Struct empty;
  auto it = s.fields().find(key);
  return it == s.fields().end() ? empty : it->second.struct_value();
}

// Calls to one gateway, as the key given or as its admin.
// The text of the output, result and error events among `events`, a line
// each.
inline std::string OutputOf(const std::vector<SseItem>& events) {
  std::string out;
  for (const SseItem& item : events) {
    if (item.event == "output" || item.event == "result" || item.event == "error") {
      absl::StrAppend(&out, Str(Json(item.data), "text"), "\n");
    }
  }
  return out;
}

class GatewayTest : public ::testing::Test {
 protected:
  virtual std::string gateway_url() const = 0;
  virtual std::string admin_key() const = 0;

  HttpResult Call(const std::string& method, const std::string& path, const std::string& key,
                  const std::string& body = "") {
    return CallAt(gateway_url(), method, path, key, body);
  }
  // The same through the gateway at `url` (another replica's).
  HttpResult CallAt(const std::string& url, const std::string& method, const std::string& path,
                    const std::string& key, const std::string& body = "") {
    testing::Headers headers = {{"Content-Type", "application/json"}};
    if (!key.empty()) headers.push_back({"Authorization", "Bearer " + key});
    return testing::Request(method, url, path, headers, body);
  }

  // A service account with canClaim/canCreate on a new workspace.
  struct Setup {
    std::string account_id, api_key, workspace_id;
  };
  Setup CreateAccountAndWorkspace(const std::string& type, bool claim, bool create,
                                  const std::string& extra = "") {
    Setup s;
    HttpResult acc = Call("POST", "/api/accounts", admin_key(),
                          absl::StrCat(R"({"type":")", type, R"(","name":"runner )", type,
                                       R"(","maxConcurrentWorkers":8)", extra, "}"));
    EXPECT_EQ(acc.status, 201) << acc.body;
    Struct a = Json(acc.body);
    s.account_id = Str(a, "id");
    s.api_key = Str(a, "apiKey");
    HttpResult ws = Call("POST", "/api/workspaces", admin_key(), R"({"name":"demo"})");
    EXPECT_EQ(ws.status, 201) << ws.body;
    s.workspace_id = Str(Json(ws.body), "id");
    HttpResult grant = Call("POST", absl::StrCat("/api/accounts/", s.account_id, "/workspaces"),
                            admin_key(),
                            absl::StrCat(R"({"workspaceId":")", s.workspace_id, R"(","canClaim":)",
                                         claim ? "true" : "false", R"(,"canCreate":)",
                                         create ? "true" : "false", "}"));
    EXPECT_EQ(grant.status, 200) << grant.body;
    return s;
  }

  std::string CreateTask(const std::string& key, const std::string& workspace_id,
                         const std::string& command, const std::string& extra = "") {
    HttpResult r = Call("POST", "/api/tasks", key,
                        absl::StrCat(R"({"workspaceId":")", workspace_id,
                                     R"(","title":"t","provider":"command","command":)",
                                     JsonString(command), extra, "}"));
    EXPECT_EQ(r.status, 201) << r.body;
    return Str(Json(r.body), "id");
  }

  static std::string JsonString(const std::string& s) {
    google::protobuf::Value v;
    v.set_string_value(s);
    std::string out;
    google::protobuf::util::MessageToJsonString(v, &out);
    return out;
  }

  // Polls GET `path` (as admin) until its JSON satisfies `done`; returns the
  // last answer, failing the test after `timeout_ms`.
  template <typename Done>
  Struct WaitForJson(const std::string& path, Done done, const std::string& what,
                     int timeout_ms = 20000) {
    Struct last;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      HttpResult r = Call("GET", path, admin_key());
      if (r.status == 200) {
        last = Json(r.body);
        if (done(last)) return last;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ADD_FAILURE() << path << " never showed " << what << "; last " << last.DebugString();
    return last;
  }

  // Waits until GET /api/tasks/:id reports `state`.
  Struct WaitForTaskState(const std::string& task_id, const std::string& state,
                          int timeout_ms = 20000) {
    return WaitForJson(
        "/api/tasks/" + task_id,
        [&](const Struct& got) { return Str(Obj(got, "task"), "state") == state; },
        "state " + state, timeout_ms);
  }

  // Reads events (skipping heartbeats) until one of `task_id` has a type in
  // `until`; returns every event of the task read.
  std::vector<SseItem> ReadTaskEvents(SseStream& stream, const std::string& task_id,
                                      const std::set<std::string>& until, size_t max = 1000) {
    std::vector<SseItem> out;
    while (out.size() < max) {
      auto item = stream.NextEvent(absl::Seconds(20));
      if (!item.ok()) {
        ADD_FAILURE() << "stream ended: " << item.status();
        break;
      }
      Struct e = Json(item->data);
      if (Str(e, "taskId") != task_id) continue;
      out.push_back(*item);
      if (until.count(item->event) > 0) break;
    }
    return out;
  }
};

class MeshTest : public GatewayTest {
 protected:
  explicit MeshTest(Mesh::Options options = Mesh::Options{}) : mesh_(options) {}

  std::string gateway_url() const override { return mesh_.gateway_url(); }
  std::string admin_key() const override { return mesh_.admin_key(); }

  int64_t Metric(const std::string& name) {
    HttpResult r = testing::Request("GET", absl::StrCat("127.0.0.1:", mesh_.broker_metrics_port()),
                                    "/metrics");
    for (absl::string_view line : absl::StrSplit(r.body, '\n')) {
      if (absl::StartsWith(line, name + " ")) {
        double v = 0;
        if (absl::SimpleAtod(line.substr(name.size() + 1), &v)) return static_cast<int64_t>(v);
      }
    }
    return -1;
  }

  // The types of the task's events, in order.
  std::vector<std::string> EventTypes(const std::string& task_id) {
    auto pool = OpenPool(mesh_.database_url(), 1);
    EXPECT_TRUE(pool.ok()) << pool.status();
    if (!pool.ok()) return {};
    soci::session sql(**pool);
    std::vector<std::string> types(1000);
    sql << "SELECT type FROM events WHERE task_id = :t ORDER BY id", soci::use(task_id),
        soci::into(types);
    return types;
  }

  // Every log the mesh's processes wrote.
  std::string AllLogs() {
    std::string all;
    for (const auto& entry : std::filesystem::directory_iterator(mesh_.dir())) {
      if (absl::EndsWith(entry.path().string(), ".log")) {
        all += testing::ReadFile(entry.path().string());
      }
    }
    return all;
  }

  Mesh mesh_;
};

// A runner stream driven by hand, as an attacker's client would.
class RawRunner {
 public:
  RawRunner(const std::string& broker, const std::string& key,
            std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials())
      : stub_(v1::RunnerService::NewStub(grpc::CreateChannel(broker, credentials))) {
    context_.AddMetadata("authorization", "Bearer " + key);
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stream_ = stub_->Connect(&context_);
  }
  ~RawRunner() { Close(); }

  // Sends Hello (resuming `resume`: {worker, epoch}) and reads the answer.
  v1::BrokerMessage Hello(const std::string& name,
                          const std::vector<std::pair<std::string, int64_t>>& resume = {},
                          const std::vector<std::string>& capabilities = {"command"}) {
    v1::RunnerMessage hello;
    hello.mutable_hello()->set_name(name);
    hello.mutable_hello()->set_max_tasks(1);
    for (const std::string& c : capabilities) hello.mutable_hello()->add_capabilities()->set_name(c);
    for (const auto& [worker, epoch] : resume) {
      v1::ResumeWorker* r = hello.mutable_hello()->add_resume();
      r->set_worker_id(worker);
      r->set_epoch(epoch);
    }
    EXPECT_TRUE(stream_->Write(hello));
    return Read();
  }
  v1::BrokerMessage Read() {
    v1::BrokerMessage in;
    if (!stream_->Read(&in)) in.Clear();
    return in;
  }
  void Write(const v1::RunnerMessage& m) { EXPECT_TRUE(stream_->Write(m)); }
  // Event `type` with `text` and a runner name, as worker `worker` at `epoch`.
  void Event(const std::string& worker, int64_t epoch, int64_t seq, const std::string& type,
             const std::string& text) {
    v1::RunnerMessage m;
    m.mutable_event()->set_worker_id(worker);
    m.mutable_event()->set_epoch(epoch);
    m.mutable_event()->set_seq(seq);
    m.mutable_event()->mutable_event()->set_type(type);
    m.mutable_event()->mutable_event()->set_text(text);
    m.mutable_event()->mutable_event()->set_runner_name("someone-else");
    Write(m);
  }
  // Waits for the broker to end the stream; its status.
  grpc::Status Finish() {
    v1::BrokerMessage ignored;
    while (stream_->Read(&ignored)) {
    }
    finished_ = true;
    return stream_->Finish();
  }
  void Close() {
    if (finished_) return;
    stream_->WritesDone();
    context_.TryCancel();
    (void)Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<v1::RunnerService::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::RunnerMessage, v1::BrokerMessage>> stream_;
  bool finished_ = false;
};

}  // namespace buildd

#endif  // BUILDD_TESTS_E2E_MESH_FIXTURE_H_
