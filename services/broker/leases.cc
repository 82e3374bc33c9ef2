#include "services/broker/leases.h"

#include <memory>

namespace buildd::broker {

Leases::Leases(boost::asio::io_context& timers, Durations durations, Callbacks callbacks)
    : timers_(timers),
      durations_(durations),
      callbacks_(std::move(callbacks)),
      heartbeat_(timers) {}

void Leases::Grace(std::vector<std::string> worker_ids) {
  auto timer = std::make_shared<boost::asio::steady_timer>(
      timers_, std::chrono::milliseconds(durations_.grace_ms));
  timer->async_wait([this, timer, worker_ids = std::move(worker_ids)](boost::system::error_code ec) {
    if (!ec) callbacks_.grace_over(worker_ids);
  });
}

void Leases::AcceptBy(const std::string& runner_id, const std::string& worker_id, int64_t epoch) {
  auto timer = std::make_shared<boost::asio::steady_timer>(
      timers_, std::chrono::milliseconds(durations_.accept_ms));
  timer->async_wait([this, timer, runner_id, worker_id, epoch](boost::system::error_code ec) {
    if (!ec) callbacks_.accept_due(runner_id, worker_id, epoch);
  });
}

void Leases::StartHeartbeats() { ArmHeartbeat(); }

void Leases::Stop() { heartbeat_.cancel(); }

void Leases::ArmHeartbeat() {
  heartbeat_.expires_after(std::chrono::milliseconds(durations_.heartbeat_ms));
  heartbeat_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    callbacks_.heartbeat();
    ArmHeartbeat();
  });
}

}  // namespace buildd::broker
