#include "services/broker/journal.h"

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/db.h"
#include "services/broker/pg_broker_store.h"
#include "tests/testing/matchers.h"
#include "tests/testing/pg_fixture.h"

namespace buildd::broker {
namespace {

using ::buildd::testing::IsOk;

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = db_.Pool(2);
    ASSERT_THAT(ApplyMigrations(*pool_, "broker", BrokerMigrations()), IsOk());
  }

  std::unique_ptr<Journal> NewJournal(std::vector<int64_t>* published) {
    store_ = std::make_unique<PgBrokerStore>(*pool_, *SecretBox::FromHex(std::string(64, 'a')),
                                             *ToConninfo(db_.url()));
    return std::make_unique<Journal>(*store_->OpenWriter(),
                                     [this, published](const std::vector<pb::Event>& events) {
                                       std::lock_guard<std::mutex> lock(mu_);
                                       for (const auto& e : events) published->push_back(e.id());
                                     });
  }

  static pb::Event Event(const std::string& text) {
    pb::Event e;
    e.set_type("output");
    e.set_text(text);
    return e;
  }

  buildd::testing::TestDatabase db_;
  std::unique_ptr<soci::connection_pool> pool_;
  std::unique_ptr<PgBrokerStore> store_;
  std::mutex mu_;
};

TEST_F(JournalTest, EventIdsAreGapFreeAndPublishedInOrderUnderConcurrentWriters) {
  std::vector<int64_t> published;
  auto journal = NewJournal(&published);
  constexpr int kThreads = 8, kPerThread = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::Status st = journal->Run([&](JournalTx& tx) {
          tx.Append(Event(std::to_string(t) + ":" + std::to_string(i)));
          if (i % 3 == 0) tx.Append(Event("second"));
          return absl::OkStatus();
        });
        if (!st.ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  journal->Stop();
  EXPECT_EQ(failures, 0);
  const int expected = kThreads * (kPerThread + (kPerThread + 2) / 3);
  ASSERT_EQ(static_cast<int>(published.size()), expected);
  for (int i = 0; i < expected; ++i) ASSERT_EQ(published[i], i + 1);
  soci::session sql(*pool_);
  long long count = 0, max_id = 0;
  sql << "SELECT count(*), max(id) FROM events", soci::into(count), soci::into(max_id);
  EXPECT_EQ(count, expected);
  EXPECT_EQ(max_id, expected);
  // Batching happened: fewer transactions than operations.
  EXPECT_LT(journal->committed_batches(), kThreads * kPerThread);
}

TEST_F(JournalTest, AThrowingOperationFailsAloneAndLeavesNoTrace) {
  std::vector<int64_t> published;
  auto journal = NewJournal(&published);
  std::atomic<int> aborted{0}, committed{0};
  std::vector<std::promise<absl::Status>> results(3);
  for (int i = 0; i < 3; ++i) {
    journal->Submit(
        [i, &aborted, &committed](JournalTx& tx) -> absl::Status {
          tx.Append(Event("op " + std::to_string(i)));
          tx.OnAbort([&aborted] { ++aborted; });
          tx.OnCommit([&committed] { ++committed; });
          // Not a uuid: PostgreSQL refuses the statement.
          if (i == 1) tx.store().LockTask("not-a-uuid");
          return absl::OkStatus();
        },
        [&results, i](absl::Status st) { results[i].set_value(st); });
  }
  std::vector<absl::Status> statuses;
  for (auto& r : results) statuses.push_back(r.get_future().get());
  journal->Stop();
  EXPECT_THAT(statuses[0], IsOk());
  EXPECT_FALSE(statuses[1].ok());
  EXPECT_THAT(statuses[2], IsOk());
  EXPECT_EQ(committed, 2);
  EXPECT_GE(aborted, 1);
  // Ids stay gap-free: the failed op's event never got one.
  EXPECT_EQ(published, (std::vector<int64_t>{1, 2}));
}

TEST_F(JournalTest, AnOperationReturningAnErrorKeepsItsEventsOut) {
  std::vector<int64_t> published;
  auto journal = NewJournal(&published);
  absl::Status st = journal->Run([](JournalTx& tx) {
    tx.Append(Event("never"));
    return absl::FailedPreconditionError("no");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(journal->Run([](JournalTx& tx) {
    tx.Append(Event("kept"));
    return absl::OkStatus();
  }), IsOk());
  journal->Stop();
  EXPECT_EQ(published, (std::vector<int64_t>{1}));
}

}  // namespace
}  // namespace buildd::broker
