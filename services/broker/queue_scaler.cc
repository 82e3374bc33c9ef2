#include "services/broker/queue_scaler.h"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/write_queue.h"
#include "services/broker/task_states.h"

namespace buildd::broker {
namespace {

namespace ks = ::externalscaler;

constexpr char kMetric[] = "buildd_tasks";

std::set<std::string> CommaSet(const std::string& text) {
  std::set<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    out.insert(std::string(absl::StripAsciiWhitespace(part)));
  }
  return out;
}

std::string Get(const google::protobuf::Map<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? "" : it->second;
}

}  // namespace

absl::StatusOr<ScaledRunners> ScaledRunnersOf(
    const google::protobuf::Map<std::string, std::string>& metadata) {
  ScaledRunners out;
  RunnerSlot& pods = out.pods;
  // Counting for the pods, not for an account: which workspaces they may
  // claim is the workspace key's to narrow.
  pods.access.claim_all = true;
  const std::string providers = Get(metadata, "providers");
  pods.providers = providers.empty() ? std::set<std::string>{"command", "claude", "codex"}
                                     : CommaSet(providers);
  for (const std::string& p : pods.providers) {
    if (p != "command" && p != "claude" && p != "codex") {
      return absl::InvalidArgumentError(
          absl::StrCat("providers: '", p, "' is not one of command, claude, codex"));
    }
  }
  pods.labels = CommaSet(Get(metadata, "labels"));
  pods.only_workspaces = CommaSet(Get(metadata, "workspace"));
  for (const std::string& ws : pods.only_workspaces) {
    if (absl::Status st = CheckUuid(ws, "workspace"); !st.ok()) return st;
  }
  pods.account_type = Get(metadata, "accountType");
  if (pods.account_type.empty()) pods.account_type = "service";
  if (pods.account_type != "service" && pods.account_type != "user" && pods.account_type != "action") {
    return absl::InvalidArgumentError(absl::StrCat(
        "accountType: '", pods.account_type, "' is not one of service, user, action"));
  }
  const std::string per = Get(metadata, "tasksPerRunner");
  if (!per.empty() && (!absl::SimpleAtoi(per, &out.tasks_per_runner) || out.tasks_per_runner < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tasksPerRunner: '", per, "' is not a whole number of at least 1"));
  }
  return out;
}

int64_t Demand(const std::vector<QueueGroup>& queue, const RunnerSlot& pods) {
  int64_t n = 0;
  for (const QueueGroup& g : queue) {
    if (Eligible(pods, /*spent=*/false, g.route)) n += g.tasks;
  }
  return n;
}

Metrics::Series PendingSeries(BrokerStore& store) {
  absl::StatusOr<std::vector<QueueGroup>> queue = store.Queue();
  if (!queue.ok()) {
    Log()->warn("cannot count the queue for /metrics: {}", queue.status().message());
    return {};
  }
  std::map<std::pair<std::string, std::string>, int64_t> pending;
  for (const QueueGroup& g : *queue) {
    if (!g.pending) continue;
    std::vector<std::string> labels = g.route.required_labels;
    std::sort(labels.begin(), labels.end());
    pending[{g.route.provider, absl::StrJoin(labels, ",")}] += g.tasks;
  }
  Metrics::Series series;
  for (const auto& [route, n] : pending) {
    series.emplace_back(absl::StrCat(Label("provider", route.first), ",", Label("labels", route.second)),
                        static_cast<double>(n));
  }
  return series;
}

// One StreamIsActive call: what it last sent, and its pods.
class QueueScaler::ActiveStream final : public QueuedWriteReactor<ks::IsActiveResponse> {
 public:
  ActiveStream(QueueScaler& scaler, RunnerSlot pods) : scaler_(scaler), pods_(std::move(pods)) {}

  // Sends `demand > 0` when it differs from what was sent.
  void Update(const std::vector<QueueGroup>& queue) ABSL_EXCLUSIVE_LOCKS_REQUIRED(scaler_.mu_) {
    const bool active = Demand(queue, pods_) > 0;
    if (sent_ == active) return;
    sent_ = active;
    ks::IsActiveResponse response;
    response.set_result(active);
    Send(std::move(response));
  }

 protected:
  void OnClosed() override {
    absl::MutexLock lock(&scaler_.mu_);
    scaler_.streams_.erase(this);
  }

 private:
  QueueScaler& scaler_;
  const RunnerSlot pods_;
  std::optional<bool> sent_;  // guarded by scaler_.mu_
};

QueueScaler::QueueScaler(BrokerStore& store, boost::asio::thread_pool& pool)
    : store_(store), pool_(pool) {}

QueueScaler::~QueueScaler() {
  // A recount may still be queued on the pool; it must not outlive this.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](bool* counting) { return !*counting; }, &counting_));
}

void QueueScaler::OnEvents(const std::vector<::buildd::v1::Event>& events) {
  for (const ::buildd::v1::Event& e : events) {
    // Demand counts waiting and running tasks alike: only a new one or
    // an ending changes it.
    if (QueuesOrEndsATask(e.type())) return RecountSoon();
  }
}

void QueueScaler::RecountSoon() {
  {
    absl::MutexLock lock(&mu_);
    if (streams_.empty()) return;
    if (counting_) {
      count_again_ = true;
      return;
    }
    counting_ = true;
  }
  boost::asio::post(pool_, [this] { Recount(); });
}

void QueueScaler::Recount() {
  while (true) {
    absl::StatusOr<std::vector<QueueGroup>> queue = store_.Queue();
    absl::MutexLock lock(&mu_);
    if (!queue.ok()) {
      // The next change recounts; the streams keep their last answer.
      Log()->warn("cannot count the queue for the scaler: {}", queue.status().message());
    } else {
      for (ActiveStream* stream : streams_) stream->Update(*queue);
    }
    if (!count_again_) {
      counting_ = false;
      return;
    }
    count_again_ = false;
  }
}

grpc::ServerUnaryReactor* QueueScaler::IsActive(grpc::CallbackServerContext* ctx,
                                                const ks::ScaledObjectRef* ref,
                                                ks::IsActiveResponse* resp) {
  return AnswerWithDemand(ctx, ref->scalermetadata(), [resp](int64_t demand) {
    resp->set_result(demand > 0);
  });
}

grpc::ServerUnaryReactor* QueueScaler::AnswerWithDemand(
    grpc::CallbackServerContext* ctx, const google::protobuf::Map<std::string, std::string>& metadata,
    std::function<void(int64_t)> answer) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  boost::asio::post(pool_, [this, reactor, &metadata, answer = std::move(answer)] {
    absl::StatusOr<ScaledRunners> runners = ScaledRunnersOf(metadata);
    if (!runners.ok()) return reactor->Finish(ToGrpcStatus(runners.status()));
    absl::StatusOr<std::vector<QueueGroup>> queue = store_.Queue();
    if (!queue.ok()) return reactor->Finish(ToGrpcStatus(queue.status()));
    answer(Demand(*queue, runners->pods));
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerWriteReactor<ks::IsActiveResponse>* QueueScaler::StreamIsActive(
    grpc::CallbackServerContext* /*ctx*/, const ks::ScaledObjectRef* ref) {
  absl::StatusOr<ScaledRunners> runners = ScaledRunnersOf(ref->scalermetadata());
  auto* stream = new ActiveStream(*this, runners.ok() ? runners->pods : RunnerSlot{});
  if (!runners.ok()) {
    stream->FinishOnce(ToGrpcStatus(runners.status()));
    return stream;
  }
  {
    absl::MutexLock lock(&mu_);
    streams_.insert(stream);
  }
  // Its first answer comes with the next count.
  RecountSoon();
  return stream;
}

grpc::ServerUnaryReactor* QueueScaler::GetMetricSpec(grpc::CallbackServerContext* ctx,
                                                     const ks::ScaledObjectRef* ref,
                                                     ks::GetMetricSpecResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<ScaledRunners> runners = ScaledRunnersOf(ref->scalermetadata());
  if (!runners.ok()) {
    reactor->Finish(ToGrpcStatus(runners.status()));
    return reactor;
  }
  ks::MetricSpec* spec = resp->add_metricspecs();
  spec->set_metricname(kMetric);
  spec->set_targetsize(runners->tasks_per_runner);
  spec->set_targetsizefloat(static_cast<double>(runners->tasks_per_runner));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* QueueScaler::GetMetrics(grpc::CallbackServerContext* ctx,
                                                  const ks::GetMetricsRequest* req,
                                                  ks::GetMetricsResponse* resp) {
  return AnswerWithDemand(ctx, req->scaledobjectref().scalermetadata(), [req, resp](int64_t demand) {
    ks::MetricValue* value = resp->add_metricvalues();
    value->set_metricname(req->metricname().empty() ? kMetric : req->metricname());
    value->set_metricvalue(demand);
    value->set_metricvaluefloat(static_cast<double>(demand));
  });
}

}  // namespace buildd::broker
