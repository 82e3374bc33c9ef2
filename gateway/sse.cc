#include "gateway/sse.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <unordered_map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/status.h"
#include "gateway/http_errors.h"
#include "gateway/json_codec.h"

namespace buildd::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

absl::StatusOr<int64_t> LastEventIdFromHttp(const HttpRequest& request) {
  std::string last_event_id;
  for (const auto& [name, value] : request.query) {
    if (name == "lastEventId" || name == "last_event_id") last_event_id = value;
  }
  // A reconnecting EventSource sends the id it saw last in the header, while
  // the URL still carries the original ?lastEventId=: the header wins.
  std::string source = "lastEventId";
  const std::string header = request.Header("Last-Event-ID");
  if (!header.empty()) {
    last_event_id = header;
    source = "the Last-Event-ID header";
  }
  if (last_event_id.empty()) return 0;
  int64_t id = 0;
  if (!absl::SimpleAtoi(last_event_id, &id) || id < 0) {
    return absl::InvalidArgumentError(absl::StrCat("invalid value ", JsonQuote(last_event_id),
                                                   " for ", source, " (expected an event id)"));
  }
  return id;
}

absl::StatusOr<pb::SubscribeRequest> SubscribeRequestFromHttp(const HttpRequest& request) {
  pb::SubscribeRequest subscribe;
  QueryParams filters;
  for (const auto& [name, value] : request.query) {
    if (name != "lastEventId" && name != "last_event_id") filters.emplace_back(name, value);
  }
  BUILDD_RETURN_IF_ERROR(QueryToMessage(filters, &subscribe));
  BUILDD_ASSIGN_OR_RETURN(int64_t after_id, LastEventIdFromHttp(request));
  subscribe.set_after_id(after_id);
  return subscribe;
}

namespace {
std::string OneLine(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c != '\n' && c != '\r') out.push_back(c);
  }
  return out;
}
}  // namespace

std::string FormatSseEvent(const pb::Event& event) {
  std::string type = OneLine(event.type());
  if (type.empty()) type = "message";
  // The JSON printer escapes line breaks inside strings: one line of data.
  return absl::StrCat("id: ", event.id(), "\nevent: ", type, "\ndata: ", ToJson(event), "\n\n");
}

std::string FormatSseMessage(const std::string& id, const std::string& event,
                             const std::string& json) {
  return absl::StrCat(id.empty() ? "" : absl::StrCat("id: ", OneLine(id), "\n"),
                      "event: ", OneLine(event), "\ndata: ", OneLine(json), "\n\n");
}

namespace {

constexpr auto kWriteTimeout = std::chrono::seconds(30);

// The SSE text of recent events, for every client that follows them: an
// event is formatted once however many clients get it (the broker sends an
// event id with the same content to whoever may see it). Thread-safe.
class FormattedEvents {
 public:
  std::shared_ptr<const std::string> Get(const pb::Event& event) {
    if (event.id() == 0) return std::make_shared<const std::string>(FormatSseEvent(event));
    {
      absl::MutexLock lock(&mu_);
      auto it = texts_.find(event.id());
      if (it != texts_.end()) return it->second;
    }
    auto text = std::make_shared<const std::string>(FormatSseEvent(event));
    absl::MutexLock lock(&mu_);
    if (texts_.emplace(event.id(), text).second) {
      order_.push_back(event.id());
      bytes_ += text->size();
      while (order_.size() > kKept || bytes_ > kKeptBytes) {
        auto oldest = texts_.find(order_.front());
        bytes_ -= oldest->second->size();
        texts_.erase(oldest);
        order_.pop_front();
      }
    }
    return text;
  }

 private:
  // Recent events at most, and their text at most (an event may be 1 MiB).
  static constexpr size_t kKept = 4096;
  static constexpr size_t kKeptBytes = 16 << 20;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Mutex mu_;
  std::unordered_map<int64_t, std::shared_ptr<const std::string>> texts_ ABSL_GUARDED_BY(mu_);
  std::deque<int64_t> order_ ABSL_GUARDED_BY(mu_);
};
// Events read ahead of the client while it has less than this waiting: it
// bounds what a slow client makes us hold, and lets a fast one get many
// events per write.
constexpr size_t kReadAheadBytes = 256 << 10;

// GET /api/events: every event as the broker sends it.
class EventsDialect final : public SseDialect {
 public:
  explicit EventsDialect(std::shared_ptr<FormattedEvents> formatted)
      : formatted_(std::move(formatted)) {}

  void Open(const HttpRequest& request,
            std::function<void(absl::StatusOr<Opening>)> done) override {
    absl::StatusOr<pb::SubscribeRequest> subscribe = SubscribeRequestFromHttp(request);
    if (!subscribe.ok()) return done(subscribe.status());
    Opening opening;
    opening.subscribe = *std::move(subscribe);
    done(std::move(opening));
  }
  void Translate(const pb::Event& event, SseMessages* out) override {
    out->push_back(formatted_->Get(event));
  }

 private:
  std::shared_ptr<FormattedEvents> formatted_;
};

// One SSE connection. Runs on the connection's strand; the dialect's
// opening and the subscription's callbacks are posted onto it. Lives until
// both the client side is closed and the Subscribe call is done (the
// observer holds it), so that nothing is posted to a server that already
// stopped.
class SseSession : public std::enable_shared_from_this<SseSession> {
 public:
  SseSession(HttpRequest request, HttpStream stream,
             std::shared_ptr<ConnectionTracker::Token> token, std::shared_ptr<BrokerClient> broker,
             std::unique_ptr<SseDialect> dialect, SseOptions options)
      : token_(std::move(token)),
        request_(std::move(request)),
        stream_(std::move(stream)),
        broker_(std::move(broker)),
        dialect_(std::move(dialect)),
        options_(options),
        commit_timer_(stream_.get_executor()),
        heartbeat_timer_(stream_.get_executor()),
        chunked_(request_.version >= 11) {}

  void Start() {
    std::weak_ptr<SseSession> weak = weak_from_this();
    auto executor = stream_.get_executor();
    token_->SetCloser([weak, executor] {
      asio::post(executor, [weak] {
        if (auto self = weak.lock()) self->OnServerStopping();
      });
    });
    auto self = shared_from_this();
    // Noticed while opening too: a client gone before then is not followed.
    ReadFromClient();
    dialect_->Open(request_, [self](absl::StatusOr<SseDialect::Opening> opening) {
      self->Post([self, opening = std::move(opening)]() mutable {
        self->OnOpened(std::move(opening));
      });
    });
  }

 private:
  void OnOpened(absl::StatusOr<SseDialect::Opening> opening) {
    if (closed_) return;
    if (!opening.ok()) return Fail(ErrorResponse(opening.status()));
    if (stopping_) {
      return Fail(ErrorResponse(absl::UnavailableError("the gateway is shutting down")));
    }
    prelude_ = std::move(opening->prelude);
    const pb::SubscribeRequest subscribe = std::move(opening->subscribe);
    // The observer holds only the session, never an executor: it is
    // destroyed on a gRPC thread, possibly after the server stopped.
    auto self = shared_from_this();
    EventObserver observer;
    observer.on_started = [self] { self->Post([self] { self->Commit(); }); };
    observer.on_events = [self](std::vector<pb::Event> events) {
      self->Post([self, events = std::move(events)] { self->OnEvents(events); });
    };
    observer.on_done = [self](absl::Status status) {
      self->Post([self, status = std::move(status)] { self->OnUpstreamDone(status); });
    };
    subscription_ = broker_->Subscribe(CallMeta{request_.api_key, request_.request_id}, subscribe,
                                       std::move(observer));

    commit_timer_.expires_after(absl::ToChronoMilliseconds(options_.commit_delay));
    commit_timer_.async_wait([self](beast::error_code ec) {
      if (!ec) self->Commit();
    });
  }

  using Clock = std::chrono::steady_clock;
  enum class Phase {
    kPending,    // Nothing written yet: an upstream error can still be a 4xx.
    kStreaming,  // 200 and `retry:` went out.
    kClosing,    // The client is gone or the response is complete.
  };

  template <typename F>
  void Post(F&& f) {
    asio::post(stream_.get_executor(), std::forward<F>(f));
  }

  // Sends the response head and `retry:`; from here on errors end the stream.
  void Commit() {
    if (phase_ != Phase::kPending) return;
    phase_ = Phase::kStreaming;
    commit_timer_.cancel();
    http::response<http::empty_body> head{http::status::ok, request_.version};
    head.set(http::field::server, "buildd-gateway");
    head.set(http::field::content_type, "text/event-stream");
    head.set(http::field::cache_control, "no-cache");
    head.set(http::field::connection, "keep-alive");
    head.set("X-Request-Id", request_.request_id);
    // Tells nginx-like proxies not to buffer the stream.
    head.set("X-Accel-Buffering", "no");
    if (chunked_) head.set(http::field::transfer_encoding, "chunked");
    std::ostringstream out;
    out << head.base();
    Enqueue(out.str());
    Enqueue(Chunk(absl::StrCat("retry: ", options_.retry_ms, "\n\n")));
    for (const auto& message : prelude_) Enqueue(Chunk(*message));
    prelude_.clear();
    ArmHeartbeat();
  }

  void OnEvents(const std::vector<pb::Event>& events) {
    if (phase_ == Phase::kClosing) return;
    Commit();
    for (const pb::Event& event : events) {
      ++events_;
      SseMessages messages;
      dialect_->Translate(event, &messages);
      for (const auto& message : messages) Enqueue(Chunk(*message));
      if (dialect_->Ends(event)) return Complete();
    }
    // The next events are asked for now, or once enough of these left (see
    // OnWritten).
    if (outbox_bytes_ < kReadAheadBytes && subscription_) {
      subscription_->Next();
    } else {
      want_next_ = true;
    }
  }

  void OnUpstreamDone(const absl::Status& status) {
    subscription_.reset();
    upstream_done_ = true;
    upstream_status_ = status;
    commit_timer_.cancel();
    switch (phase_) {
      case Phase::kClosing:
        return MaybeClose();
      case Phase::kPending:
        if (!status.ok()) {
          if (stopping_) {
            return Fail(ErrorResponse(absl::UnavailableError("the gateway is shutting down")));
          }
          return Fail(ErrorResponse(status));
        }
        Commit();
        return EndStream();
      case Phase::kStreaming:
        return EndStream();
    }
  }

  // The dialect's stream is complete: nothing more is followed.
  void Complete() {
    complete_ = true;
    if (subscription_) subscription_->Cancel();
    EndStream();
  }

  // Ends a committed stream after what is queued.
  void EndStream() {
    if (finishing_) return;
    if (!upstream_status_.ok() && !complete_) {
      Enqueue(Chunk(absl::StrCat(": stream ended: ", CodeName(upstream_status_.code()), "\n\n")));
    }
    if (chunked_) Enqueue("0\r\n\r\n");
    phase_ = Phase::kClosing;
    finishing_ = true;
    MaybeClose();
  }

  // Answers with an ordinary error response, then closes.
  void Fail(HttpResponse response) {
    status_ = response.status;
    if (status_ == 401 && request_.on_refused) request_.on_refused();
    phase_ = Phase::kClosing;
    finishing_ = true;
    Enqueue(SerializeClosingResponse(std::move(response), request_.version, request_.request_id));
  }

  std::string Chunk(const std::string& payload) const {
    if (!chunked_) return payload;
    return absl::StrCat(absl::Hex(payload.size()), "\r\n", payload, "\r\n");
  }

  void Enqueue(std::string data) {
    if (closed_) return;
    last_activity_ = Clock::now();
    outbox_bytes_ += data.size();
    outbox_.push_back(std::move(data));
    if (!writing_) WriteNext();
  }

  // Writes everything queued, in one write.
  void WriteNext() {
    writing_ = true;
    in_flight_ = outbox_.size();
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(in_flight_);
    for (const std::string& data : outbox_) buffers.push_back(asio::buffer(data));
    // Applies to the write only: the client read is already pending.
    stream_.expires_after(kWriteTimeout);
    asio::async_write(stream_, buffers,
                      beast::bind_front_handler(&SseSession::OnWritten, shared_from_this()));
  }

  void OnWritten(beast::error_code ec, std::size_t) {
    writing_ = false;
    if (ec) return OnClientGone();
    for (; in_flight_ > 0; --in_flight_) {
      outbox_bytes_ -= outbox_.front().size();
      outbox_.pop_front();
    }
    if (want_next_ && subscription_ && outbox_bytes_ < kReadAheadBytes) {
      want_next_ = false;
      subscription_->Next();
    }
    if (!outbox_.empty()) return WriteNext();
    if (finishing_) return MaybeClose();
  }

  // Reads (and drops) whatever the client sends, to notice when it leaves.
  void ReadFromClient() {
    stream_.expires_never();
    stream_.async_read_some(asio::buffer(read_buffer_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) return self->OnClientGone();
                              self->ReadFromClient();
                            });
  }

  void OnClientGone() {
    if (closed_) return;
    phase_ = Phase::kClosing;
    if (subscription_) subscription_->Cancel();
    Close();
  }

  void OnServerStopping() {
    stopping_ = true;
    if (subscription_) subscription_->Cancel();
  }

  void ArmHeartbeat() {
    const auto interval = absl::ToChronoMilliseconds(options_.heartbeat);
    heartbeat_timer_.expires_at(last_activity_ + interval);
    heartbeat_timer_.async_wait([self = shared_from_this(), interval](beast::error_code ec) {
      if (ec || self->closed_ || self->finishing_) return;
      if (Clock::now() - self->last_activity_ >= interval) {
        if (self->writing_) {
          // A write is stuck; its own timeout deals with that.
          self->last_activity_ = Clock::now();
        } else {
          self->Enqueue(self->Chunk(": heartbeat\n\n"));
        }
      }
      self->ArmHeartbeat();
    });
  }

  void MaybeClose() {
    if (!writing_ && outbox_.empty()) Close();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    commit_timer_.cancel();
    heartbeat_timer_.cancel();
    stream_.Close();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
    Log()->info("http method=GET path={} status={} ms={} request_id={} events={}{}", request_.path,
                status_, ms, request_.request_id, events_,
                upstream_done_ || complete_ ? "" : " client_gone=true");
  }

  // Declared first so that it is released last (see HttpSession).
  std::shared_ptr<ConnectionTracker::Token> token_;
  HttpRequest request_;
  HttpStream stream_;
  std::shared_ptr<BrokerClient> broker_;
  std::unique_ptr<SseDialect> dialect_;
  SseOptions options_;
  SseMessages prelude_;
  std::shared_ptr<EventSubscription> subscription_;
  asio::steady_timer commit_timer_;
  asio::steady_timer heartbeat_timer_;
  const bool chunked_;

  std::deque<std::string> outbox_;
  size_t outbox_bytes_ = 0;
  size_t in_flight_ = 0;  // the first messages of outbox_, being written
  char read_buffer_[512];
  Phase phase_ = Phase::kPending;
  bool writing_ = false;
  bool want_next_ = false;
  bool finishing_ = false;
  bool closed_ = false;
  bool stopping_ = false;
  bool upstream_done_ = false;
  bool complete_ = false;  // the dialect said so
  absl::Status upstream_status_;
  unsigned status_ = 200;
  int64_t events_ = 0;
  Clock::time_point started_ = Clock::now();
  Clock::time_point last_activity_ = Clock::now();
};

}  // namespace

StreamHandler SseStreamHandler(std::shared_ptr<BrokerClient> broker, SseDialectFactory make,
                               SseOptions options) {
  return [broker = std::move(broker), make = std::move(make), options](
             HttpRequest request, HttpStream stream,
             std::shared_ptr<ConnectionTracker::Token> token) {
    std::make_shared<SseSession>(std::move(request), std::move(stream), std::move(token), broker,
                                 make(), options)
        ->Start();
  };
}

StreamHandler EventStreamHandler(std::shared_ptr<BrokerClient> broker, SseOptions options) {
  auto formatted = std::make_shared<FormattedEvents>();
  return SseStreamHandler(
      std::move(broker),
      [formatted] { return std::make_unique<EventsDialect>(formatted); }, options);
}

}  // namespace buildd::gateway
