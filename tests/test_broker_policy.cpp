/* The broker's side of task policy (broker/src/policy.cpp, ledger.hpp), driven by fake peers.
 *
 * Covers: priority order (higher first, FIFO within one) with fair share between clients at
 * one priority; aging, which lets a low priority through under sustained high-priority load;
 * routing by required tags, a task no worker can run waiting with the reason in its expiry
 * error; retries after exceptions with a growing delay and the attempt history in the result;
 * the three failure budgets counted apart; a draining worker gets nothing and its handed-back
 * leases go elsewhere uncharged; out-of-range options refused.
 *
 * The broker under test and the way absences are shown: support/broker_fixture.hpp.
 */
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
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
using dpool::Status;
using dpool::test::BrokerProtocol;
using dpool::test::FakeClient;
using dpool::test::FakeWorker;
namespace wire = dpool::wire;

wire::TaskSpec spec(std::uint64_t id, const std::string& function, std::uint8_t priority = 5) {
  wire::TaskSpec s;
  s.id = id;
  s.function = function;
  s.priority = priority;
  return s;
}

/* Leases `n` tasks one at a time (credit 1), finishing each; returns their payloads in order. */
std::vector<std::string> serve_one_by_one(FakeWorker& w, std::size_t n) {
  std::vector<std::string> order;
  for (std::size_t i = 0; i < n; ++i) {
    auto l = w.expect_leases(1);
    if (l.size() != 1) break;
    order.push_back(l[0].second);
    w.finish(l[0].first, "ok");
  }
  return order;
}

TEST_F(BrokerProtocol, RunsHigherPrioritiesFirstAndFifoWithinOne) {
  start();
  auto c = client("prio");
  c->hello();
  std::vector<wire::TaskSpec> specs;
  std::vector<std::string> args;
  const std::uint8_t priorities[] = {0, 9, 5, 9, 0, 7, 5, 3};
  for (std::uint64_t i = 0; i < 8; ++i) {
    specs.push_back(spec(i + 1, "f", priorities[i]));
    args.push_back("p" + std::to_string(priorities[i]) + "#" + std::to_string(i + 1));
  }
  c->submit(specs, args);
  ASSERT_EQ(c->expect_accepted({1, 2, 3, 4, 5, 6, 7, 8}).size(), 8u);
  auto w = worker("serial");
  w->ready(1, {"f"});
  const auto order = serve_one_by_one(*w, 8);
  EXPECT_EQ(order, (std::vector<std::string>{"p9#2", "p9#4", "p7#6", "p5#3", "p5#7", "p3#8", "p0#1",
                                             "p0#5"}));
}

TEST_F(BrokerProtocol, SharesOnePriorityFairlyBetweenClientsButPriorityWins) {
  start();
  auto big = client("big");
  auto small = client("small");
  auto urgent = client("urgent");
  big->hello();
  small->hello();
  urgent->hello();
  submit_numbered(*big, "f", "B", 200);
  ASSERT_EQ(big->expect_accepted({1}).size(), 200u);
  submit_numbered(*small, "f", "S", 3);
  ASSERT_EQ(small->expect_accepted({1, 2, 3}).size(), 3u);
  urgent->submit({spec(1, "f", 8)}, {"U"});
  ASSERT_EQ(urgent->expect_accepted({1}).size(), 1u);

  auto w = worker("one");
  w->ready(1, {"f"});
  const auto order = serve_one_by_one(*w, 7);
  ASSERT_EQ(order.size(), 7u);
  EXPECT_EQ(order[0], "U") << "priority 8 goes before the priority 5 tasks of both clients";
  std::size_t small_served = 0;
  for (std::size_t i = 1; i < order.size(); ++i) small_served += order[i][0] == 'S';
  EXPECT_EQ(small_served, 3u) << "the small client's 3 tasks are among the next 6, not after 200";
}

TEST_F(BrokerProtocol, AgingLetsALowPriorityThroughUnderSustainedLoad) {
  auto config = default_config();
  config.priority_aging = 20ms;  // a level unserved 20 ms competes one higher
  start(config);
  auto c = client("aging");
  c->hello();
  std::vector<wire::TaskSpec> specs{spec(1, "f", 0)};
  std::vector<std::string> args{"low"};
  for (std::uint64_t i = 2; i <= 60; ++i) {
    specs.push_back(spec(i, "f", 9));
    args.push_back("high");
  }
  c->submit(specs, args);
  ASSERT_EQ(c->expect_accepted({1}).size(), 60u);
  auto w = worker("slow");
  w->ready(1, {"f"});
  // 60 tasks, each held 10 ms: the low one has waited 9 levels' worth (180 ms) long before
  // the last high one, however slow this machine is (slower only means more waiting).
  std::vector<std::string> order;
  for (int i = 0; i < 60; ++i) {
    auto l = w->expect_leases(1);
    ASSERT_EQ(l.size(), 1u);
    order.push_back(l[0].second);
    std::this_thread::sleep_for(10ms);
    w->finish(l[0].first, "ok");
  }
  const auto low = std::find(order.begin(), order.end(), "low") - order.begin();
  EXPECT_GT(low, 0) << "not before any high one: it has not waited yet";
  EXPECT_LT(low, 59) << "the low-priority task starved until the high ones ran out";
}

TEST_F(BrokerProtocol, RoutesTasksOnlyToWorkersWithTheRequiredTags) {
  start();
  auto c = client("tags");
  c->hello();
  auto gpu = spec(1, "f");
  gpu.needs = {{"gpu", "1"}};
  auto eu = spec(2, "f");
  eu.needs = {{"gpu", "1"}, {"zone", "eu"}};
  c->submit({gpu, eu, spec(3, "f")}, {"gpu", "gpu-eu", "plain"});
  ASSERT_EQ(c->expect_accepted({1, 2, 3}).size(), 3u);

  auto plain = worker("plain");
  plain->ready(5, {"f"});
  auto got_plain = plain->expect_leases(1);
  ASSERT_EQ(got_plain.size(), 1u);
  EXPECT_EQ(got_plain[0].second, "plain");
  auto us = worker("us");
  us->ready(5, {"f"}, {{"gpu", "1"}, {"zone", "us"}});
  auto got_us = us->expect_leases(1);
  ASSERT_EQ(got_us.size(), 1u);
  EXPECT_EQ(got_us[0].second, "gpu");
  ASSERT_TRUE(us->wait_ticks(3));
  EXPECT_EQ(us->waiting(Command::kTask) + plain->waiting(Command::kTask), 0u)
      << "gpu-eu fits neither worker";
  plain->finish(got_plain[0].first, "r");
  us->finish(got_us[0].first, "r");
  EXPECT_EQ(c->expect_results({1, 3}).size(), 2u);

  // A worker registering later with the tags gets the waiting task.
  auto eu_worker = worker("eu");
  eu_worker->ready(5, {"f"}, {{"gpu", "1"}, {"zone", "eu"}, {"extra", "x"}});
  auto got_eu = eu_worker->expect_leases(1);
  ASSERT_EQ(got_eu.size(), 1u);
  EXPECT_EQ(got_eu[0].second, "gpu-eu");
}

TEST_F(BrokerProtocol, ATaskNoWorkerCanRunFailsAtItsDeadlineSayingWhy) {
  start();
  auto w = worker("cpu");
  w->ready(5, {"f"}, {{"gpu", "0"}});
  auto c = client("deadline");
  c->hello();
  auto s = spec(1, "f");
  s.needs = {{"gpu", "1"}};
  s.expires_ms = 300;
  c->submit({s}, {"x"});
  ASSERT_EQ(c->expect_accepted({1}).size(), 1u);
  auto r = c->expect_results({1}, 5s);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].meta.status, Status::kTimeout);
  EXPECT_EQ(r[1].meta.error_type, "Expired");
  EXPECT_NE(r[1].meta.error_message.find("has tags gpu=1"), std::string::npos)
      << r[1].meta.error_message;
  EXPECT_EQ(w->waiting(Command::kTask), 0u);
  EXPECT_TRUE(wait_stats([](const BrokerStats& st) { return st.expired == 1 && st.tasks == 0; }));
}

TEST_F(BrokerProtocol, RetriesAnExceptionWithAGrowingDelayAndKeepsTheHistory) {
  start();
  auto c = client("retry");
  c->hello();
  auto s = spec(1, "f");
  s.retries = 2;
  s.retry_delay_ms = 100;
  s.retry_backoff = 2.0;
  c->submit({s}, {"x"});
  ASSERT_EQ(c->expect_accepted({1}).size(), 1u);
  auto w = worker("flaky");
  w->ready(1, {"f"});

  auto first = w->expect_leases(1);
  ASSERT_EQ(first.size(), 1u);
  auto failed_at = std::chrono::steady_clock::now();
  w->finish(first[0].first, "", Status::kError, "ValueError");
  auto second = w->expect_leases(1, 5s);
  ASSERT_EQ(second.size(), 1u);
  // The broker counts in whole milliseconds: a bound within 5 ms of the delay is as exact as it
  // gets.
  EXPECT_GE(std::chrono::steady_clock::now() - failed_at, 95ms)
      << "the first retry waits retry_delay";
  EXPECT_EQ(second[0].first.attempt, 2u);
  failed_at = std::chrono::steady_clock::now();
  w->finish(second[0].first, "", Status::kError, "ValueError");
  auto third = w->expect_leases(1, 5s);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_GE(std::chrono::steady_clock::now() - failed_at, 195ms)
      << "the second waits twice as long";
  w->finish(third[0].first, "done");

  auto r = c->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].meta.status, Status::kOk);
  EXPECT_EQ(r[1].payload, "done");
  EXPECT_EQ(r[1].meta.attempts, 3u);
  ASSERT_EQ(r[1].meta.history.size(), 2u);
  EXPECT_EQ(r[1].meta.history[0].status, Status::kError);
  EXPECT_EQ(r[1].meta.history[0].error_type, "ValueError");
  EXPECT_EQ(r[1].meta.history[0].host, w->host());
  EXPECT_EQ(broker_->stats().retried, 2u);
}

TEST_F(BrokerProtocol, CountsExceptionsTimeoutsAndCrashesInSeparateBudgets) {
  start();
  auto c = client("budgets");
  c->hello();
  auto s = spec(1, "f");
  s.retries = 1;
  s.timeout_retries = 1;
  s.max_attempts = 2;
  c->submit({s}, {"x"});
  ASSERT_EQ(c->expect_accepted({1}).size(), 1u);
  auto w = worker("bad");
  w->ready(1, {"f"});
  auto lease = [&] {
    auto l = w->expect_leases(1, 5s);
    EXPECT_EQ(l.size(), 1u);
    return l.empty() ? wire::Lease{} : l[0].first;
  };
  w->finish(lease(), "", Status::kError, "E1");    // errors 1 of 1: retried
  w->finish(lease(), "", Status::kTimeout, "Timeout");  // timeouts 1 of 1: retried
  w->finish(lease(), "", Status::kLost, "WorkerLost");  // crashes 1 of 2: requeued
  w->finish(lease(), "", Status::kError, "E2");    // errors 2 of 1: final

  auto r = c->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].meta.status, Status::kError);
  EXPECT_EQ(r[1].meta.error_type, "E2");
  EXPECT_EQ(r[1].meta.attempts, 4u);
  ASSERT_EQ(r[1].meta.history.size(), 4u);
  EXPECT_EQ(r[1].meta.history[0].status, Status::kError);
  EXPECT_EQ(r[1].meta.history[1].status, Status::kTimeout);
  EXPECT_EQ(r[1].meta.history[2].status, Status::kLost);
  EXPECT_EQ(r[1].meta.history[3].error_type, "E2");
}

TEST_F(BrokerProtocol, ATimeoutWithoutATimeoutBudgetFailsAtOnce) {
  start();
  auto c = client("timeout");
  c->hello();
  auto s = spec(1, "f");
  s.retries = 5;  // exceptions may retry; time-outs may not
  c->submit({s}, {"x"});
  ASSERT_EQ(c->expect_accepted({1}).size(), 1u);
  auto w = worker("slow");
  w->ready(1, {"f"});
  auto l = w->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  w->finish(l[0].first, "", Status::kTimeout, "Timeout");
  auto r = c->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].meta.status, Status::kTimeout);
  EXPECT_EQ(r[1].meta.attempts, 1u);
}

TEST_F(BrokerProtocol, ADrainingWorkerGetsNothingAndItsReturnedLeasesGoElsewhere) {
  start();
  auto c = client("drain");
  c->hello();
  submit_numbered(*c, "f", "t", 4);
  ASSERT_EQ(c->expect_accepted({1, 2, 3, 4}).size(), 4u);
  auto a = worker("leaving");
  a->ready(4, {"f"});
  auto held = a->expect_leases(4);
  ASSERT_EQ(held.size(), 4u);
  a->drain();
  // It finishes the one it runs and hands back the three it never started.
  a->finish(held[0].first, "done");
  for (std::size_t i = 1; i < 4; ++i) a->finish(held[i].first, "", Status::kReturned);
  auto b = worker("staying");
  b->ready(4, {"f"});
  auto moved = b->expect_leases(3);
  ASSERT_EQ(moved.size(), 3u);
  for (const auto& [lease, payload] : moved) b->finish(lease, "done");
  auto r = c->expect_results({1, 2, 3, 4});
  ASSERT_EQ(r.size(), 4u);
  for (const auto& [id, o] : r) EXPECT_EQ(o.meta.status, Status::kOk) << id;
  ASSERT_TRUE(a->wait_ticks(3));
  EXPECT_EQ(a->waiting(Command::kTask), 0u) << "a draining worker was given work";
  EXPECT_EQ(broker_->stats().failed, 0u);
}

TEST_F(BrokerProtocol, RefusesOutOfRangeTaskOptions) {
  start();
  auto c = client("bad-options");
  c->hello();
  auto prio = spec(1, "f", 12);
  auto backoff = spec(2, "f");
  backoff.retry_backoff = 0.5;
  auto needs = spec(3, "f");
  needs.needs = {{"", "x"}};
  c->submit({prio, backoff, needs}, {"a", "b", "c"});
  auto r = c->expect_results({1, 2, 3});
  ASSERT_EQ(r.size(), 3u);
  for (const auto& [id, o] : r) {
    EXPECT_EQ(o.meta.status, Status::kRejected) << id;
    EXPECT_EQ(o.meta.error_type, "InvalidTaskOptions") << id;
  }
  EXPECT_NE(r[1].meta.error_message.find("priority 12"), std::string::npos);
}

}  // namespace
