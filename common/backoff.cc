#include "common/backoff.h"

#include <algorithm>

namespace buildd {

Backoff::Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap,
                 std::function<double()> unit_random)
    : base_(base),
      cap_(std::max(cap, base)),
      unit_random_(std::move(unit_random)),
      rng_(std::random_device{}()) {}

std::chrono::milliseconds Backoff::CurrentCeiling() const {
  // Doubling stops once it passes the cap, so the shift never overflows.
  int64_t ceiling = base_.count();
  for (int i = 0; i < attempt_ && ceiling < cap_.count(); ++i) ceiling *= 2;
  return std::chrono::milliseconds(std::min<int64_t>(ceiling, cap_.count()));
}

std::chrono::milliseconds Backoff::Next() {
  const int64_t ceiling = CurrentCeiling().count();
  double unit;
  if (unit_random_) {
    unit = unit_random_();
  } else {
    unit = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  }
  unit = std::clamp(unit, 0.0, 1.0);
  ++attempt_;
  return std::chrono::milliseconds(static_cast<int64_t>(unit * static_cast<double>(ceiling)));
}

}  // namespace buildd
