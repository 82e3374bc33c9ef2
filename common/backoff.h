#ifndef BUILDD_COMMON_BACKOFF_H_
#define BUILDD_COMMON_BACKOFF_H_

#include <chrono>
#include <functional>
#include <random>

namespace buildd {

// Exponential backoff with full jitter: the n-th delay (n = 0, 1, …) is drawn
// uniformly from [0, min(cap, base * 2^n)]; with a `unit_random` of 1, the
// delays are the ceilings themselves. Not thread-safe.
class Backoff {
 public:
  // `unit_random` returns values in [0, 1); the default draws from a seeded
  // Mersenne Twister. Tests pass a fixed function.
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap,
          std::function<double()> unit_random = nullptr);

  // The delay before the next attempt; advances the attempt count.
  std::chrono::milliseconds Next();

  // The upper bound the next call to Next() draws under.
  std::chrono::milliseconds CurrentCeiling() const;

  // Back to the first attempt (after a successful connection).
  void Reset() { attempt_ = 0; }

  int attempt() const { return attempt_; }

 private:
  std::chrono::milliseconds base_;
  std::chrono::milliseconds cap_;
  std::function<double()> unit_random_;
  std::mt19937_64 rng_;
  int attempt_ = 0;
};

}  // namespace buildd

#endif  // BUILDD_COMMON_BACKOFF_H_
