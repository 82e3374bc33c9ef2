// The broker's benchmark: the real buildd-accounts, buildd-broker and
// buildd-gateway binaries over PostgreSQL, runners on real gRPC streams.
// Each part prints its figures; a table at the end holds every figure with
// its target, and the peer's (graphile-worker) where the workload compares.
//
// dispatch   probe runners in this process (bench/probe_runner.h) take
//            tasks; for each task the time from its CreateTask call being
//            issued to a runner holding its Assign (one clock), first with
//            one creator, then with --creators at once. Probes finish each
//            task at once, so the second run also gives the lifecycle:
//            tasks/s from the first create to the last `completed` event.
// lifecycle  that run (without the dispatch figures), then --runners real
//            buildd-runner processes running `true` (--phase2).
// events     one probe runner streams --events output lines for one task:
//            events/s until the broker acked (made durable) the last.
// fanout     --sse_clients clients follow one task through the gateway's
//            SSE route while one probe runner streams --fanout_events lines:
//            deliveries/s summed over the clients, and the ingest meanwhile.
// idle       a fresh broker (raised RLIMIT_NOFILE) takes --idle_streams
//            runner streams that send Hello, then heartbeats only: its RSS
//            growth per stream; then the RSS of one idle buildd-runner.
// peer       bench/peer/graphile_bench.mjs: the dispatch and lifecycle
//            workloads on graphile-worker, on the same PostgreSQL server.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bench_mesh.h"
#include "bench/bench_util.h"
#include "bench/idle_streams.h"
#include "bench/peer.h"
#include "bench/probe_runner.h"
#include "bench/profiler.h"
#include "bench/report.h"
#include "bench/sse_clients.h"
#include "bench/task_clients.h"

ABSL_FLAG(std::string, database_url, "", "PostgreSQL URL of an empty database");
ABSL_FLAG(std::string, only, "",
          "comma-separated parts to run: dispatch, replicas, lifecycle, events, fanout, idle, peer "
          "(and sandbox, which bench/run.sh runs); empty: all but peer");
ABSL_FLAG(bool, peer, false, "also run the peer (graphile-worker) on the same workloads");
ABSL_FLAG(std::string, peer_database_url, "", "PostgreSQL URL of the peer's empty database");
ABSL_FLAG(std::string, peer_tools_dir, "", "holds node_modules/graphile-worker");
ABSL_FLAG(bool, profile, false, "perf record -g the broker during the dispatch runs");
ABSL_FLAG(int, runners, 8, "probe runners, and real runners in the lifecycle part");
ABSL_FLAG(int, probe_slots, 8,
          "max_tasks of each probe runner (the peer gets runners x probe_slots as concurrency)");
ABSL_FLAG(int, dispatch_tasks, 1000, "tasks of the one-creator dispatch run");
ABSL_FLAG(int, tasks, 2000, "tasks of the many-creator runs (dispatch, lifecycle)");
ABSL_FLAG(int, creators, 8, "concurrent CreateTask callers of the many-creator runs");
ABSL_FLAG(int, real_runner_slots, 4, "--max_tasks of each real runner");
ABSL_FLAG(bool, phase2, true, "lifecycle: also run real buildd-runner processes");
ABSL_FLAG(std::string, sandbox_modes, "bwrap,none",
          "the real runners run once per --sandbox mode, in this order");
ABSL_FLAG(int, sandbox_tasks, 200,
          "real runners: tasks created one at a time to time a task's start to its first line");
ABSL_FLAG(int, events, 50000, "output lines the events part streams");
ABSL_FLAG(int, fanout_events, 5000, "output lines the fanout part streams");
ABSL_FLAG(int, sse_clients, 100, "SSE clients of the fanout part");
ABSL_FLAG(int, idle_streams, 10000, "idle runner streams of the idle part");
ABSL_FLAG(int, streams_per_channel, 100, "idle streams sharing one channel (TCP connection)");
ABSL_FLAG(std::string, work_dir, "/tmp/buildd-bench", "logs and runner work dirs");

namespace pb = buildd::v1;
using buildd::testing::Process;

namespace buildd::bench {
namespace {

constexpr int kWarmupTasks = 50;

// What the parts share.
struct Bench {
  BenchMesh* mesh = nullptr;
  std::string dir;
  std::string key;  // the runners' and creators' account
  std::string main_ws, events_ws, idle_ws;
  int64_t after_id = 0;  // the last event of main_ws seen so far
  std::set<std::string> parts;
  bool Runs(const std::string& part) const { return parts.count(part) > 0; }
};

// The summary's figures, in its order, with their targets.
struct Figures {
  Figure dispatch1_p50{"dispatch, 1 creator, p50", "ms"};
  Figure dispatch1_p99{"dispatch, 1 creator, p99", "ms"};
  Figure dispatch8_p50{Many("dispatch, ", " creators, p50"), "ms"};
  Figure dispatch8_p99{Many("dispatch, ", " creators, p99"), "ms"};
  Figure lifecycle_probe{Many("lifecycle, probe runners, ", " creators"), "tasks/s"};
  // One creator on one broker replica, the runners on another.
  Figure cross_p50{"dispatch across replicas, 1 creator, p50", "ms"};
  Figure cross_p99{"dispatch across replicas, 1 creator, p99", "ms"};
  Figure same_p50{"  the same, creator on the runners' replica, p50", "ms"};
  Figure same_p99{"  the same, creator on the runners' replica, p99", "ms"};
  std::vector<Figure> lifecycle_real;  // one per sandbox mode
  Figure ingest{"event ingest, 1 runner", "events/s"};
  Figure fanout{absl::StrCat("SSE fan-out, ", absl::GetFlag(FLAGS_sse_clients), " clients"),
                "deliveries/s"};
  Figure fanout_ingest{"event ingest during the fan-out", "events/s"};
  Figure idle_stream{"broker RSS per idle runner stream", "KB"};
  Figure idle_runner{"RSS of one idle buildd-runner", "MB"};

  static std::string Many(const char* before, const char* after) {
    return absl::StrCat(before, absl::GetFlag(FLAGS_creators), after);
  }

  Figures() {
    const std::string not_run = "its part did not run (--only)";
    for (Figure* f : All()) f->missing = not_run;
    dispatch1_p50.limit = 1.0;
    dispatch1_p50.peer_factor = 0.5;
    dispatch1_p99.limit = 3.0;
    dispatch1_p99.peer_factor = 0.5;
    dispatch8_p50.limit = 3.0;
    dispatch8_p99.limit = 10.0;
    lifecycle_probe.limit = 5000;
    lifecycle_probe.lower_is_better = false;
    lifecycle_probe.peer_factor = 5;
    for (Figure* f : {&dispatch1_p50, &dispatch1_p99, &dispatch8_p50, &dispatch8_p99,
                      &lifecycle_probe}) {
      f->has_peer = true;
      f->peer_missing = "the peer did not run (--peer)";
    }
    ingest.limit = 50000;
    fanout.limit = 200000;
    for (Figure* f : {&ingest, &fanout, &fanout_ingest}) f->lower_is_better = false;
    idle_stream.limit = 40;
    idle_runner.limit = 15;
  }
  std::vector<Figure*> All() {
    return {&dispatch1_p50, &dispatch1_p99, &dispatch8_p50, &dispatch8_p99, &cross_p50, &cross_p99,
            &same_p50,      &same_p99,      &lifecycle_probe, &ingest,       &fanout,    &fanout_ingest,
            &idle_stream,   &idle_runner};
  }
  std::vector<Figure> InOrder() {
    std::vector<Figure> out;
    for (Figure* f : All()) {
      out.push_back(*f);
      if (f != &lifecycle_probe) continue;
      if (lifecycle_real.empty()) {
        Figure real{"lifecycle, real buildd-runners, `true`", "tasks/s"};
        real.lower_is_better = false;
        real.limit = 1000;
        real.missing = "its part did not run (--only, --phase2)";
        out.push_back(real);
      }
      out.insert(out.end(), lifecycle_real.begin(), lifecycle_real.end());
    }
    return out;
  }
};

void Missing(Figure& f, const std::string& why) {
  f.value.reset();
  f.missing = why;
}

// Issued -> Assign held, and the call alone, for the tasks of one run.
struct DispatchRun {
  Latency call, dispatch;
  size_t unassigned = 0;      // created tasks whose Assign never came
  int before_return = 0;      // Assigns that came before their call returned
};

DispatchRun Measure(const CreatedTasks& created,
                    const std::map<std::string, Clock::time_point>& arrivals) {
  DispatchRun run;
  std::vector<double> call_ms, dispatch_ms;
  for (const auto& [task, t] : created.calls) {
    call_ms.push_back(Ms(t.second - t.first));
    auto it = arrivals.find(task);
    if (it == arrivals.end()) {
      ++run.unassigned;
      continue;
    }
    if (it->second < t.second) ++run.before_return;
    dispatch_ms.push_back(Ms(it->second - t.first));
  }
  run.call = Summarize(call_ms);
  run.dispatch = Summarize(dispatch_ms);
  return run;
}

void PrintDispatchRun(const DispatchRun& run, const CreatedTasks& created) {
  std::printf("  CreateTask call alone                     %s\n", FormatLatency(run.call).c_str());
  std::printf("  create issued -> probe runner holds Assign %s\n",
              FormatLatency(run.dispatch).c_str());
  std::printf("  (%d Assigns arrived before their call returned; %zu tasks never assigned;"
              " %d creates failed%s%s)\n",
              run.before_return, run.unassigned, created.failed,
              created.failed ? ": " : "", created.first_error.c_str());
}

// dispatch (and the probe half of lifecycle): one creator, then many.
void RunProbeDispatch(Bench& b, Figures& fig) {
  const bool dispatch = b.Runs("dispatch");
  const int runners = absl::GetFlag(FLAGS_runners);
  const int creators = absl::GetFlag(FLAGS_creators);
  const int tasks = absl::GetFlag(FLAGS_tasks);
  const auto& channel = b.mesh->broker_channel();
  Arrivals arrivals;
  std::vector<std::unique_ptr<ProbeRunner>> probes;
  for (int i = 0; i < runners; ++i) {
    probes.push_back(std::make_unique<ProbeRunner>(
        channel, b.key,
        ProbeRunner::Options{absl::StrCat("probe-", i), absl::GetFlag(FLAGS_probe_slots),
                             b.main_ws, true},
        &arrivals));
  }
  for (auto& p : probes) {
    if (!p->WaitWelcomed(std::chrono::seconds(30))) {
      const std::string why = "a probe runner was not welcomed within 30 s";
      for (Figure* f : {&fig.dispatch1_p50, &fig.dispatch1_p99, &fig.dispatch8_p50,
                        &fig.dispatch8_p99, &fig.lifecycle_probe}) {
        Missing(*f, why);
      }
      std::printf("\ndispatch: %s\n", why.c_str());
      return;
    }
  }
  std::printf("\nprobe runners: %d in this process on real streams, x %d slots (the peer gets"
              " as much concurrency)\n",
              runners, absl::GetFlag(FLAGS_probe_slots));
  CompletionWatch watch(channel, b.key, b.main_ws, b.after_id);
  int expected = kWarmupTasks;
  // Warm up connections and caches; not measured.
  CreateTasks(channel, b.key, b.main_ws, kWarmupTasks, creators, "true");
  watch.WaitFor(expected, absl::Seconds(60));
  arrivals.Take();

  std::unique_ptr<Profiler> profiler;
  if (absl::GetFlag(FLAGS_profile) && dispatch) {
    auto started = Profiler::Start(b.mesh->broker().pid(), b.dir);
    if (started.ok()) {
      profiler = *std::move(started);
    } else {
      std::printf("  --profile: %s\n", std::string(started.status().message()).c_str());
    }
  }

  if (dispatch) {
    const int n = absl::GetFlag(FLAGS_dispatch_tasks);
    const MetricValues before = ReadMetrics(b.mesh->metrics_port());
    CreatedTasks one = CreateTasks(channel, b.key, b.main_ws, n, 1, "true");
    expected += n - one.failed;
    const auto done = watch.WaitFor(expected, absl::Seconds(300));
    const MetricValues after = ReadMetrics(b.mesh->metrics_port());
    const DispatchRun run = Measure(one, arrivals.Take());
    std::printf(" one creator, %d tasks one after another:\n", n);
    PrintDispatchRun(run, one);
    if (done) PrintJournal(before, after, Ms(*done - one.first));
    if (run.dispatch.count > 0) {
      fig.dispatch1_p50.value = run.dispatch.p50;
      fig.dispatch1_p99.value = run.dispatch.p99;
    } else {
      Missing(fig.dispatch1_p50, "no task was assigned");
      Missing(fig.dispatch1_p99, "no task was assigned");
    }
  }

  const MetricValues m0 = ReadMetrics(b.mesh->metrics_port());
  CreatedTasks many = CreateTasks(channel, b.key, b.main_ws, tasks, creators, "true");
  expected += tasks - many.failed;
  const auto last = watch.WaitFor(expected, absl::Seconds(300));
  const MetricValues m1 = ReadMetrics(b.mesh->metrics_port());
  if (profiler) profiler->Stop();
  const DispatchRun run = Measure(many, arrivals.Take());
  std::printf(" %d creators, %d tasks:\n", creators, tasks);
  if (dispatch) {
    PrintDispatchRun(run, many);
    if (run.dispatch.count > 0) {
      fig.dispatch8_p50.value = run.dispatch.p50;
      fig.dispatch8_p99.value = run.dispatch.p99;
    } else {
      Missing(fig.dispatch8_p50, "no task was assigned");
      Missing(fig.dispatch8_p99, "no task was assigned");
    }
  }
  if (!last) {
    const std::string why = absl::StrCat("only ", watch.ended(), " of ", expected,
                                         " tasks ended within 300 s");
    std::printf("  lifecycle: %s\n", why.c_str());
    Missing(fig.lifecycle_probe, why);
  } else {
    const double ms = Ms(*last - many.first);
    const int done = tasks - many.failed;
    std::printf("  lifecycle: %d tasks, first create issued -> last `completed` event %.0f ms ="
                " %.0f tasks/s (%d ended in error)\n",
                done, ms, done / (ms / 1000), watch.errors());
    PrintJournal(m0, m1, ms);
    fig.lifecycle_probe.value = done / (ms / 1000);
  }
  b.after_id = watch.last_id();
  std::printf("  RSS: accounts %ld kB, broker %ld kB\n", RssKb(b.mesh->accounts().pid()),
              RssKb(b.mesh->broker().pid()));
  if (profiler) profiler->Report(25);
}

// lifecycle with real buildd-runner processes, once per sandbox mode.
void RunRealRunners(Bench& b, Figures& fig) {
  const int runners = absl::GetFlag(FLAGS_runners);
  const int creators = absl::GetFlag(FLAGS_creators);
  const int tasks = absl::GetFlag(FLAGS_tasks);
  const auto& channel = b.mesh->broker_channel();
  for (absl::string_view mode_view : absl::StrSplit(absl::GetFlag(FLAGS_sandbox_modes), ',')) {
    const std::string mode(mode_view);
    Figure f{absl::StrCat("lifecycle, ", runners, " buildd-runners, `true`, --sandbox=", mode),
             "tasks/s"};
    f.lower_is_better = false;
    f.limit = 1000;
    std::vector<std::unique_ptr<Process>> real;
    for (int i = 0; i < runners; ++i) {
      const std::string name = absl::StrCat("runner-", mode, "-", i);
      real.push_back(Process::Start(
          testing::BuiltBinary("services/runner/buildd-runner"),
          {Arg("server", b.mesh->broker_addr()), Arg("name", name),
           Arg("max_tasks", std::to_string(absl::GetFlag(FLAGS_real_runner_slots))),
           Arg("workspace", b.main_ws),
           Arg("listen", absl::StrCat("127.0.0.1:", testing::FreePort())),
           Arg("work_dir", absl::StrCat(b.dir, "/", name)), Arg("sandbox", mode),
           "--log_level=warn"},
          {{"BUILDD_API_KEY", b.key}}, absl::StrCat(b.dir, "/", name, ".log")));
    }
    bool connected = true;
    for (int i = 0; i < runners && connected; ++i) {
      if (!b.mesh->broker().WaitForLog(absl::StrCat("name=runner-", mode, "-", i, " account="),
                                       30000)) {
        connected = false;
        f.missing = absl::StrCat("runner ", i, " did not connect: ", real[i]->Log().substr(0, 300));
      }
    }
    if (!connected) {
      std::printf("\nlifecycle (--sandbox=%s): %s\n", mode.c_str(), f.missing.c_str());
      fig.lifecycle_real.push_back(f);
      continue;
    }
    std::vector<long> idle_rss;
    for (auto& p : real) idle_rss.push_back(RssKb(p->pid()));
    std::printf("\nlifecycle (--sandbox=%s): %d real buildd-runner processes x %d slots\n",
                mode.c_str(), runners, absl::GetFlag(FLAGS_real_runner_slots));
    {
      CompletionWatch watch(channel, b.key, b.main_ws, b.after_id);
      const MetricValues m0 = ReadMetrics(b.mesh->metrics_port());
      CreatedTasks r = CreateTasks(channel, b.key, b.main_ws, tasks, creators, "true");
      const int done = tasks - r.failed;
      const auto last = watch.WaitFor(done, absl::Seconds(600));
      const MetricValues m1 = ReadMetrics(b.mesh->metrics_port());
      if (last) {
        const double ms = Ms(*last - r.first);
        std::printf("  command `true` per task, %d creators: %d tasks, first create issued ->"
                    " last `completed` %.0f ms = %.0f tasks/s (%d ended in error)\n",
                    creators, done, ms, done / (ms / 1000), watch.errors());
        PrintJournal(m0, m1, ms);
        f.value = done / (ms / 1000);
      } else {
        f.missing = absl::StrCat("only ", watch.ended(), " of ", done, " tasks ended within 600 s");
        std::printf("  %s\n", f.missing.c_str());
      }
      b.after_id = watch.last_id();
    }
    {
      // One task at a time, so the figure is the runner's, not a queue's.
      const int n = absl::GetFlag(FLAGS_sandbox_tasks);
      CompletionWatch watch(channel, b.key, b.main_ws, b.after_id);
      CreatedTasks r = CreateTasks(channel, b.key, b.main_ws, n, 1, "echo line");
      watch.WaitFor(n - r.failed, absl::Seconds(600));
      std::vector<double> start_to_line, call_to_line;
      for (const auto& [task, at] : watch.StartToOutput()) {
        start_to_line.push_back(Ms(at.second - at.first));
        auto call = r.calls.find(task);
        if (call != r.calls.end()) call_to_line.push_back(Ms(at.second - call->second.first));
      }
      std::printf("  `echo line`, one at a time: started -> first output line    %s\n",
                  FormatLatency(Summarize(start_to_line)).c_str());
      std::printf("  create call issued -> first output line                   %s\n",
                  FormatLatency(Summarize(call_to_line)).c_str());
      b.after_id = watch.last_id();
    }
    long max_idle = 0, max_after = 0;
    for (size_t i = 0; i < real.size(); ++i) {
      max_idle = std::max(max_idle, idle_rss[i]);
      max_after = std::max(max_after, RssKb(real[i]->pid()));
    }
    std::printf("  RSS: accounts %ld kB, broker %ld kB, runner idle (max of %d) %ld kB, runner"
                " after the run %ld kB\n",
                RssKb(b.mesh->accounts().pid()), RssKb(b.mesh->broker().pid()), runners, max_idle,
                max_after);
    for (auto& p : real) p->Stop(SIGTERM, 10000);
    fig.lifecycle_real.push_back(f);
  }
}

// One probe runner takes a task of events_ws and holds its Assign.
struct Streamer {
  std::unique_ptr<ProbeRunner> runner;
  std::string task_id;
  pb::Assign assign;
};

absl::StatusOr<Streamer> StartStreamer(Bench& b, const std::string& name) {
  Streamer s;
  s.runner = std::make_unique<ProbeRunner>(
      b.mesh->broker_channel(), b.key, ProbeRunner::Options{name, 1, b.events_ws, false}, nullptr);
  if (!s.runner->WaitWelcomed(std::chrono::seconds(30))) {
    return absl::UnavailableError("the streaming probe runner was not welcomed within 30 s");
  }
  auto task = CreateTask(b.mesh->broker_channel(), b.key, b.events_ws, "true");
  if (!task.ok()) return task.status();
  s.task_id = *task;
  auto assign = s.runner->WaitAssign(std::chrono::seconds(30));
  if (!assign) return absl::UnavailableError("the streaming probe runner got no Assign in 30 s");
  s.assign = *std::move(assign);
  return s;
}

void RunIngest(Bench& b, Figures& fig) {
  const int n = absl::GetFlag(FLAGS_events);
  std::printf("\nevents: one probe runner streams %d output lines of one task\n", n);
  auto s = StartStreamer(b, "events-probe");
  if (!s.ok()) {
    Missing(fig.ingest, std::string(s.status().message()));
    std::printf("  %s\n", fig.ingest.missing.c_str());
    return;
  }
  const auto r = s->runner->StreamEvents(s->assign, n, std::chrono::seconds(600));
  if (r.acked < n + 1) {
    Missing(fig.ingest, r.error);
    std::printf("  %s\n", r.error.c_str());
    return;
  }
  const double ms = Ms(r.last_acked - r.first_sent);
  std::printf("  first line sent -> broker acked the last %.0f ms = %.0f events/s%s%s\n", ms,
              n / (ms / 1000), r.ok ? "" : "; ", r.error.c_str());
  fig.ingest.value = n / (ms / 1000);
}

void RunFanout(Bench& b, Figures& fig) {
  const int n = absl::GetFlag(FLAGS_fanout_events);
  const int clients = absl::GetFlag(FLAGS_sse_clients);
  std::printf("\nfanout: %d SSE clients of buildd-gateway (GET /api/events?taskId=) follow one"
              " task while one probe runner streams %d output lines\n",
              clients, n);
  auto fail = [&](const std::string& why) {
    Missing(fig.fanout, why);
    Missing(fig.fanout_ingest, why);
    std::printf("  %s\n", why.c_str());
  };
  auto s = StartStreamer(b, "fanout-probe");
  if (!s.ok()) return fail(std::string(s.status().message()));
  SseClients sse(b.mesh->gateway_port(), b.key, s->task_id, clients);
  if (!sse.WaitStreaming(absl::Seconds(60))) {
    return fail(absl::StrCat("the SSE clients did not all get a stream: ", sse.error()));
  }
  const auto r = s->runner->StreamEvents(s->assign, n, std::chrono::seconds(600));
  if (r.acked < n + 1) return fail(r.error);
  if (!sse.WaitOutputs(n, absl::Seconds(600))) {
    return fail(absl::StrCat("the clients received ", sse.total_outputs(), " of ",
                             int64_t{n} * clients, " output events; the fewest one got: ",
                             sse.min_outputs(), "; ", sse.error()));
  }
  const double ingest_ms = Ms(r.last_acked - r.first_sent);
  const double deliver_ms = Ms(sse.last_output() - r.first_sent);
  const int64_t deliveries = sse.total_outputs();
  std::printf("  ingest: first line sent -> broker acked the last %.0f ms = %.0f events/s\n",
              ingest_ms, n / (ingest_ms / 1000));
  std::printf("  delivery: first line sent -> the last client got the last line %.0f ms:"
              " %lld deliveries = %.0f deliveries/s\n",
              deliver_ms, static_cast<long long>(deliveries), deliveries / (deliver_ms / 1000));
  fig.fanout.value = deliveries / (deliver_ms / 1000);
  fig.fanout_ingest.value = n / (ingest_ms / 1000);
}

// The "Max open files" soft limit of a process, from /proc/PID/limits.
std::string OpenFileLimit(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/limits"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) == 0) {
      std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (words.size() >= 5) return words[3];
    }
  }
  return "?";
}

void RunIdle(Bench& b, Figures& fig) {
  const int n = absl::GetFlag(FLAGS_idle_streams);
  const int per_channel = std::max(1, absl::GetFlag(FLAGS_streams_per_channel));
  const uint64_t files = static_cast<uint64_t>(n) + 4096;
  const uint64_t ours = RaiseOpenFiles(files);
  // A broker of its own: its memory before the streams is that of a broker
  // that did nothing yet, so the growth is the streams'.
  b.mesh->StopGateway();
  if (absl::Status st = b.mesh->RestartBroker({Arg("max_streams_per_key", std::to_string(n + 64))},
                                              files);
      !st.ok()) {
    Missing(fig.idle_stream, std::string(st.message()));
    std::printf("\nidle: %s\n", fig.idle_stream.missing.c_str());
    return;
  }
  const pid_t broker = b.mesh->broker().pid();
  std::printf("\nidle: %d runner streams (Hello, then heartbeats only) over %d channels on a"
              " fresh broker; open files: bench %llu, broker %s\n",
              n, (n + per_channel - 1) / per_channel, static_cast<unsigned long long>(ours),
              OpenFileLimit(broker).c_str());
  const long before = RssKb(broker);
  {
    const auto t0 = Clock::now();
    IdleStreams streams(b.mesh->broker_addr(), b.key, b.idle_ws, n, per_channel);
    const bool welcomed = streams.WaitWelcomed(absl::Seconds(300));
    const double welcome_ms = Ms(Clock::now() - t0);
    // The second round of heartbeats comes one interval after the first.
    if (!welcomed || !streams.WaitHeartbeats(2, absl::Seconds(120))) {
      Missing(fig.idle_stream, absl::StrCat(streams.ended(), " of ", n, " streams ended (first: ",
                                            streams.first_error(), ")"));
      std::printf("  %s\n", fig.idle_stream.missing.c_str());
    } else {
      const long after = RssKb(broker);
      const double per_stream = static_cast<double>(after - before) / n;
      std::printf("  all welcomed in %.0f ms; broker RSS %ld kB before, %ld kB after two rounds"
                  " of heartbeats: %.1f KB per stream\n",
                  welcome_ms, before, after, per_stream);
      fig.idle_stream.value = per_stream;
    }
  }
  const std::string name = "idle-runner";
  auto runner = Process::Start(
      testing::BuiltBinary("services/runner/buildd-runner"),
      {Arg("server", b.mesh->broker_addr()), Arg("name", name), Arg("workspace", b.idle_ws),
       Arg("listen", absl::StrCat("127.0.0.1:", testing::FreePort())),
       Arg("work_dir", absl::StrCat(b.dir, "/", name)), "--log_level=warn"},
      {{"BUILDD_API_KEY", b.key}}, absl::StrCat(b.dir, "/", name, ".log"));
  if (!b.mesh->broker().WaitForLog(absl::StrCat("name=", name, " account="), 30000)) {
    Missing(fig.idle_runner, absl::StrCat("the runner did not connect: ", runner->Log()));
    std::printf("  %s\n", fig.idle_runner.missing.c_str());
    return;
  }
  const long rss = RssKb(runner->pid());
  std::printf("  one idle buildd-runner (default flags), connected: RSS %ld kB\n", rss);
  fig.idle_runner.value = rss / 1024.0;
  runner->Stop(SIGTERM, 10000);
}

void RunPeerPart(Bench& b, Figures& fig) {
  std::printf("\npeer: graphile-worker on the same PostgreSQL server, its own database\n");
  auto fail = [&](const std::string& why) {
    for (Figure* f : fig.All()) f->peer_missing = why;
    std::printf("  %s\n", why.c_str());
  };
  PeerOptions o;
  o.database_url = absl::GetFlag(FLAGS_peer_database_url);
  if (o.database_url.empty() && std::getenv("BUILDD_PEER_DATABASE_URL") != nullptr) {
    o.database_url = std::getenv("BUILDD_PEER_DATABASE_URL");
  }
  o.tools_dir = absl::GetFlag(FLAGS_peer_tools_dir);
  if (o.database_url.empty() || o.tools_dir.empty()) {
    return fail("--peer_database_url and --peer_tools_dir are needed (bench/run.sh sets them)");
  }
  o.one_creator_jobs = absl::GetFlag(FLAGS_dispatch_tasks);
  o.jobs = absl::GetFlag(FLAGS_tasks);
  o.creators = absl::GetFlag(FLAGS_creators);
  o.concurrency = absl::GetFlag(FLAGS_runners) * absl::GetFlag(FLAGS_probe_slots);
  o.log_path = b.dir + "/peer.log";
  const PeerResult r = RunPeer(o);
  if (!r.ok) return fail(r.error);
  std::printf("  %s %s on node %s, run() with a taskList, concurrency %d\n", r.name.c_str(),
              r.version.c_str(), r.node.c_str(), r.concurrency);
  std::printf("  one creator: addJob called -> handler starts  %s\n",
              FormatLatency(r.one_creator).c_str());
  std::printf("  %d creators: addJob called -> handler starts  %s\n", r.creators,
              FormatLatency(r.many_creators).c_str());
  std::printf("  lifecycle: %d jobs, first addJob -> last job's completion committed: %.0f jobs/s\n",
              r.lifecycle_jobs, r.lifecycle_jobs_per_s);
  fig.dispatch1_p50.peer = r.one_creator.p50;
  fig.dispatch1_p99.peer = r.one_creator.p99;
  fig.dispatch8_p50.peer = r.many_creators.p50;
  fig.dispatch8_p99.peer = r.many_creators.p99;
  fig.lifecycle_probe.peer = r.lifecycle_jobs_per_s;
}

// replicas: a second broker on the database; probe runners on it; one
// creator on the first broker, then one on the second, for comparison.
void RunReplicas(Bench& b, Figures& fig) {
  auto replica = b.mesh->StartReplica();
  if (!replica.ok()) {
    for (Figure* f : {&fig.cross_p50, &fig.cross_p99, &fig.same_p50, &fig.same_p99}) {
      Missing(*f, std::string(replica.status().message()));
    }
    return;
  }
  Arrivals arrivals;
  ProbeRunner probe(*replica, b.key,
                    ProbeRunner::Options{"probe-replica", absl::GetFlag(FLAGS_probe_slots), b.main_ws, true},
                    &arrivals);
  if (!probe.WaitWelcomed(std::chrono::seconds(30))) {
    for (Figure* f : {&fig.cross_p50, &fig.cross_p99, &fig.same_p50, &fig.same_p99}) {
      Missing(*f, "the probe runner was not welcomed within 30 s");
    }
    return;
  }
  CompletionWatch watch(b.mesh->broker_channel(), b.key, b.main_ws, b.after_id);
  int expected = kWarmupTasks;
  CreateTasks(b.mesh->broker_channel(), b.key, b.main_ws, kWarmupTasks, 1, "true");
  watch.WaitFor(expected, absl::Seconds(60));
  arrivals.Take();
  const int n = absl::GetFlag(FLAGS_dispatch_tasks);
  std::printf("\nreplicas: a second broker on the same database, a probe runner (%d slots) on it\n",
              absl::GetFlag(FLAGS_probe_slots));
  for (auto [channel, p50, p99, what] :
       {std::tuple{b.mesh->broker_channel(), &fig.cross_p50, &fig.cross_p99,
                   "creator on the other replica"},
        std::tuple{*replica, &fig.same_p50, &fig.same_p99, "creator on the runner's replica"}}) {
    CreatedTasks one = CreateTasks(channel, b.key, b.main_ws, n, 1, "true");
    expected += n - one.failed;
    watch.WaitFor(expected, absl::Seconds(300));
    const DispatchRun run = Measure(one, arrivals.Take());
    std::printf(" %s, %d tasks one after another:\n", what, n);
    PrintDispatchRun(run, one);
    if (run.dispatch.count > 0) {
      p50->value = run.dispatch.p50;
      p99->value = run.dispatch.p99;
    } else {
      Missing(*p50, "no task was assigned");
      Missing(*p99, "no task was assigned");
    }
  }
  b.after_id = watch.last_id();
}

absl::StatusOr<std::set<std::string>> Parts() {
  const std::set<std::string> known = {"dispatch", "replicas", "lifecycle", "events",
                                       "fanout",   "idle",     "peer",      "sandbox"};
  std::set<std::string> parts;
  const std::string only = absl::GetFlag(FLAGS_only);
  if (only.empty()) {
    parts = {"dispatch", "replicas", "lifecycle", "events", "fanout", "idle"};
  } else {
    for (absl::string_view p : absl::StrSplit(only, ',', absl::SkipEmpty())) {
      if (!known.count(std::string(p))) {
        return absl::InvalidArgumentError(absl::StrCat("--only: unknown part '", p, "'"));
      }
      parts.insert(std::string(p));
    }
  }
  if (absl::GetFlag(FLAGS_peer)) parts.insert("peer");
  return parts;
}

int Main() {
  Bench b;
  auto parts = Parts();
  if (!parts.ok()) {
    std::fprintf(stderr, "%s\n", std::string(parts.status().message()).c_str());
    return 2;
  }
  b.parts = *parts;
  std::string url = absl::GetFlag(FLAGS_database_url);
  if (url.empty() && std::getenv("BUILDD_DATABASE_URL") != nullptr) {
    url = std::getenv("BUILDD_DATABASE_URL");
  }
  if (url.empty()) {
    std::fprintf(stderr, "--database_url is required (bench/run.sh sets it)\n");
    return 2;
  }
  b.dir = absl::GetFlag(FLAGS_work_dir);
  std::system(absl::StrCat("mkdir -p ", b.dir).c_str());
  Figures fig;

  const bool services = b.Runs("dispatch") || b.Runs("replicas") || b.Runs("lifecycle") ||
                        b.Runs("events") || b.Runs("fanout") || b.Runs("idle");
  if (services) {
    BenchMesh::Options options;
    options.database_url = url;
    options.work_dir = b.dir;
    options.gateway = b.Runs("fanout");
    // One key holds every subscription of the run: the SSE clients', the
    // completion watches'.
    options.broker_args = {
        Arg("max_subscriptions_per_key", std::to_string(absl::GetFlag(FLAGS_sse_clients) + 16))};
    auto mesh = BenchMesh::Start(options);
    if (!mesh.ok()) {
      std::fprintf(stderr, "%s\n", std::string(mesh.status().message()).c_str());
      return 1;
    }
    b.mesh = mesh->get();
    auto main_ws = b.mesh->CreateWorkspace("bench");
    auto events_ws = b.mesh->CreateWorkspace("bench-events");
    auto idle_ws = b.mesh->CreateWorkspace("bench-idle");
    for (auto* ws : {&main_ws, &events_ws, &idle_ws}) {
      if (!ws->ok()) {
        std::fprintf(stderr, "%s\n", std::string(ws->status().message()).c_str());
        return 1;
      }
    }
    b.main_ws = *main_ws;
    b.events_ws = *events_ws;
    b.idle_ws = *idle_ws;
    auto key = b.mesh->CreateAccount("bench", {b.main_ws, b.events_ws, b.idle_ws});
    if (!key.ok()) {
      std::fprintf(stderr, "%s\n", std::string(key.status().message()).c_str());
      return 1;
    }
    b.key = *key;
    std::printf("buildd broker benchmark: parts %s; broker %s\n",
                absl::StrJoin(b.parts, ",").c_str(),
                absl::StrJoin(options.broker_args, " ").c_str());
    if (b.Runs("dispatch") || b.Runs("lifecycle")) RunProbeDispatch(b, fig);
    if (b.Runs("replicas")) RunReplicas(b, fig);
    if (b.Runs("lifecycle") && absl::GetFlag(FLAGS_phase2)) RunRealRunners(b, fig);
    if (b.Runs("events")) RunIngest(b, fig);
    if (b.Runs("fanout")) RunFanout(b, fig);
    if (b.Runs("idle")) RunIdle(b, fig);
    // The peer runs alone on the machine and the database server.
    mesh->reset();
    b.mesh = nullptr;
  }
  if (b.Runs("peer")) RunPeerPart(b, fig);
  PrintSummary(fig.InOrder());
  std::printf("  (timings on a shared machine: other work on its cores shows in them)\n");
  return 0;
}

}  // namespace
}  // namespace buildd::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  return buildd::bench::Main();
}
