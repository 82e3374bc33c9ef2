// Dispatch and throughput benchmark: the real accounts and broker binaries
// over PostgreSQL, runners on real gRPC streams.
//
// Phase 1 (dispatch): R probe runners in this process hold RunnerService
// streams; C creators call BrokerService.CreateTask T times. For each task:
// the create call's latency, and the time from the call's return to the
// Assign arriving at a runner (same clock). Probes accept and finish each
// task at once, so tasks/s covers the broker's whole state machine.
// Phase 2 (end to end): R real buildd-runner processes run T `command`
// tasks (`true`): tasks/s from the first create to the last `completed`
// event, then the RSS of every process.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "buildd/v1/accounts.grpc.pb.h"
#include "buildd/v1/broker.grpc.pb.h"
#include "buildd/v1/runner.grpc.pb.h"
#include "common/ids.h"
#include "tests/testing/process.h"

ABSL_FLAG(std::string, database_url, "", "PostgreSQL URL of an empty database");
ABSL_FLAG(int, runners, 8, "runners connected through real gRPC streams");
ABSL_FLAG(int, tasks, 2000, "tasks per phase");
ABSL_FLAG(int, creators, 8, "concurrent CreateTask callers");
ABSL_FLAG(int, real_runner_slots, 4, "--max_tasks of each real runner in phase 2");
ABSL_FLAG(bool, phase2, true, "run phase 2 with real buildd-runner processes");
ABSL_FLAG(std::string, work_dir, "/tmp/buildd-bench", "logs and runner work dirs");
ABSL_FLAG(std::string, sandbox_modes, "bwrap,none",
          "phase 2 runs once per --sandbox mode of the real runners, in this order");
ABSL_FLAG(int, sandbox_tasks, 200,
          "phase 2: tasks created one at a time to time a task's start to its first line");

namespace pb = buildd::v1;
using Clock = std::chrono::steady_clock;
using buildd::testing::Process;

namespace {

// Reads gauges from the broker's /metrics.
std::map<std::string, double> BrokerMetrics(int port) {
  std::map<std::string, double> out;
  std::FILE* f = popen(absl::StrCat("curl -s http://127.0.0.1:", port, "/metrics").c_str(), "r");
  if (f == nullptr) return out;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    char name[256];
    double v = 0;
    if (std::sscanf(line, "%255s %lf", name, &v) == 2) out[name] = v;
  }
  pclose(f);
  return out;
}

// Prints what the journal did between two readings.
void PrintJournal(const std::map<std::string, double>& a, const std::map<std::string, double>& b,
                  double wall_ms) {
  auto d = [&](const char* k) { return b.count(k) ? b.at(k) - (a.count(k) ? a.at(k) : 0) : 0; };
  const double batches = d("buildd_broker_journal_batches"), ops = d("buildd_broker_journal_ops");
  const double busy = d("buildd_broker_journal_busy_seconds") * 1000;
  std::printf("  journal: %.0f transactions for %.0f operations (%.1f per commit), busy %.0f ms of"
              " %.0f ms (%.0f%%), %.2f ms per transaction\n",
              batches, ops, batches > 0 ? ops / batches : 0, busy, wall_ms,
              wall_ms > 0 ? 100 * busy / wall_ms : 0, batches > 0 ? busy / batches : 0);
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

long RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

void Auth(grpc::ClientContext& ctx, const std::string& key) {
  ctx.AddMetadata("authorization", "Bearer " + key);
}

// Records when Assign messages arrive.
struct Arrivals {
  std::mutex mu;
  std::map<std::string, Clock::time_point> at;
  void Add(const std::string& task_id) {
    auto now = Clock::now();
    std::lock_guard<std::mutex> lock(mu);
    at.emplace(task_id, now);
  }
};

// A runner speaking the RunnerService protocol on a real stream; it accepts
// each task and finishes it at once.
class ProbeRunner {
 public:
  ProbeRunner(std::shared_ptr<grpc::Channel> channel, const std::string& key, int index,
              Arrivals& arrivals)
      : arrivals_(arrivals) {
    stub_ = pb::RunnerService::NewStub(channel);
    Auth(ctx_, key);
    stream_ = stub_->Connect(&ctx_);
    pb::RunnerMessage hello;
    hello.mutable_hello()->set_name(absl::StrCat("probe-", index));
    hello.mutable_hello()->set_max_tasks(1000);
    hello.mutable_hello()->add_capabilities()->set_name("command");
    stream_->Write(hello);
    reader_ = std::thread([this] { Read(); });
  }
  ~ProbeRunner() {
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      stream_->WritesDone();
    }
    ctx_.TryCancel();
    reader_.join();
  }
  bool welcomed() const { return welcomed_; }

 private:
  void Write(const pb::RunnerMessage& m) {
    std::lock_guard<std::mutex> lock(write_mu_);
    stream_->Write(m);
  }
  void Read() {
    pb::BrokerMessage in;
    while (stream_->Read(&in)) {
      if (in.has_welcome()) welcomed_ = true;
      if (!in.has_assign()) continue;
      const pb::Assign& a = in.assign();
      arrivals_.Add(a.task().id());
      pb::RunnerMessage accept;
      accept.mutable_accept()->set_worker_id(a.worker().id());
      accept.mutable_accept()->set_epoch(a.epoch());
      Write(accept);
      pb::RunnerMessage started;
      auto* ev = started.mutable_event();
      ev->set_worker_id(a.worker().id());
      ev->set_epoch(a.epoch());
      ev->set_seq(1);
      ev->mutable_event()->set_type("started");
      Write(started);
      pb::RunnerMessage done;
      auto* f = done.mutable_finished();
      f->set_worker_id(a.worker().id());
      f->set_epoch(a.epoch());
      f->set_outcome(pb::Finished::completed);
      f->set_last_seq(1);
      Write(done);
    }
  }

  Arrivals& arrivals_;
  std::unique_ptr<pb::RunnerService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::RunnerMessage, pb::BrokerMessage>> stream_;
  std::mutex write_mu_;
  std::thread reader_;
  std::atomic<bool> welcomed_{false};
};

// Counts `completed` events of a workspace on a Subscribe stream.
class CompletionWatch {
 public:
  CompletionWatch(std::shared_ptr<grpc::Channel> channel, const std::string& key,
                  const std::string& workspace_id, int64_t after_id) {
    stub_ = pb::BrokerService::NewStub(channel);
    Auth(ctx_, key);
    pb::SubscribeRequest req;
    req.set_workspace_id(workspace_id);
    req.set_after_id(after_id);
    reader_ = stub_->Subscribe(&ctx_, req);
    thread_ = std::thread([this] {
      pb::Event e;
      while (reader_->Read(&e)) {
        last_id_ = e.id();
        if (e.type() == "started" || e.type() == "output") {
          std::lock_guard<std::mutex> lock(mu_);
          auto& seen = e.type() == "started" ? started_ : first_output_;
          seen.emplace(e.task_id(), Clock::now());  // the first one only
        }
        if (e.type() == "completed" || e.type() == "error") {
          std::lock_guard<std::mutex> lock(mu_);
          ++done_;
          last_ = Clock::now();
          cv_.notify_all();
        }
      }
    });
  }
  ~CompletionWatch() {
    ctx_.TryCancel();
    thread_.join();
  }
  // Waits for `n` completions; returns the time of the n-th.
  Clock::time_point WaitFor(int n, std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return done_ >= n; });
    if (done_ < n) std::fprintf(stderr, "only %d of %d tasks completed\n", done_, n);
    return last_;
  }
  int64_t last_id() const { return last_id_; }
  // When this client received each task's `started` and first `output`.
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> StartToOutput() {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> out;
    for (const auto& [task, at] : started_) {
      auto it = first_output_.find(task);
      if (it != first_output_.end()) out[task] = {at, it->second};
    }
    return out;
  }

 private:
  std::map<std::string, Clock::time_point> started_;
  std::map<std::string, Clock::time_point> first_output_;
  std::unique_ptr<pb::BrokerService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<pb::Event>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  int done_ = 0;
  Clock::time_point last_;
  std::atomic<int64_t> last_id_{0};
};

struct CreateResult {
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> calls;  // start, return
  Clock::time_point first;
};

CreateResult CreateTasks(std::shared_ptr<grpc::Channel> channel, const std::string& key,
                         const std::string& workspace_id, int total, int creators,
                         const std::string& command) {
  CreateResult result;
  std::mutex mu;
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  result.first = Clock::now();
  for (int c = 0; c < creators; ++c) {
    threads.emplace_back([&] {
      auto stub = pb::BrokerService::NewStub(channel);
      while (next++ < total) {
        grpc::ClientContext ctx;
        Auth(ctx, key);
        pb::CreateTaskRequest req;
        req.mutable_task()->set_workspace_id(workspace_id);
        req.mutable_task()->set_provider("command");
        req.mutable_task()->set_command(command);
        pb::Task task;
        const auto start = Clock::now();
        grpc::Status st = stub->CreateTask(&ctx, req, &task);
        const auto ret = Clock::now();
        if (!st.ok()) {
          std::fprintf(stderr, "CreateTask: %s\n", st.error_message().c_str());
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        result.calls[task.id()] = {start, ret};
      }
    });
  }
  for (auto& t : threads) t.join();
  return result;
}

std::string Arg(const std::string& flag, const std::string& value) {
  return absl::StrCat("--", flag, "=", value);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  std::string url = absl::GetFlag(FLAGS_database_url);
  if (url.empty() && std::getenv("BUILDD_DATABASE_URL") != nullptr) url = std::getenv("BUILDD_DATABASE_URL");
  if (url.empty()) {
    std::fprintf(stderr, "--database_url is required (bench/run.sh sets it)\n");
    return 2;
  }
  const int runners = absl::GetFlag(FLAGS_runners);
  const int tasks = absl::GetFlag(FLAGS_tasks);
  const int creators = absl::GetFlag(FLAGS_creators);
  const std::string dir = absl::GetFlag(FLAGS_work_dir);
  std::system(absl::StrCat("mkdir -p ", dir).c_str());

  const std::string admin = absl::StrCat("buildd_service_", buildd::RandomHex(32));
  const std::string service_key = buildd::RandomHex(32);
  const int accounts_port = buildd::testing::FreePort();
  const int broker_port = buildd::testing::FreePort();
  const int metrics_port = buildd::testing::FreePort();
  auto accounts = Process::Start(
      buildd::testing::BuiltBinary("services/accounts/buildd-accounts"),
      {Arg("listen", absl::StrCat("127.0.0.1:", accounts_port))},
      {{"BUILDD_DATABASE_URL", url}, {"BUILDD_KEY_PEPPER", buildd::RandomHex(16)},
       {"BUILDD_MASTER_KEY", buildd::RandomHex(32)}, {"BUILDD_ADMIN_KEY", admin},
       {"BUILDD_SERVICE_KEY", service_key}},
      dir + "/accounts.log");
  if (!accounts->WaitForLog("accounts listening on", 30000)) {
    std::fprintf(stderr, "accounts did not start:\n%s\n", accounts->Log().c_str());
    return 1;
  }
  auto broker = Process::Start(
      buildd::testing::BuiltBinary("services/broker/buildd-broker"),
      {Arg("listen", absl::StrCat("127.0.0.1:", broker_port)),
       Arg("accounts_addr", absl::StrCat("127.0.0.1:", accounts_port)),
       Arg("metrics_listen", absl::StrCat("127.0.0.1:", metrics_port))},
      {{"BUILDD_DATABASE_URL", url}, {"BUILDD_SESSION_KEY", buildd::RandomHex(32)},
       {"BUILDD_SERVICE_KEY", service_key}},
      dir + "/broker.log");
  if (!broker->WaitForLog("broker listening on", 30000)) {
    std::fprintf(stderr, "broker did not start:\n%s\n%s\n", accounts->Log().c_str(), broker->Log().c_str());
    return 1;
  }
  auto accounts_channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", accounts_port),
                                              grpc::InsecureChannelCredentials());
  auto broker_channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", broker_port),
                                            grpc::InsecureChannelCredentials());

  // An account for the runners, a workspace, a grant.
  std::string key, workspace_id;
  {
    auto acc = pb::AccountService::NewStub(accounts_channel);
    grpc::ClientContext c1;
    Auth(c1, admin);
    pb::CreateAccountRequest req;
    req.set_type(pb::Account::service);
    req.set_name("bench");
    req.set_max_concurrent_workers(100000);
    pb::CreateAccountResponse resp;
    if (auto st = acc->CreateAccount(&c1, req, &resp); !st.ok()) {
      std::fprintf(stderr, "CreateAccount: %s\n", st.error_message().c_str());
      return 1;
    }
    key = resp.api_key();
    auto brk = pb::BrokerService::NewStub(broker_channel);
    grpc::ClientContext c2;
    Auth(c2, admin);
    pb::CreateWorkspaceRequest wreq;
    wreq.set_name("bench");
    pb::Workspace ws;
    brk->CreateWorkspace(&c2, wreq, &ws);
    workspace_id = ws.id();
    grpc::ClientContext c3;
    Auth(c3, admin);
    pb::GrantWorkspaceRequest g;
    g.set_account_id(resp.id());
    g.set_workspace_id(workspace_id);
    g.set_can_claim(true);
    g.set_can_create(true);
    pb::Grant grant;
    acc->GrantWorkspace(&c3, g, &grant);
  }

  std::printf("buildd dispatch benchmark: %d runners, %d tasks per phase, %d concurrent creators\n",
              runners, tasks, creators);
  int64_t after_id = 0;
  // ---- phase 1 ----
  {
    Arrivals arrivals;
    std::vector<std::unique_ptr<ProbeRunner>> probes;
    for (int i = 0; i < runners; ++i) {
      probes.push_back(std::make_unique<ProbeRunner>(broker_channel, key, i, arrivals));
    }
    for (auto& p : probes) {
      while (!p->welcomed()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CompletionWatch watch(broker_channel, key, workspace_id, 0);
    // Warm up connections and caches with a few tasks, not measured.
    CreateTasks(broker_channel, key, workspace_id, 50, creators, "true");
    watch.WaitFor(50, std::chrono::seconds(60));
    {
      std::lock_guard<std::mutex> lock(arrivals.mu);
      arrivals.at.clear();
    }
    const auto m0 = BrokerMetrics(metrics_port);
    CreateResult r = CreateTasks(broker_channel, key, workspace_id, tasks, creators, "true");
    const auto last = watch.WaitFor(50 + tasks, std::chrono::seconds(300));
    const auto m1 = BrokerMetrics(metrics_port);
    std::vector<double> call_ms, dispatch_ms, start_to_assign_ms;
    int early = 0;
    {
      std::lock_guard<std::mutex> lock(arrivals.mu);
      for (const auto& [id, t] : r.calls) {
        call_ms.push_back(Ms(t.second - t.first));
        auto it = arrivals.at.find(id);
        if (it == arrivals.at.end()) continue;
        const double d = Ms(it->second - t.second);
        if (d < 0) ++early;
        dispatch_ms.push_back(std::max(0.0, d));
        start_to_assign_ms.push_back(Ms(it->second - t.first));
      }
    }
    std::printf("\nphase 1: probe runners on real streams (no process per task)\n");
    std::printf("  CreateTask call      p50 %.2f ms  p95 %.2f ms  p99 %.2f ms\n",
                Percentile(call_ms, 50), Percentile(call_ms, 95), Percentile(call_ms, 99));
    std::printf("  dispatch (return -> runner holds Assign)  p50 %.2f ms  p95 %.2f ms  p99 %.2f ms"
                "  (%d of %zu arrived before the call returned)\n",
                Percentile(dispatch_ms, 50), Percentile(dispatch_ms, 95),
                Percentile(dispatch_ms, 99), early, dispatch_ms.size());
    std::printf("  call start -> runner holds Assign         p50 %.2f ms  p95 %.2f ms  p99 %.2f ms\n",
                Percentile(start_to_assign_ms, 50), Percentile(start_to_assign_ms, 95),
                Percentile(start_to_assign_ms, 99));
    std::printf("  end to end: %d tasks created -> completed in %.0f ms = %.0f tasks/s\n", tasks,
                Ms(last - r.first), tasks / (Ms(last - r.first) / 1000.0));
    PrintJournal(m0, m1, Ms(last - r.first));
    after_id = watch.last_id();
  }
  std::printf("  RSS: accounts %ld kB, broker %ld kB\n", RssKb(accounts->pid()), RssKb(broker->pid()));

  if (!absl::GetFlag(FLAGS_phase2)) return 0;
  // ---- phase 2, once per sandbox mode ----
  for (absl::string_view mode_view : absl::StrSplit(absl::GetFlag(FLAGS_sandbox_modes), ',')) {
    const std::string mode(mode_view);
    std::vector<std::unique_ptr<Process>> real;
    for (int i = 0; i < runners; ++i) {
      const std::string name = absl::StrCat("runner-", mode, "-", i);
      real.push_back(Process::Start(
          buildd::testing::BuiltBinary("services/runner/buildd-runner"),
          {Arg("server", absl::StrCat("127.0.0.1:", broker_port)), Arg("name", name),
           Arg("max_tasks", std::to_string(absl::GetFlag(FLAGS_real_runner_slots))),
           Arg("listen", absl::StrCat("127.0.0.1:", buildd::testing::FreePort())),
           Arg("work_dir", absl::StrCat(dir, "/", name)), Arg("sandbox", mode),
           "--log_level=warn"},
          {{"BUILDD_API_KEY", key}}, absl::StrCat(dir, "/", name, ".log")));
    }
    for (int i = 0; i < runners; ++i) {
      if (!broker->WaitForLog(absl::StrCat("name=runner-", mode, "-", i, " account="), 30000)) {
        std::fprintf(stderr, "runner %d (--sandbox=%s) did not connect:\n%s\n", i, mode.c_str(),
                     real[i]->Log().c_str());
        return 1;
      }
    }
    std::vector<long> idle_rss;
    for (auto& p : real) idle_rss.push_back(RssKb(p->pid()));
    std::printf("\nphase 2 (--sandbox=%s): %d real buildd-runner processes x %d slots\n",
                mode.c_str(), runners, absl::GetFlag(FLAGS_real_runner_slots));
    {
      CompletionWatch watch(broker_channel, key, workspace_id, after_id);
      const auto m0 = BrokerMetrics(metrics_port);
      CreateResult r = CreateTasks(broker_channel, key, workspace_id, tasks, creators, "true");
      const auto last = watch.WaitFor(tasks, std::chrono::seconds(600));
      const auto m1 = BrokerMetrics(metrics_port);
      std::printf("  command `true` per task, %d creators: %d tasks created -> completed in %.0f ms"
                  " = %.0f tasks/s\n",
                  creators, tasks, Ms(last - r.first), tasks / (Ms(last - r.first) / 1000.0));
      PrintJournal(m0, m1, Ms(last - r.first));
      after_id = watch.last_id();
    }
    {
      // One task at a time, so the figure is the runner's, not a queue's.
      const int n = absl::GetFlag(FLAGS_sandbox_tasks);
      CompletionWatch watch(broker_channel, key, workspace_id, after_id);
      CreateResult r = CreateTasks(broker_channel, key, workspace_id, n, 1, "echo line");
      watch.WaitFor(n, std::chrono::seconds(600));
      std::vector<double> start_to_line, call_to_line;
      for (const auto& [task, at] : watch.StartToOutput()) {
        start_to_line.push_back(Ms(at.second - at.first));
        auto call = r.calls.find(task);
        if (call != r.calls.end()) call_to_line.push_back(Ms(at.second - call->second.first));
      }
      std::printf("  `echo line`, one at a time (%zu tasks): started -> first output line  p50 %.2f"
                  " ms  p95 %.2f ms  p99 %.2f ms\n",
                  start_to_line.size(), Percentile(start_to_line, 50), Percentile(start_to_line, 95),
                  Percentile(start_to_line, 99));
      std::printf("  create call issued -> first output line                 p50 %.2f ms  p95 %.2f"
                  " ms  p99 %.2f ms\n",
                  Percentile(call_to_line, 50), Percentile(call_to_line, 95),
                  Percentile(call_to_line, 99));
      after_id = watch.last_id();
    }
    long max_idle = 0, max_after = 0;
    for (size_t i = 0; i < real.size(); ++i) {
      max_idle = std::max(max_idle, idle_rss[i]);
      max_after = std::max(max_after, RssKb(real[i]->pid()));
    }
    std::printf("  RSS: accounts %ld kB, broker %ld kB, runner idle (max of %d) %ld kB, runner after"
                " the run %ld kB\n",
                RssKb(accounts->pid()), RssKb(broker->pid()), runners, max_idle, max_after);
    for (auto& p : real) p->Stop(SIGTERM, 10000);
    // Runners gone: the broker forgets them before the next mode's connect.
  }
  return 0;
}
