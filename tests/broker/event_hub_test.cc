#include "services/broker/event_hub.h"

#include <gtest/gtest.h>

namespace buildd::broker {
namespace {

std::vector<pb::Event> Events(int64_t from, int64_t to, const std::string& task_every_third) {
  std::vector<pb::Event> out;
  for (int64_t id = from; id <= to; ++id) {
    pb::Event e;
    e.set_id(id);
    e.set_type("output");
    e.set_task_id(id % 3 == 0 ? task_every_third : "other");
    out.push_back(e);
  }
  return out;
}

TEST(EventHubTest, AReadCopiesOnlyWhatTheFilterWantsAndSaysHowFarItLooked) {
  EventHub hub;
  hub.Reset(0);
  hub.Publish(Events(1, 30, "mine"));
  EventFilter mine;
  mine.task_id = "mine";
  std::vector<pb::Event> out;
  int64_t scanned_to = -1;
  ASSERT_TRUE(hub.ReadAfter(0, mine, 100, 100, &out, &scanned_to));
  ASSERT_EQ(out.size(), 10u);
  EXPECT_EQ(out[0].id(), 3);
  EXPECT_EQ(out[9].id(), 30);
  EXPECT_EQ(scanned_to, 30);

  // At most `scan` ids are looked at, and at most `max` events copied.
  out.clear();
  ASSERT_TRUE(hub.ReadAfter(10, mine, 100, 5, &out, &scanned_to));
  EXPECT_EQ(scanned_to, 15);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].id(), 15);
  out.clear();
  ASSERT_TRUE(hub.ReadAfter(0, EventFilter{}, 4, 100, &out, &scanned_to));
  EXPECT_EQ(out.size(), 4u);
  EXPECT_EQ(scanned_to, 4);

  // Caught up: nothing, and the cursor stays.
  out.clear();
  ASSERT_TRUE(hub.ReadAfter(30, mine, 100, 100, &out, &scanned_to));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(scanned_to, 30);
}

TEST(EventHubTest, ARingThatDroppedTheEventsAfterACursorSendsTheReaderToTheDatabase) {
  EventHub hub(/*capacity=*/10);
  hub.Reset(0);
  hub.Publish(Events(1, 25, "mine"));
  std::vector<pb::Event> out;
  int64_t scanned_to = 0;
  EXPECT_FALSE(hub.ReadAfter(5, EventFilter{}, 100, 100, &out, &scanned_to));
  ASSERT_TRUE(hub.ReadAfter(15, EventFilter{}, 100, 100, &out, &scanned_to));
  EXPECT_EQ(out.front().id(), 16);
  EXPECT_EQ(hub.last_id(), 25);
}

}  // namespace
}  // namespace buildd::broker
