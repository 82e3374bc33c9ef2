#include "services/broker/recorder.h"

#include <boost/asio/post.hpp>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "services/broker/conversions.h"
#include "services/broker/runner_reports.h"
#include "services/broker/task_states.h"

namespace buildd::broker {

Recorder::Recorder(Journal& journal, BrokerStore& store, boost::asio::thread_pool& pool,
                   RunnerRegistry& registry, WorkerTable& workers, Budget& budget, Ended ended)
    : journal_(journal),
      store_(store),
      pool_(pool),
      registry_(registry),
      workers_(workers),
      budget_(budget),
      ended_(std::move(ended)) {}

void Recorder::Send(const std::string& runner_id, pb::BrokerMessage message) {
  if (auto link = registry_.Link(runner_id)) link->Send(std::move(message));
}

void Recorder::OnNotStored(const std::string& runner_id, const std::string& worker_id,
                             int64_t epoch, int64_t seq, int64_t ack_up_to, bool finished,
                             const absl::Status& status) {
  Log()->error("runner={} worker={} seq={}: its {} could not be stored: {}", runner_id, worker_id,
               seq, finished ? "Finished" : "event", status.ToString());
  if (status.code() == absl::StatusCode::kUnavailable) {
    if (auto link = registry_.Link(runner_id)) {
      link->Close(absl::UnavailableError("the broker cannot store events now"));
    }
    return;
  }
  journal_.Submit([this, runner_id, worker_id, epoch, seq, ack_up_to, finished,
                   status](JournalTx& tx) -> absl::Status {
    const std::optional<LiveWorker> known = workers_.HeldBy(runner_id, worker_id, epoch);
    tx.OnCommit([this, runner_id, ack = AckOf(worker_id, ack_up_to)] { Send(runner_id, ack); });
    if (!known) return absl::OkStatus();
    const std::string text =
        absl::StrCat(finished ? "the attempt's result" : absl::StrCat("event ", seq),
                     " from the runner could not be stored: ", status.message());
    WorkerChange change;
    change.worker_id = worker_id;
    change.epoch = epoch;
    change.seq = std::max(seq, known->last_seq);
    if (finished) {
      change.worker_state = "error";
      change.task_state = TaskStateFor(change.worker_state);
      change.error = text;
      change.exit_code = -1;
    }
    tx.writes().ChangeWorker(change);
    pb::Event e = EventOf("error", known->task_id, worker_id, known->workspace_id);
    e.set_text(text);
    if (finished) e.set_status(change.worker_state);
    tx.Append(std::move(e));
    tx.OnCommit([this, runner_id, finished, w = *known, seq = change.seq] {
      if (finished) return ended_(runner_id, w);
      workers_.Record(w.worker_id, seq, w.state);
    });
    return absl::OkStatus();
  });
}

void Recorder::OnEvent(const std::string& runner_id, pb::RunnerEvent event) {
  const std::string worker_id = event.worker_id();
  const int64_t epoch = event.epoch(), seq = event.seq();
  const size_t bytes = event.ByteSizeLong();
  // Sealed here, on the stream's thread, so that the event keeps its place
  // in the worker's order; a planning pass's transcript is small.
  std::optional<SealedSession> checkpoint;
  if (event.has_checkpoint() && event.event().type() == "input") {
    const pb::Checkpoint& c = event.checkpoint();
    if (auto w = workers_.HeldBy(runner_id, worker_id, epoch); w && !c.session().session_id().empty()) {
      checkpoint = store_.SealSession(AgentSession{w->task_id, c.session().provider(),
                                                   c.session().session_id(), c.session().data(),
                                                   c.prompt(), c.plan()});
    }
  }
  event.clear_checkpoint();
  journal_.Submit([this, runner_id, event = std::move(event),
                   checkpoint = std::move(checkpoint)](JournalTx& tx) -> absl::Status {
    const std::optional<LiveWorker> before = workers_.HeldBy(runner_id, event.worker_id(), event.epoch());
    const bool refused = before && !RunnerMaySend(event.event());
    if (refused) {
      Log()->warn("runner={} worker={} sent an event of type '{}' (status '{}'), which runners may "
                  "not send: dropped",
                  runner_id, event.worker_id(), event.event().type().substr(0, 64),
                  event.event().status().substr(0, 64));
    }
    tx.OnCommit([this, runner_id, ack = AckOf(event.worker_id(), event.seq())] { Send(runner_id, ack); });
    if (!before || refused || event.seq() <= before->last_seq) {
      // A duplicate (replayed after a reconnect), a fenced-off attempt or a
      // refused event: acknowledge so the runner drops it, record nothing.
      return absl::OkStatus();
    }
    pb::Event e = RecordedEvent(event, before->task_id, before->workspace_id);
    const std::string new_state = WorkerStateAfter(before->state, e);
    WorkerChange change;
    change.worker_id = event.worker_id();
    change.epoch = event.epoch();
    change.seq = event.seq();
    if (new_state != before->state) {
      change.worker_state = new_state;
      change.task_state = TaskStateFor(new_state);
    }
    tx.writes().ChangeWorker(change);
    if (checkpoint.has_value() && checkpoint->task_id == before->task_id) {
      tx.store().SaveSession(*checkpoint);
    }
    tx.Append(std::move(e));
    workers_.Record(event.worker_id(), event.seq(), new_state);
    tx.OnAbort([this, b = *before] { workers_.Record(b.worker_id, b.last_seq, b.state); });
    return absl::OkStatus();
  }, [this, runner_id, worker_id, epoch, seq](absl::Status status) {
    if (!status.ok()) OnNotStored(runner_id, worker_id, epoch, seq, seq, /*finished=*/false, status);
  }, bytes);
}

void Recorder::OnFinished(const std::string& runner_id, pb::Finished message) {
  const bool heavy = message.has_artifacts() ||
                     (message.has_session() && !message.session().session_id().empty());
  auto prepare = [this, runner_id, finished = std::move(message)]() mutable {
    // A transcript of megabytes is sealed, and a patch of 256 KiB turned
    // into JSON, here: not on a gRPC thread, not on the journal's.
    std::optional<SealedSession> session;
    if (finished.has_session() && !finished.session().session_id().empty()) {
      if (auto w = workers_.HeldBy(runner_id, finished.worker_id(), finished.epoch())) {
        const pb::SessionSnapshot& s = finished.session();
        session = store_.SealSession(AgentSession{w->task_id, s.provider(), s.session_id(), s.data(), "", ""});
      }
    }
    finished.clear_session();
    std::string artifacts_json;
    google::protobuf::Struct artifacts_data;
    if (finished.has_artifacts()) {
      (void)google::protobuf::util::MessageToJsonString(finished.artifacts(), &artifacts_json);
      (void)google::protobuf::util::JsonStringToMessage(artifacts_json, &artifacts_data);
    }
    StoreFinished(runner_id, std::move(finished), std::move(session), std::move(artifacts_json),
                  std::move(artifacts_data));
  };
  if (heavy) {
    boost::asio::post(pool_, std::move(prepare));
  } else {
    prepare();
  }
}

void Recorder::StoreFinished(const std::string& runner_id, pb::Finished finished,
                               std::optional<SealedSession> session, std::string artifacts_json,
                               google::protobuf::Struct artifacts_data) {
  const std::string worker_id = finished.worker_id();
  const int64_t epoch = finished.epoch(), last_seq = finished.last_seq();
  const int64_t ack_up_to = FinishedAckSeq(finished);
  const size_t bytes = finished.ByteSizeLong() + artifacts_json.size() +
                       (session ? session->sealed.size() : 0);
  journal_.Submit([this, runner_id, finished = std::move(finished), session = std::move(session),
                   artifacts_json = std::move(artifacts_json),
                   artifacts_data = std::move(artifacts_data)](JournalTx& tx) mutable -> absl::Status {
    const std::optional<LiveWorker> known =
        workers_.HeldBy(runner_id, finished.worker_id(), finished.epoch());
    // A Finished is acked as the message after the last event.
    tx.OnCommit([this, runner_id, ack = AckOf(finished.worker_id(), FinishedAckSeq(finished))] {
      Send(runner_id, ack);
    });
    if (!known) return absl::OkStatus();
    const LiveWorker& w = *known;
    const Outcome outcome = OutcomeOf(finished.outcome());
    WorkerChange change;
    change.worker_id = finished.worker_id();
    change.epoch = finished.epoch();
    change.worker_state = outcome.worker_state;
    change.task_state = outcome.task_state;
    change.exit_code = finished.exit_code();
    change.error = finished.error_message();
    change.seq = std::max<int64_t>(finished.last_seq(), w.last_seq);
    tx.writes().ChangeWorker(change);
    pb::Event e = EventOf(outcome.event_type, w.task_id, finished.worker_id(), w.workspace_id);
    e.set_status(outcome.worker_state);
    e.set_exit_code(finished.exit_code());
    e.set_text(finished.error_message());
    if (finished.has_artifacts()) {
      tx.store().SetArtifacts(w.task_id, artifacts_json);
      *e.mutable_data() = std::move(artifacts_data);
    }
    if (finished.artifacts().cost_usd() > 0) ChargeInTx(tx, runner_id, w, finished.artifacts().cost_usd());
    if (session.has_value() && session->task_id == w.task_id) tx.store().SaveSession(*session);
    tx.Append(std::move(e));
    tx.OnCommit([this, runner_id, w] { ended_(runner_id, w); });
    return absl::OkStatus();
  }, [this, runner_id, worker_id, epoch, last_seq, ack_up_to](absl::Status status) {
    if (!status.ok()) {
      OnNotStored(runner_id, worker_id, epoch, last_seq, ack_up_to, /*finished=*/true, status);
    }
  }, bytes);
}

void Recorder::ChargeInTx(JournalTx& tx, const std::string& runner_id, const LiveWorker& w,
                            double cost_usd) {
  const std::optional<RunnerSlot> runner = registry_.Slot(runner_id);
  if (!runner || runner->account_id.empty()) return;
  const double total = tx.store().AddCost(runner->account_id, cost_usd);
  const double limit = runner->access.account_max_cost_per_day;
  if (!Budget::Reaches(total, limit)) return;
  const std::string text =
      absl::StrFormat("account %s spent $%.4f of its $%.4f a day: its runners take no agent tasks "
                      "until the day (UTC) is over",
                      runner->account_id, total, limit);
  // Told with the task that reached the limit.
  pb::Event e = EventOf("budget", w.task_id, "", w.workspace_id);
  e.set_text(text);
  tx.Append(std::move(e));
  tx.OnCommit([this, account_id = runner->account_id, text] {
    Log()->info("{}", text);
    budget_.SetSpent(account_id, true);
  });
}

}  // namespace buildd::broker
