/* The broker's side of the wire protocol (docs/protocol.md), worker side: leases.
 *
 * Covers: credit bounds the leases out to a worker; round-robin between clients of one
 * function; a function listed twice in READY counts once; stale outcomes (wrong attempt, other
 * worker, unknown task) are dropped and counted; a silent worker expires and its lease goes to
 * another worker at the next attempt; a disconnecting worker's leases are returned without
 * charging an attempt; a task lost on every allowed attempt fails as WorkerLost; leases lost
 * in transit are requeued without charging; DONE / HEARTBEAT from a peer that never said READY
 * get DISCONNECT, and a READY afterwards registers it.
 *
 * The broker under test and the way absences are shown: support/broker_fixture.hpp.
 */
#include <chrono>
#include <cstdint>
#include <optional>
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
using dpool::Status;
using dpool::test::BrokerProtocol;
using dpool::test::kExpiry;
using dpool::test::kInterval;
namespace wire = dpool::wire;

TEST_F(BrokerProtocol, NeverLeasesBeyondAWorkersCredit) {
  start();
  auto c = client("credit");
  c->hello();
  submit_numbered(*c, "f", "arg", 5);
  ASSERT_EQ(c->expect_accepted({1, 2, 3, 4, 5}).size(), 5u);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.queued == 5; }));

  auto w = worker("credit2");
  w->ready(2, {"f"});
  auto leases = w->expect_leases(2);
  ASSERT_EQ(leases.size(), 2u);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.queued == 3 && s.tasks == 5; }));
  // Three more ticks, each with a dispatch before its HEARTBEAT: still no third lease.
  ASSERT_TRUE(w->wait_ticks(3));
  EXPECT_EQ(w->waiting(Command::kTask), 0u) << "a lease beyond credit 2";
  EXPECT_EQ(broker_->stats().queued, 3u);

  // One DONE frees exactly one unit of credit.
  w->finish(leases[0].first, "r");
  auto more = w->expect_leases(1);
  ASSERT_EQ(more.size(), 1u);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.queued == 2; }));
  ASSERT_TRUE(w->wait_ticks(3));
  EXPECT_EQ(w->waiting(Command::kTask), 0u) << "a lease beyond credit 2 after one DONE";
  EXPECT_EQ(broker_->stats().queued, 2u);

  // Finishing the rest one at a time drains the queue, never more than 2 out at once.
  std::vector<wire::Lease> out{leases[1].first, more[0].first};
  std::size_t finished = 1;
  while (finished < 5) {
    ASSERT_FALSE(out.empty());
    w->finish(out.front(), "r");
    out.erase(out.begin());
    ++finished;
    if (finished + out.size() < 5) {
      auto next = w->expect_leases(1);
      ASSERT_EQ(next.size(), 1u);
      out.push_back(next[0].first);
    }
    ASSERT_LE(out.size(), 2u);
  }
  EXPECT_EQ(c->expect_results({1, 2, 3, 4, 5}).size(), 5u);
}

TEST_F(BrokerProtocol, AWorkerHeartbeatChangesItsCredit) {
  start();
  auto c = client("recredit");
  c->hello();
  submit_numbered(*c, "f", "arg", 12);
  ASSERT_EQ(c->expect_accepted({1}).size(), 12u);

  auto w = worker("recredit");
  w->ready(2, {"f"});
  auto first = w->expect_leases(2);
  ASSERT_EQ(first.size(), 2u);
  ASSERT_TRUE(w->wait_ticks(2));
  EXPECT_EQ(w->waiting(Command::kTask), 0u) << "a lease beyond the READY credit 2";

  // Short tasks: the host asks for 6; the broker tops it up to 6 out, no more.
  w->set_credit(6);
  auto more = w->expect_leases(4);
  ASSERT_EQ(more.size(), 4u);
  ASSERT_TRUE(w->wait_ticks(2));
  EXPECT_EQ(w->waiting(Command::kTask), 0u) << "a lease beyond credit 6";
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.queued == 6; }));

  // Long tasks: back to 1. Nothing is taken back; no lease goes out until fewer than 1 are out.
  w->set_credit(1);
  ASSERT_TRUE(w->wait_ticks(1));
  more.insert(more.end(), first.begin(), first.end());
  for (std::size_t i = 0; i + 1 < more.size(); ++i) w->finish(more[i].first, "r");
  ASSERT_TRUE(w->wait_ticks(2));
  EXPECT_EQ(w->waiting(Command::kTask), 0u) << "a lease while 1 is out under credit 1";
  w->finish(more.back().first, "r");
  auto next = w->expect_leases(1);
  ASSERT_EQ(next.size(), 1u);
  ASSERT_TRUE(w->wait_ticks(2));
  EXPECT_EQ(w->waiting(Command::kTask), 0u) << "a second lease under credit 1";
  EXPECT_EQ(c->expect_results({1, 2, 3, 4, 5, 6}).size(), 6u);
}

TEST_F(BrokerProtocol, ServesClientsOfOneFunctionInTurn) {
  start();
  auto a = client("a-many");
  auto b = client("b-few");
  a->hello();
  b->hello();
  submit_numbered(*a, "f", "A", 100);
  ASSERT_EQ(a->expect_accepted({1}).size(), 100u);
  submit_numbered(*b, "f", "B", 5);
  ASSERT_EQ(b->expect_accepted({1, 2, 3, 4, 5}).size(), 5u);

  auto w = worker("serial");
  w->ready(1, {"f"});
  std::vector<std::string> order;
  for (int i = 0; i < 10; ++i) {
    auto l = w->expect_leases(1);
    ASSERT_EQ(l.size(), 1u) << "lease " << i;
    order.push_back(l[0].second);
    w->finish(l[0].first, "");
  }
  std::size_t from_b = 0;
  std::string seen;
  for (const auto& arg : order) {
    from_b += arg[0] == 'B';
    seen += arg + " ";
  }
  EXPECT_EQ(from_b, 5u) << "first 10 leases: " << seen;
  EXPECT_EQ(b->expect_results({1, 2, 3, 4, 5}).size(), 5u);
}

TEST_F(BrokerProtocol, TreatsAFunctionListedTwiceInReadyAsOne) {
  start();
  auto c = client("c");
  c->hello();
  c->submit({{1, "f", 0}, {2, "f", 0}, {3, "g", 0}, {4, "g", 0}}, {"f1", "f2", "g3", "g4"});
  ASSERT_EQ(c->expect_accepted({1, 2, 3, 4}).size(), 4u);
  auto w = worker("dup");
  w->ready(2, {"f", "f", "g"});
  auto leases = w->expect_leases(2);
  ASSERT_EQ(leases.size(), 2u);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) {
    return s.workers == 1 && s.functions.contains("f") && s.functions.contains("g") &&
           s.queued == 2;
  }));
  const auto s = broker_->stats();
  EXPECT_EQ(s.functions.at("g").workers, 1u);
  // A repeated name once made the worker count twice in stats and gave "f" twice the share
  // of the worker's credit (both leases, none for "g").
  EXPECT_EQ(s.functions.at("f").workers, 1u);
  std::set<std::string> functions;
  for (const auto& [lease, arg] : leases) functions.insert(lease.function);
  EXPECT_EQ(functions, (std::set<std::string>{"f", "g"})) << "one lease per function in turn";
}

TEST_F(BrokerProtocol, DropsStaleOutcomesWithoutAResult) {
  start();
  auto [c, w1, lease] = lease_one("stale", "holder");
  ASSERT_NE(lease.task, 0u);
  auto w2 = worker("other");
  w2->ready(1, {"f"});
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.workers == 2; }));
  const auto base = broker_->stats().dropped;

  // The right task and attempt, from a worker that does not hold the lease.
  w2->finish(lease, "forged");
  ASSERT_TRUE(wait_stats([&](const BrokerStats& s) { return s.dropped == base + 1; }));
  // The worker that holds it, with another attempt number.
  wire::Lease wrong = lease;
  wrong.attempt = lease.attempt + 1;
  w1->send_stale(wrong, "wrong attempt");  // w1 still holds the real lease
  ASSERT_TRUE(wait_stats([&](const BrokerStats& s) { return s.dropped == base + 2; }));
  // A task key the broker never issued.
  wire::Lease unknown = lease;
  unknown.task = lease.task + 1000;
  w1->send_stale(unknown, "unknown");
  ASSERT_TRUE(wait_stats([&](const BrokerStats& s) { return s.dropped == base + 3; }));

  ASSERT_TRUE(probe(*c, 100));
  EXPECT_EQ(c->waiting(Command::kResult), 0u) << "a stale outcome reached the client";
  EXPECT_EQ(broker_->stats().completed, 0u);

  // The lease is untouched: its real outcome still finishes the task.
  w1->finish(lease, "right");
  auto r = c->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].payload, "right");
  EXPECT_EQ(r[1].meta.attempts, 1u);
  EXPECT_EQ(r[1].meta.host, w1->host());
  EXPECT_EQ(w2->waiting(Command::kTask), 0u);
}

/* A DONE with far more outcomes than its worker holds leases is forged: it is refused whole,
 * one drop, before its body is decoded, even when one of its outcomes is real. */
TEST_F(BrokerProtocol, RefusesADoneWithFarMoreOutcomesThanItsWorkerHoldsLeases) {
  start();
  auto [c, w, lease] = lease_one("flooded", "forger");
  ASSERT_NE(lease.task, 0u);
  const auto base = broker_->stats().dropped;

  // 2 x 1 lease + 64 is the most a DONE of this worker may carry; this one has one more.
  std::vector<wire::Outcome> outcomes;
  std::vector<std::string> payloads;
  for (std::uint64_t k = 0; k < 67; ++k) {
    auto o = dpool::test::FakeWorker::outcome_of(lease);
    o.task += k;  // the real lease first, then keys it was never given
    outcomes.push_back(o);
    payloads.emplace_back(k == 0 ? "inside a forged batch" : "forged");
  }
  w->send(Command::kDone, wire::DoneBatch{outcomes}, payloads);  // the lease stays held
  ASSERT_TRUE(wait_stats([&](const BrokerStats& s) { return s.dropped == base + 1; }))
      << "refused as one message, not outcome by outcome";
  ASSERT_TRUE(probe(*c, 100));
  EXPECT_EQ(c->waiting(Command::kResult), 0u) << "an outcome of the refused DONE was taken";

  // At the limit a DONE is read: its stale outcomes are dropped one by one, the real one taken.
  outcomes.resize(66);
  payloads.resize(66);
  payloads[0] = "right";
  w->done(outcomes, payloads);
  auto r = c->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].payload, "right");
  ASSERT_TRUE(wait_stats([&](const BrokerStats& s) { return s.dropped == base + 1 + 65; }));
}

TEST_F(BrokerProtocol, ExpiresASilentWorkerAndReleasesItsLeasesAtTheNextAttempt) {
  start();
  auto c = client("expiry");
  c->hello();
  auto w1 = worker("dies");
  w1->ready(1, {"f"});
  c->submit(1, "f", "job");
  auto first = w1->expect_leases(1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].first.attempt, 1u);
  auto w2 = worker("survives");
  w2->ready(1, {"f"});
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.workers == 2; }));

  w1->set_auto_heartbeat(false);
  const auto silent_since = w1->last_sent();
  auto second = w2->expect_leases(1, 3s);
  const auto elapsed = std::chrono::steady_clock::now() - silent_since;
  ASSERT_EQ(second.size(), 1u) << "the silent worker's lease never moved";
  EXPECT_EQ(second[0].first.task, first[0].first.task);
  EXPECT_EQ(second[0].first.attempt, 2u);
  EXPECT_EQ(second[0].second, "job");
  EXPECT_GE(elapsed, kExpiry) << "expired before its expiry";
  // Noticed within expiry + one tick; the rest is slack for a loaded machine.
  EXPECT_LT(elapsed, kExpiry + kInterval + 500ms);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.workers == 1 && s.requeued == 1; }));

  // The expired worker learns of it from the answer to its next HEARTBEAT, and its late
  // outcome is refused the same way.
  w1->heartbeat();
  auto bye = w1->expect<wire::Disconnect>(Command::kDisconnect);
  ASSERT_TRUE(bye);
  w1->finish(first[0].first, "late");
  EXPECT_TRUE(w1->expect<wire::Disconnect>(Command::kDisconnect));

  w2->finish(second[0].first, "done by w2");
  auto r = c->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].meta.status, Status::kOk);
  EXPECT_EQ(r[1].meta.attempts, 2u);
  EXPECT_EQ(r[1].payload, "done by w2");
  EXPECT_EQ(r[1].meta.host, w2->host());
}

TEST_F(BrokerProtocol, ReturnsTheLeasesOfADisconnectingWorkerWithoutCharging) {
  start();
  auto c = client("c");
  c->hello();
  auto w1 = worker("leaving");
  w1->ready(1, {"f"});
  c->submit(1, "f", "job", 1);  // max_attempts 1: a charged loss would fail it
  auto first = w1->expect_leases(1);
  ASSERT_EQ(first.size(), 1u);
  auto w2 = worker("staying");
  w2->ready(1, {"f"});
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.workers == 2; }));

  w1->set_auto_heartbeat(false);
  w1->send(Command::kDisconnect, wire::Disconnect{"worker stopping"});
  auto second = w2->expect_leases(1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].first.task, first[0].first.task);
  EXPECT_EQ(second[0].first.attempt, 2u);
  w2->finish(second[0].first, "ok");
  auto r = c->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].meta.status, Status::kOk);
  EXPECT_EQ(r[1].meta.attempts, 2u);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) {
    return s.workers == 1 && s.requeued == 1 && s.failed == 0;
  }));
}

TEST_F(BrokerProtocol, FailsATaskAsWorkerLostAfterMaxAttemptsLostLeases) {
  start();
  auto c = client("lost");
  c->hello();
  auto w = worker("crashy");
  w->ready(1, {"f"});
  c->submit(5, "f", "boom");  // max_attempts 0: the broker's default, 3
  for (std::uint32_t attempt = 1; attempt <= 3; ++attempt) {
    auto l = w->expect_leases(1);
    ASSERT_EQ(l.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(l[0].first.attempt, attempt);
    EXPECT_EQ(l[0].second, "boom");
    w->finish(l[0].first, "", Status::kLost, "WorkerLost");
  }
  auto r = c->expect_results({5});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[5].meta.status, Status::kLost);
  EXPECT_EQ(r[5].meta.error_type, "WorkerLost");
  EXPECT_EQ(r[5].meta.attempts, 3u);
  EXPECT_EQ(r[5].payload, "");
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) {
    return s.tasks == 0 && s.failed == 1 && s.requeued == 2;
  }));

  // A task's own max_attempts overrides the default: 1 means the first loss is final.
  c->submit(6, "f", "once", 1);
  auto l = w->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  w->finish(l[0].first, "", Status::kLost, "WorkerLost");
  auto r6 = c->expect_results({6});
  ASSERT_EQ(r6.size(), 1u);
  EXPECT_EQ(r6[6].meta.status, Status::kLost);
  EXPECT_EQ(r6[6].meta.attempts, 1u);
}

TEST_F(BrokerProtocol, RequeuesLeasesLostInTransitWithoutCharging) {
  start();
  auto c = client("transit");
  c->hello();
  auto w = worker("forgetful");
  w->ready(1, {"f"});
  // max_attempts 1: a single charged loss would fail the task.
  c->submit(9, "f", "fragile", 1);
  for (std::uint32_t attempt = 1; attempt <= 3; ++attempt) {
    auto t = w->expect_task();
    ASSERT_TRUE(t) << "attempt " << attempt;
    ASSERT_EQ(t->body.leases.size(), 1u);
    EXPECT_EQ(t->body.leases[0].attempt, attempt);
    EXPECT_EQ(t->payloads[0], "fragile");
    // "I have seen your batch and I do not hold the task": its DONE was lost.
    w->heartbeat(t->body.seq, {});
  }
  auto t = w->expect_task();
  ASSERT_TRUE(t);
  ASSERT_EQ(t->body.leases.size(), 1u);
  EXPECT_EQ(t->body.leases[0].attempt, 4u);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.requeued == 3; }));
  EXPECT_EQ(broker_->stats().failed, 0u);
  EXPECT_EQ(c->waiting(Command::kResult), 0u);

  w->finish(t->body.leases[0], "finally");
  auto r = c->expect_results({9});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[9].meta.status, Status::kOk);
  EXPECT_EQ(r[9].meta.attempts, 4u);
  EXPECT_EQ(r[9].payload, "finally");
}

TEST_F(BrokerProtocol, DisownsWorkersThatNeverSaidReady) {
  start();
  auto hb_peer = raw_peer("w-stranger-heartbeat");
  hb_peer->heartbeat(3, {1, 2});
  auto bye = hb_peer->expect<wire::Disconnect>(Command::kDisconnect);
  ASSERT_TRUE(bye);
  EXPECT_EQ(bye->body.reason, "unknown peer");

  auto done_peer = raw_peer("w-stranger-done");
  wire::Outcome o;
  o.task = 12345;
  o.attempt = 1;
  done_peer->send(Command::kDone, wire::DoneBatch{{o}}, {"result"});
  auto bye2 = done_peer->expect<wire::Disconnect>(Command::kDisconnect);
  ASSERT_TRUE(bye2);
  EXPECT_EQ(bye2->body.reason, "not registered");
  // The DONE is counted (unknown-peer); the HEARTBEAT is not.
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.dropped == 1; }));
  EXPECT_EQ(broker_->stats().workers, 0u);
  EXPECT_EQ(broker_->stats().clients, 0u);

  // Saying READY afterwards registers it as usual.
  done_peer->send(Command::kReady, wire::Ready{"h", 1, 1, {"f"}, {}});
  auto hb = done_peer->expect<wire::Heartbeat>(Command::kHeartbeat);
  ASSERT_TRUE(hb);
  EXPECT_NE(hb->body.instance, 0u);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.workers == 1; }));
}

}  // namespace
