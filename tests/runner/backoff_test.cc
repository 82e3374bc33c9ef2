#include "common/backoff.h"

#include <gtest/gtest.h>

namespace buildd::runner {
namespace {

using std::chrono::milliseconds;

TEST(BackoffTest, CeilingDoublesFromBaseUntilCap) {
  Backoff backoff(milliseconds(200), milliseconds(30000), [] { return 1.0; });
  const int64_t expected[] = {200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
  for (int64_t want : expected) {
    EXPECT_EQ(backoff.CurrentCeiling().count(), want);
    EXPECT_EQ(backoff.Next().count(), want);
  }
}

TEST(BackoffTest, FullJitterDrawsBetweenZeroAndCeiling) {
  double unit = 0.0;
  Backoff backoff(milliseconds(200), milliseconds(30000), [&unit] { return unit; });
  EXPECT_EQ(backoff.Next().count(), 0);
  unit = 0.5;
  EXPECT_EQ(backoff.Next().count(), 200);  // half of 400
}

TEST(BackoffTest, RandomDelaysStayWithinBoundsEvenAfterManyAttempts) {
  Backoff backoff(milliseconds(200), milliseconds(30000));
  for (int i = 0; i < 2000; ++i) {
    const milliseconds ceiling = backoff.CurrentCeiling();
    const milliseconds delay = backoff.Next();
    ASSERT_GE(delay.count(), 0);
    ASSERT_LE(delay.count(), ceiling.count());
    ASSERT_LE(delay.count(), 30000);
  }
}

TEST(BackoffTest, ResetStartsAgainFromBase) {
  Backoff backoff(milliseconds(200), milliseconds(30000), [] { return 1.0; });
  for (int i = 0; i < 5; ++i) backoff.Next();
  backoff.Reset();
  EXPECT_EQ(backoff.attempt(), 0);
  EXPECT_EQ(backoff.Next().count(), 200);
}

}  // namespace
}  // namespace buildd::runner
