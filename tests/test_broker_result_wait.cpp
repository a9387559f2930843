/* The broker's side of the wire protocol (docs/protocol.md section 8, "RESULT wait"): when a
 * session's results wait for others to share their message, and what ends the wait.
 *
 * Covers: while the client has two or more other tasks live and tasks are queued, its results
 * wait and then leave together, in one RESULT, once fewer are live; 64 waiting results leave
 * at once; a waiting result leaves when its delay ends, even with no heartbeat tick near; an
 * ACCEPT that falls due takes the waiting results along; a lone task's result never waits,
 * however long the queue, no result waits while the queue is empty, and waiting ones leave
 * once it empties; `result_delay` 0 turns the wait off.
 *
 * Most tests set a delay of 30 s, far beyond their deadlines, so that a result leaving early
 * or late cannot be mistaken for one that left for the right reason. A lease TASK proves the
 * broker read the DONE before it (it is sent in that turn); two broker HEARTBEATs after it
 * prove the turn's flush is over (support/broker_fixture.hpp).
 */
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpool/broker.hpp"
#include "dpool/protocol.hpp"
#include "support/broker_fixture.hpp"
#include "support/fake_peer.hpp"

namespace {

using namespace std::chrono_literals;
using dpool::BrokerStats;
using dpool::Command;
using dpool::test::BrokerProtocol;
using dpool::test::FakeClient;
using dpool::test::FakeWorker;
namespace wire = dpool::wire;

class ResultWait : public BrokerProtocol {
 protected:
  void start_with(std::chrono::milliseconds delay,
                  std::chrono::milliseconds heartbeat = dpool::test::kInterval) {
    auto config = default_config();
    config.result_delay = delay;
    config.heartbeat.interval = heartbeat;
    start(config);
  }

  /* A client with tasks 1..count of "f" submitted and a worker of credit 1 holding the lease
   * of task 1; the rest are queued. */
  void begin(std::chrono::milliseconds delay, std::uint64_t count, std::uint32_t credit = 1) {
    start_with(delay);
    client_ = client("alice");
    worker_ = worker("w");
    client_->hello();
    worker_->ready(credit, {"f"});
    ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.workers == 1; }));
    submit_numbered(*client_, "f", "a", count);
    ASSERT_EQ(client_->expect_accepted({1}).size(), count);
    auto leases = worker_->expect_leases(std::min<std::uint64_t>(credit, count));
    ASSERT_EQ(leases.size(), std::min<std::uint64_t>(credit, count));
    for (const auto& [lease, arg] : leases) leases_.push_back(lease);
    lease_ = leases_.front();
  }

  /* As begin(delay, 4), with ticks a minute apart, so that no tick looks at a waiting result
   * again: the tasks are submitted before the worker registers (stats, which wait_stats reads,
   * are published on ticks). */
  void begin_without_ticks(std::chrono::milliseconds delay) {
    start_with(delay, 60s);
    client_ = client("alice");
    worker_ = worker("w");
    client_->hello();
    submit_numbered(*client_, "f", "a", 4);
    ASSERT_EQ(client_->expect_accepted({1, 2, 3, 4}).size(), 4u);
    worker_->ready(1, {"f"});
    lease_ = next_lease();
  }

  /* Finishes the current lease and returns the next one the worker is sent. */
  wire::Lease finish_and_lease() {
    worker_->finish(lease_, "r");
    lease_ = next_lease();
    return lease_;
  }

  wire::Lease next_lease() {
    auto leases = worker_->expect_leases(1);
    EXPECT_EQ(leases.size(), 1u);
    return leases.empty() ? wire::Lease{} : leases[0].first;
  }

  /* Ids of the next RESULT message, ACKed (so that no resend comes in between), empty if none
   * came within `timeout`. */
  std::set<std::uint64_t> next_result_message(std::chrono::milliseconds timeout = 2s) {
    std::set<std::uint64_t> ids;
    if (auto r = client_->expect<wire::ResultBatch>(Command::kResult, timeout)) {
      for (const auto& meta : r->body.results) ids.insert(meta.id);
    }
    client_->ack({ids.begin(), ids.end()});
    return ids;
  }

  std::unique_ptr<FakeClient> client_;
  std::unique_ptr<FakeWorker> worker_;
  wire::Lease lease_;
  std::vector<wire::Lease> leases_;  // the leases begin() saw
};

TEST_F(ResultWait, ResultsWaitWhileTasksAreQueuedAndLeaveTogetherOnceFewAreLive) {
  ASSERT_NO_FATAL_FAILURE(begin(30s, 4));
  finish_and_lease();  // task 1 done; 2 leased, 3 and 4 queued
  finish_and_lease();  // task 2 done; 3 leased, 4 queued
  ASSERT_TRUE(client_->wait_ticks(2));
  EXPECT_EQ(client_->waiting(Command::kResult), 0u)
      << "a result left while 2 tasks were live and 1 queued";
  finish_and_lease();  // task 3 done; 4 leased: one task live, so all three leave
  EXPECT_EQ(next_result_message(), (std::set<std::uint64_t>{1, 2, 3}));
  worker_->finish(lease_, "r");
  EXPECT_EQ(next_result_message(), (std::set<std::uint64_t>{4})) << "the last result waited";
}

TEST_F(ResultWait, SixtyFourWaitingResultsLeaveAtOnce) {
  ASSERT_NO_FATAL_FAILURE(begin(30s, 70));
  for (int i = 0; i < 63; ++i) finish_and_lease();
  ASSERT_TRUE(client_->wait_ticks(2));
  EXPECT_EQ(client_->waiting(Command::kResult), 0u);
  finish_and_lease();  // the 64th, with 6 tasks live and 5 of them queued
  const auto ids = next_result_message();
  EXPECT_EQ(ids.size(), 64u);
  EXPECT_EQ(*ids.begin(), 1u);
  EXPECT_EQ(*ids.rbegin(), 64u);
}

TEST_F(ResultWait, AnAcceptFallingDueTakesTheWaitingResultsAlong) {
  ASSERT_NO_FATAL_FAILURE(begin(30s, 4));
  finish_and_lease();
  ASSERT_TRUE(client_->wait_ticks(2));
  ASSERT_EQ(client_->waiting(Command::kResult), 0u);
  client_->submit(10, "f", "more");
  EXPECT_EQ(client_->expect_accepted({10}), std::vector<std::uint64_t>{10});
  EXPECT_EQ(next_result_message(), (std::set<std::uint64_t>{1}));
}

TEST_F(ResultWait, ALoneTasksResultNeverWaitsHoweverLongTheQueue) {
  start_with(30s);
  auto bob = client("bob");
  bob->hello();
  submit_numbered(*bob, "g-nobody-offers", "b", 100);  // a queue that never empties
  ASSERT_EQ(bob->expect_accepted({1}).size(), 100u);
  auto one = lease_one("alice", "w");
  one.worker->finish(one.lease, "r");
  auto results = one.client->expect_results({1});
  EXPECT_EQ(results.size(), 1u);
}

TEST_F(ResultWait, NothingWaitsWhileTheQueueIsEmpty) {
  ASSERT_NO_FATAL_FAILURE(begin(30s, 3, 3));  // all three leased
  worker_->finish(leases_[0], "r");
  EXPECT_EQ(next_result_message(), (std::set<std::uint64_t>{1}));
}

/* The queue empties without a result of this client's: a second worker takes the last queued
 * tasks. The waiting result leaves in that turn, not 30 s later; with ticks a minute apart,
 * nothing else looks at it again in time. */
TEST_F(ResultWait, WaitingResultsLeaveOnceTheQueueEmpties) {
  ASSERT_NO_FATAL_FAILURE(begin_without_ticks(30s));
  finish_and_lease();  // task 1 done; 2 leased, 3 and 4 queued
  ASSERT_FALSE(client_->expect<wire::ResultBatch>(Command::kResult, 300ms).has_value())
      << "the result did not wait";
  auto second = worker("w2");
  second->ready(5, {"f"});
  EXPECT_EQ(second->expect_leases(2).size(), 2u);
  EXPECT_EQ(next_result_message(), (std::set<std::uint64_t>{1}));
}

TEST_F(ResultWait, ADelayOfZeroSendsEachResultAtOnce) {
  ASSERT_NO_FATAL_FAILURE(begin(0ms, 4));
  finish_and_lease();
  EXPECT_EQ(next_result_message(), (std::set<std::uint64_t>{1}));
  finish_and_lease();
  EXPECT_EQ(next_result_message(), (std::set<std::uint64_t>{2}));
}

/* With ticks a minute apart, only the loop's own wake-up for the delay sends the result in time. */
TEST_F(ResultWait, AWaitingResultLeavesWhenItsDelayEnds) {
  ASSERT_NO_FATAL_FAILURE(begin_without_ticks(20ms));
  const auto heartbeats = client_->heartbeats_received();
  finish_and_lease();  // 3 live, 2 queued: the result waits 20 ms
  EXPECT_EQ(next_result_message(2s), (std::set<std::uint64_t>{1}));
  EXPECT_EQ(client_->heartbeats_received(), heartbeats)
      << "a tick came between: the test proves nothing";
}

}  // namespace
