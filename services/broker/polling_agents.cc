#include "services/broker/polling_agents.h"

#include <google/protobuf/struct.pb.h>

#include <boost/asio/post.hpp>

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "common/status.h"
#include "services/broker/conversions.h"
#include "services/broker/runner_reports.h"
#include "services/broker/runner_service.h"
#include "services/broker/task_states.h"

namespace buildd::broker {
namespace {

constexpr int kMaxClaim = 100;
constexpr size_t kMaxLabels = 32;
constexpr size_t kMaxName = 64;

absl::Status CheckName(const std::string& name, absl::string_view field) {
  if (name.size() > kMaxName) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is longer than ", kMaxName, " characters"));
  }
  for (char c : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " may hold only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckAgent(const Principal& p) {
  if (!p.session_id.empty()) {
    return absl::PermissionDeniedError("a dashboard session cannot act as an agent: use an API key");
  }
  return absl::OkStatus();
}

std::string AgentName(const std::string& requested) {
  return requested.empty() ? "agent" : requested;
}

pb::Event EventNamed(const std::string& type, const std::string& text) {
  pb::Event e;
  e.set_type(type);
  e.set_text(text);
  return e;
}

pb::Finished::Outcome OutcomeOfStatus(const std::string& status) {
  if (status == "completed") return pb::Finished::completed;
  if (status == "canceled") return pb::Finished::canceled;
  return pb::Finished::error;
}

}  // namespace

// The agent's side of the runner protocol, kept until its next call: acks
// say when its reports are durable, controls wait for its next report.
class PollingAgents::Link : public RunnerLink {
 public:
  Link(PollingAgents* owner, std::string runner_id)
      : owner_(owner), runner_id_(std::move(runner_id)) {}

  const std::string& runner_id() const { return runner_id_; }

  void Send(pb::BrokerMessage message) override {
    std::vector<Reply> ready;
    {
      absl::MutexLock lock(&mu_);
      if (message.has_ack()) {
        const pb::Ack& ack = message.ack();
        int64_t& acked = acked_[ack.worker_id()];
        acked = std::max(acked, ack.up_to_seq());
        auto& waiting = waiters_[ack.worker_id()];
        for (auto it = waiting.begin(); it != waiting.end() && it->first <= acked;) {
          ready.push_back(std::move(it->second));
          it = waiting.erase(it);
        }
      } else if (message.has_control()) {
        controls_[message.control().worker_id()].push_back(message.control());
      }
      // An Assign is handed over in the claim's answer; a Welcome says
      // nothing an agent needs.
    }
    for (Reply& r : ready) r(absl::OkStatus());
  }

  void Close(const absl::Status& status) override {
    std::vector<Reply> failed;
    {
      absl::MutexLock lock(&mu_);
      if (closed_) return;
      closed_ = true;
      for (auto& [worker, waiting] : waiters_) {
        for (auto& [seq, reply] : waiting) failed.push_back(std::move(reply));
      }
      waiters_.clear();
    }
    Log()->info("agent={} cut off: {}", runner_id_, status.message());
    for (Reply& r : failed) {
      r(absl::UnavailableError(
          absl::StrCat("the agent's lease ended before its report was stored: ", status.message())));
    }
    owner_->Forget(runner_id_);
  }

  bool closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

  // Runs `reply` once the worker's messages up to `seq` are durable.
  void WhenAcked(const std::string& worker_id, int64_t seq, Reply reply) {
    {
      absl::MutexLock lock(&mu_);
      if (closed_) {
        reply = [reply = std::move(reply)](absl::Status) {
          reply(absl::UnavailableError("the agent's lease ended: claim again"));
        };
      } else if (seq > acked_[worker_id]) {
        waiters_[worker_id].emplace(seq, std::move(reply));
        return;
      }
    }
    reply(absl::OkStatus());
  }

  // The controls sent for the worker since the last call, oldest first.
  std::vector<pb::Control> TakeControls(const std::string& worker_id) {
    absl::MutexLock lock(&mu_);
    auto it = controls_.find(worker_id);
    if (it == controls_.end()) return {};
    std::vector<pb::Control> out = std::move(it->second);
    controls_.erase(it);
    return out;
  }

  // A worker that ended: nothing more comes for it.
  void Done(const std::string& worker_id) {
    absl::MutexLock lock(&mu_);
    acked_.erase(worker_id);
    waiters_.erase(worker_id);
  }

  // Orders one agent's reports: their seqs are drawn, and handed to the
  // dispatcher, under it.
  absl::Mutex report_mu;
  std::map<std::string, int64_t> next_seq ABSL_GUARDED_BY(report_mu);

 private:
  PollingAgents* const owner_;
  const std::string runner_id_;
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, int64_t> acked_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::multimap<int64_t, Reply>> waiters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<pb::Control>> controls_ ABSL_GUARDED_BY(mu_);
};

PollingAgents::PollingAgents(Dispatcher& dispatcher, BrokerStore& store,
                             boost::asio::thread_pool& pool, std::chrono::milliseconds lease)
    : dispatcher_(dispatcher), store_(store), pool_(pool), lease_(lease) {}

PollingAgents::~PollingAgents() = default;

void PollingAgents::Forget(const std::string& runner_id) {
  {
    absl::MutexLock lock(&mu_);
    links_.erase(runner_id);
  }
  dispatcher_.Disconnect(runner_id);
}

absl::StatusOr<std::shared_ptr<PollingAgents::Link>> PollingAgents::Agent(
    const Principal& principal, const std::string& key, const std::string& name,
    const std::vector<std::string>& labels, const std::vector<std::string>& providers) {
  const std::string runner_id = absl::StrCat("poll-", principal.account_id, "-", name);
  absl::MutexLock setup(&setup_mu_);
  std::shared_ptr<Link> link;
  {
    absl::MutexLock lock(&mu_);
    auto it = links_.find(runner_id);
    if (it != links_.end()) link = it->second;
  }
  if (link && !link->closed()) {
    // Its lease starts again.
    pb::RunnerMessage beat;
    beat.mutable_heartbeat();
    dispatcher_.OnMessage(runner_id, std::move(beat));
    return link;
  }
  link = std::make_shared<Link>(this, runner_id);
  ConnectedRunner runner;
  RunnerSlot& slot = runner.slot;
  slot.runner_id = runner_id;
  slot.name = name;
  slot.account_id = principal.account_id;
  slot.account_type = principal.type;
  slot.access = RunnerServiceImpl::AccessOf(principal);
  slot.labels.insert(labels.begin(), labels.end());
  slot.providers.insert(providers.begin(), providers.end());
  if (slot.providers.empty()) slot.providers.insert("claude");
  // Nothing is pushed to it: it claims (Dispatcher::ClaimNow).
  slot.max_tasks = 0;
  runner.link = link;
  runner.key = key;
  runner.silence_limit = lease_;
  {
    absl::MutexLock lock(&mu_);
    links_[runner_id] = link;
  }
  if (absl::Status st = dispatcher_.Connect(std::move(runner), pb::Hello()); !st.ok()) {
    absl::MutexLock lock(&mu_);
    links_.erase(runner_id);
    return st;
  }
  Log()->info("agent={} account={} polls, lease {} ms", name, principal.account_id, lease_.count());
  return link;
}

void PollingAgents::Claim(const Principal& principal, const std::string& key,
                          const pb::ClaimWorkersRequest& request,
                          pb::ClaimWorkersResponse* response, Reply done) {
  auto fail = [&done](absl::Status st) { done(std::move(st)); };
  if (absl::Status st = CheckAgent(principal); !st.ok()) return fail(st);
  const int n = request.max_tasks() == 0 ? 1 : request.max_tasks();
  if (n < 1 || n > kMaxClaim) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("maxTasks must be between 1 and ", kMaxClaim, ", not ", request.max_tasks())));
  }
  if (absl::Status st = CheckName(request.runner(), "runner"); !st.ok()) return fail(st);
  if (request.labels_size() > static_cast<int>(kMaxLabels)) {
    return fail(absl::InvalidArgumentError(absl::StrCat("labels: at most ", kMaxLabels)));
  }
  for (const std::string& label : request.labels()) {
    if (label.empty()) return fail(absl::InvalidArgumentError("labels may not hold an empty label"));
    if (absl::Status st = CheckName(label, "labels"); !st.ok()) return fail(st);
  }
  static const std::set<std::string> kProviders = {"command", "claude", "codex"};
  for (const std::string& provider : request.providers()) {
    if (kProviders.count(provider) == 0) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
          "providers: \"", provider.substr(0, 64), "\" is not one of command, claude, codex")));
    }
  }
  absl::StatusOr<std::shared_ptr<Link>> link =
      Agent(principal, key, AgentName(request.runner()),
            {request.labels().begin(), request.labels().end()},
            {request.providers().begin(), request.providers().end()});
  if (!link.ok()) return fail(link.status());
  dispatcher_.ClaimNow(
      (*link)->runner_id(), n, request.workspace_id(),
      [response, done = std::move(done)](absl::StatusOr<std::vector<Dispatcher::Claimed>> claimed) {
        if (!claimed.ok()) return done(claimed.status());
        for (const Dispatcher::Claimed& c : *claimed) {
          pb::Worker* worker = response->add_workers();
          *worker = WorkerToProto(c.worker);
          worker->set_state(pb::Worker::starting);
          *response->add_tasks() = TaskToProto(c.task);
        }
        done(absl::OkStatus());
      });
}

int64_t PollingAgents::Report(Link& link, const LiveWorker& worker,
                              const pb::UpdateWorkerRequest& request) {
  absl::MutexLock lock(&link.report_mu);
  int64_t& seq = link.next_seq[worker.worker_id];
  seq = std::max(seq, worker.last_seq);
  const int64_t first = seq + 1;
  auto report = [&](pb::Event e) {
    pb::RunnerMessage message;
    pb::RunnerEvent* event = message.mutable_event();
    event->set_worker_id(worker.worker_id);
    event->set_epoch(worker.epoch);
    event->set_seq(++seq);
    *event->mutable_event() = std::move(e);
    dispatcher_.OnMessage(link.runner_id(), std::move(message));
  };
  const std::string& status = request.status();
  const bool ends = status == "completed" || status == "error" || status == "canceled";
  if (status == "running" || ends) {
    // The first report of work under way starts it.
    if (worker.state == "idle" || worker.state == "starting") report(EventNamed("started", ""));
  }
  if (status == "running" && worker.state != "idle" && worker.state != "starting" &&
      worker.state != "running") {
    pb::Event e = EventNamed("status", "");
    e.set_status("running");
    report(std::move(e));
  }
  if (request.has_progress()) {
    pb::Event e = EventNamed("progress", absl::StrCat(request.progress(), "%"));
    (*e.mutable_data()->mutable_fields())["progress"].set_number_value(request.progress());
    report(std::move(e));
  }
  if (!request.message().empty()) report(EventNamed("assistant_message", request.message()));
  for (const std::string& m : request.messages()) {
    if (!m.empty()) report(EventNamed("assistant_message", m));
  }
  if (!request.question().empty()) report(EventNamed("question", request.question()));
  if (status == "waiting_input" || status == "paused") {
    pb::Event e = EventNamed("status", "");
    e.set_status(status);
    report(std::move(e));
  }
  if (!request.result().empty()) report(EventNamed("result", request.result()));
  if (!ends) {
    // Nothing to store: the call only renewed the lease.
    return seq >= first ? seq : 0;
  }
  pb::RunnerMessage message;
  pb::Finished* finished = message.mutable_finished();
  finished->set_worker_id(worker.worker_id);
  finished->set_epoch(worker.epoch);
  finished->set_outcome(OutcomeOfStatus(status));
  finished->set_exit_code(status == "error" ? 1 : 0);
  finished->set_error_message(request.error());
  finished->set_last_seq(seq);
  if (request.has_artifacts() || request.cost() > 0) {
    *finished->mutable_artifacts() = request.artifacts();
    finished->mutable_artifacts()->set_cost_usd(request.cost());
  }
  const int64_t acked_by = FinishedAckSeq(*finished);
  link.next_seq.erase(worker.worker_id);
  dispatcher_.OnMessage(link.runner_id(), std::move(message));
  return acked_by;
}

void PollingAgents::Update(const Principal& principal, const std::string& key,
                           const pb::UpdateWorkerRequest& request,
                           pb::UpdateWorkerResponse* response, Reply done) {
  auto fail = [&done](absl::Status st) { done(std::move(st)); };
  if (absl::Status st = CheckAgent(principal); !st.ok()) return fail(st);
  const std::string& id = request.id();
  if (id.empty()) return fail(absl::InvalidArgumentError("id is required"));
  static const std::set<std::string> kStatuses = {
      "", "running", "waiting_input", "paused", "completed", "error", "canceled"};
  if (kStatuses.count(request.status()) == 0) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "status: \"", request.status().substr(0, 64),
        "\" is not one of running, waiting_input, paused, completed, error, canceled")));
  }
  if (request.has_progress() && (request.progress() < 0 || request.progress() > 100)) {
    return fail(absl::InvalidArgumentError("progress must be between 0 and 100"));
  }
  if (request.cost() < 0) return fail(absl::InvalidArgumentError("cost may not be negative"));
  if (absl::Status st = CheckName(request.runner(), "runner"); !st.ok()) return fail(st);

  absl::StatusOr<std::shared_ptr<Link>> agent =
      Agent(principal, key, AgentName(request.runner()), {}, {});
  if (!agent.ok()) return fail(agent.status());
  std::shared_ptr<Link> link = *std::move(agent);

  std::optional<LiveWorker> worker = dispatcher_.workers().Get(id);
  if (!worker || worker->runner_id != link->runner_id()) {
    // Not held here by this agent: its lease lapsed, this replica started
    // since, or the agent's call came to another replica.
    absl::StatusOr<WorkerRecord> stored = store_.GetWorker(id);
    if (!stored.ok() || stored->account_id != principal.account_id) {
      return fail(absl::NotFoundError(absl::StrCat("worker ", id, " not found")));
    }
    if (IsTerminalWorkerState(stored->state)) {
      return fail(absl::FailedPreconditionError(
          absl::StrCat("worker ", id, " is already ", stored->state)));
    }
    if (worker && !worker->runner_id.empty()) {
      return fail(absl::FailedPreconditionError(
          absl::StrCat("worker ", id, " is held by another runner (", stored->runner_name, ")")));
    }
    pb::ResumeWorker resume;
    resume.set_worker_id(id);
    resume.set_epoch(stored->epoch);
    std::optional<RunnerSlot> slot = dispatcher_.RunnerSlotOf(link->runner_id());
    if (!slot) return fail(absl::UnavailableError("the agent's lease ended meanwhile: try again"));
    absl::Notification reattached;
    absl::Status status;
    std::vector<std::string> stale;
    dispatcher_.Reattach(*slot, {resume}, [&](absl::Status st, std::vector<std::string> s) {
      status = std::move(st);
      stale = std::move(s);
      reattached.Notify();
    });
    reattached.WaitForNotification();
    if (!status.ok()) return fail(status);
    worker = dispatcher_.workers().Get(id);
    if (!stale.empty() || !worker) {
      return fail(absl::FailedPreconditionError(
          absl::StrCat("worker ", id, " lost its lease: its task went to another attempt")));
    }
    Log()->info("agent={} took worker={} back", link->runner_id(), id);
  }

  const int64_t durable_at = Report(*link, *worker, request);
  const bool ends = request.status() == "completed" || request.status() == "error" ||
                    request.status() == "canceled";
  auto answer = [this, link, id, ends, response, done = std::move(done)](absl::Status status) {
    if (!status.ok()) return done(status);
    if (ends) link->Done(id);
    absl::StatusOr<WorkerRecord> stored = store_.GetWorker(id);
    if (!stored.ok()) return done(stored.status());
    *response->mutable_worker() = WorkerToProto(*stored);
    for (const pb::Control& c : link->TakeControls(id)) {
      pb::WorkerControl* control = response->add_controls();
      control->set_action(static_cast<pb::ControlWorkerRequest::Action>(c.action()));
      control->set_text(c.text());
    }
    done(absl::OkStatus());
  };
  // Acks come on the journal's thread, which never reads the store.
  link->WhenAcked(id, durable_at, [this, answer = std::move(answer)](absl::Status status) mutable {
    boost::asio::post(pool_, [answer = std::move(answer), status]() mutable { answer(status); });
  });
}

}  // namespace buildd::broker
