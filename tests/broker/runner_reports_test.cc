#include "services/broker/runner_reports.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <limits>

namespace buildd::broker {
namespace {

pb::Event Event(const std::string& type, const std::string& status = "") {
  pb::Event e;
  e.set_type(type);
  e.set_status(status);
  return e;
}

TEST(RunnerReportsTest, RunnersMayNotSendTheBrokersOwnEvents) {
  EXPECT_TRUE(RunnerMaySend(Event("assistant_message")));
  EXPECT_TRUE(RunnerMaySend(Event("status", "waiting_input")));
  EXPECT_FALSE(RunnerMaySend(Event("completed")));
  EXPECT_FALSE(RunnerMaySend(Event("budget")));
  EXPECT_FALSE(RunnerMaySend(Event("status", "completed")));
}

TEST(RunnerReportsTest, RecordedEventCarriesTheBrokersIdsAndNoRunnerName) {
  pb::RunnerEvent report;
  report.set_worker_id("w1");
  *report.mutable_event() = Event("output");
  report.mutable_event()->set_id(77);
  report.mutable_event()->set_task_id("forged");
  report.mutable_event()->set_runner_name("laptop");
  report.mutable_event()->set_text("hello");
  const pb::Event e = RecordedEvent(report, "t1", "ws1");
  EXPECT_EQ(e.id(), 0);
  EXPECT_EQ(e.task_id(), "t1");
  EXPECT_EQ(e.worker_id(), "w1");
  EXPECT_EQ(e.workspace_id(), "ws1");
  EXPECT_TRUE(e.runner_name().empty());
  EXPECT_FALSE(e.created_at().empty());
  EXPECT_EQ(e.text(), "hello");
}

TEST(RunnerReportsTest, OnlyStartedAndRunnerStatusesMoveTheWorker) {
  EXPECT_EQ(WorkerStateAfter("starting", Event("started")), "running");
  EXPECT_EQ(WorkerStateAfter("running", Event("status", "paused")), "paused");
  EXPECT_EQ(WorkerStateAfter("running", Event("status", "canceled")), "running");
  EXPECT_EQ(WorkerStateAfter("waiting_input", Event("output")), "waiting_input");
}

TEST(RunnerReportsTest, FinishedIsAckedAsTheMessageAfterItsLastEvent) {
  pb::Finished finished;
  finished.set_last_seq(12);
  EXPECT_EQ(FinishedAckSeq(finished), 13);
  finished.set_last_seq(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(FinishedAckSeq(finished), std::numeric_limits<int64_t>::max());
}

TEST(RunnerReportsTest, EventsJsonIsAnArrayOfTheEvents) {
  EXPECT_EQ(EventsJson({}), "[]");
  google::protobuf::ListValue rows;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  EventsJson({Event("output"), Event("status", "paused")}), &rows)
                  .ok());
  ASSERT_EQ(rows.values_size(), 2);
  EXPECT_EQ(rows.values(1).struct_value().fields().at("status").string_value(), "paused");
}

TEST(RunnerReportsTest, EventsJsonReadsBackAsTheSameEvents) {
  // EventsJson writes each field by hand: a new field of Event needs a line
  // there (and a value below).
  ASSERT_EQ(pb::Event::descriptor()->field_count(), 12);
  std::vector<pb::Event> events(3);
  events[0].set_id(int64_t{1} << 53);
  events[0].set_type("output");
  events[0].set_task_id("9f1c2c4e-0a6e-4a43-9a5a-6b0d3c1f2a11");
  events[0].set_worker_id("9f1c2c4e-0a6e-4a43-9a5a-6b0d3c1f2a12");
  events[0].set_workspace_id("9f1c2c4e-0a6e-4a43-9a5a-6b0d3c1f2a13");
  events[0].set_stream("stderr");
  events[0].set_text("quote \" backslash \\ tab \t newline \n bell \a unicode é ✓ \x7f end");
  events[1].set_type("completed");
  events[1].set_exit_code(-3);
  events[1].set_runner_name("r\"1");
  events[1].set_created_at("2026-12-01T11:00:00.000Z");
  (*events[1].mutable_data()->mutable_fields())["costUsd"].set_number_value(0.25);
  (*events[1].mutable_data()->mutable_fields())["patch"].set_string_value("+a\n-b\n");
  events[2].set_type("status");  // everything else at its default
  const std::string json = EventsJson(events);
  google::protobuf::ListValue rows;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &rows).ok()) << json;
  ASSERT_EQ(rows.values_size(), 3);
  for (int i = 0; i < 3; ++i) {
    std::string row;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(rows.values(i), &row).ok());
    pb::Event back;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(row, &back).ok()) << row;
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, events[i]))
        << back.DebugString() << " vs " << events[i].DebugString();
  }
  // As protobuf's own printer writes it (what the database held before).
  std::string printed;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(events[2], &printed).ok());
  EXPECT_EQ(json.substr(json.rfind('{'), printed.size()), printed);
}

}  // namespace
}  // namespace buildd::broker
