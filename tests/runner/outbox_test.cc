#include "services/runner/outbox.h"

#include <gtest/gtest.h>

namespace buildd::runner {
namespace {

pb::Event Output(const std::string& text) {
  pb::Event event;
  event.set_type("output");
  event.set_text(text);
  return event;
}

std::vector<int64_t> Seqs(const std::vector<pb::RunnerMessage>& messages) {
  std::vector<int64_t> seqs;
  for (const auto& message : messages) {
    seqs.push_back(message.has_event() ? message.event().seq() : -message.finished().last_seq());
  }
  return seqs;
}

TEST(OutboxTest, NumbersEachWorkersEventsFromOne) {
  Outbox outbox;
  outbox.Open("w1", 4);
  outbox.Open("w2", 1);
  EXPECT_EQ(outbox.Append("w1", Output("a")).seq(), 1);
  EXPECT_EQ(outbox.Append("w1", Output("b")).seq(), 2);
  const pb::RunnerEvent other = outbox.Append("w2", Output("c"));
  EXPECT_EQ(other.seq(), 1);
  EXPECT_EQ(other.epoch(), 1);
  EXPECT_EQ(other.worker_id(), "w2");
  EXPECT_EQ(other.event().text(), "c");
}

TEST(OutboxTest, AckDropsCoveredEventsAndResumeReportsIt) {
  Outbox outbox;
  outbox.Open("w1", 2);
  for (int i = 0; i < 5; ++i) outbox.Append("w1", Output("x"));
  EXPECT_FALSE(outbox.Ack("w1", 3));
  EXPECT_EQ(outbox.unacked_events("w1"), 2u);
  const auto resume = outbox.ResumeList();
  ASSERT_EQ(resume.size(), 1u);
  EXPECT_EQ(resume[0].worker_id(), "w1");
  EXPECT_EQ(resume[0].epoch(), 2);
  EXPECT_EQ(resume[0].last_acked_seq(), 3);
}

TEST(OutboxTest, AckGoingBackwardsOrForUnknownWorkerIsIgnored) {
  Outbox outbox;
  outbox.Open("w1", 1);
  for (int i = 0; i < 4; ++i) outbox.Append("w1", Output("x"));
  outbox.Ack("w1", 3);
  outbox.Ack("w1", 1);
  EXPECT_EQ(outbox.last_acked_seq("w1"), 3);
  EXPECT_FALSE(outbox.Ack("nobody", 10));
  EXPECT_EQ(outbox.worker_count(), 1u);
}

TEST(OutboxTest, ReplayListsUnackedEventsInSeqOrderThenFinished) {
  Outbox outbox;
  outbox.Open("w1", 1);
  for (int i = 0; i < 4; ++i) outbox.Append("w1", Output("x"));
  outbox.Ack("w1", 2);
  pb::Finished finished;
  finished.set_outcome(pb::Finished::completed);
  const pb::Finished kept = outbox.Finish("w1", finished);
  EXPECT_EQ(kept.last_seq(), 4);
  EXPECT_EQ(kept.worker_id(), "w1");
  EXPECT_EQ(kept.epoch(), 1);
  // Finished shows as -last_seq.
  EXPECT_EQ(Seqs(outbox.Replay()), (std::vector<int64_t>{3, 4, -4}));
}

TEST(OutboxTest, FinishedIsReleasedOnlyOnceSentAndCovered) {
  Outbox outbox;
  outbox.Open("w1", 1);
  outbox.Append("w1", Output("x"));
  outbox.Append("w1", Output("y"));
  outbox.Finish("w1", pb::Finished());
  // Not sent yet: an ack of all events keeps the Finished.
  EXPECT_FALSE(outbox.Ack("w1", 2));
  EXPECT_TRUE(outbox.finished("w1"));
  outbox.MarkFinishedSent("w1");
  EXPECT_FALSE(outbox.Ack("w1", 1));
  // An ack of the last event alone (sent before the Finished arrived) keeps it.
  EXPECT_FALSE(outbox.Ack("w1", 2));
  EXPECT_TRUE(outbox.Ack("w1", 3));
  EXPECT_EQ(outbox.worker_count(), 0u);
}

TEST(OutboxTest, BrokenStreamNeedsReplayBeforeFinishedCanBeReleased) {
  Outbox outbox;
  outbox.Open("w1", 1);
  outbox.Append("w1", Output("x"));
  outbox.Finish("w1", pb::Finished());
  outbox.MarkFinishedSent("w1");
  outbox.MarkAllUnsent();
  EXPECT_FALSE(outbox.Ack("w1", 1));
  EXPECT_EQ(Seqs(outbox.Replay()), (std::vector<int64_t>{-1}));
  EXPECT_TRUE(outbox.Ack("w1", 2));
}

TEST(OutboxTest, DropForgetsAStaleWorker) {
  Outbox outbox;
  outbox.Open("w1", 1);
  outbox.Append("w1", Output("x"));
  outbox.Drop("w1");
  EXPECT_FALSE(outbox.Has("w1"));
  EXPECT_TRUE(outbox.Replay().empty());
  EXPECT_TRUE(outbox.ResumeList().empty());
}

}  // namespace
}  // namespace buildd::runner
