/* The broker's side of the wire protocol (docs/protocol.md), message by message.
 *
 * Each test runs a dpool::Broker in process on a free loopback port with a 50 ms heartbeat
 * (liveness 3, so expiry is 150 ms) and drives it with hand-written DEALER peers
 * (support/fake_peer.hpp) that send exactly the frames a test needs.
 *
 * Covers: credit bounds the leases out to a worker; results reach the submitting client with
 * their payload bytes intact and ACCEPT lists the submitted ids; round-robin between clients of
 * one function; stale outcomes (wrong attempt, other worker) are dropped and counted; a silent
 * worker expires and its lease goes to another worker at the next attempt; a task lost on every
 * allowed attempt fails as WorkerLost; leases lost in transit are requeued without charging;
 * DONE / HEARTBEAT from an unregistered peer get DISCONNECT; un-ACKed results are resent until
 * ACKed; repeated SUBMITs are accepted but not run twice, and resubmitting a finished id resends
 * its result; invalid function names are rejected; garbage is survived and counted; tasks wait
 * for a worker offering their function; a silent client is purged with its queued tasks.
 *
 * No test sleeps to tune timing: each waits for an event (a message, a published statistic, a
 * number of broker ticks) with a deadline. An absence ("no RESULT", "no more leases") is shown
 * by a later message the broker must send after it on the same connection: a probe SUBMIT's
 * ACCEPT, or broker HEARTBEATs (one per tick, sent after that tick's dispatch).
 */
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <msgpack.hpp>
#include <zmq.hpp>

#include "dpool/broker.hpp"
#include "dpool/codec.hpp"
#include "dpool/config.hpp"
#include "dpool/log.hpp"
#include "dpool/protocol.hpp"
#include "support/fake_peer.hpp"
#include "support/process.hpp"

namespace {

using namespace std::chrono_literals;
using dpool::BrokerStats;
using dpool::Command;
using dpool::Status;
using dpool::test::FakeClient;
using dpool::test::FakePeer;
using dpool::test::FakeWorker;
using dpool::test::wait_for;
namespace wire = dpool::wire;

constexpr auto kInterval = 50ms;
constexpr std::uint32_t kLiveness = 3;
constexpr auto kExpiry = kInterval * kLiveness;

std::string header(std::uint8_t version, std::uint8_t command) {
  return std::string{'D', 'P', static_cast<char>(version), static_cast<char>(command)};
}

template <class T>
std::string packed(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return std::string(buffer.data(), buffer.size());
}

class BrokerProtocol : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dpool::log::init("broker", "warn"); }

  static dpool::BrokerConfig default_config() {
    dpool::BrokerConfig c;
    c.bind = "tcp://127.0.0.1:0";
    c.heartbeat.interval = kInterval;
    c.heartbeat.liveness = kLiveness;
    return c;
  }

  void start(dpool::BrokerConfig config = default_config()) {
    config_ = config;
    broker_ = std::make_unique<dpool::Broker>(config);
    endpoint_ = broker_->endpoint();
    thread_ = std::thread([this] {
      try {
        broker_->run();
      } catch (const std::exception& e) {
        broker_error_ = e.what();
      }
    });
  }

  void TearDown() override {
    if (broker_) {
      broker_->stop();
      thread_.join();
      EXPECT_EQ(broker_error_, "") << "Broker::run() threw";
    }
  }

  std::unique_ptr<FakeWorker> worker(const std::string& name) {
    return std::make_unique<FakeWorker>(context_, endpoint_, name, config_.heartbeat.interval);
  }
  std::unique_ptr<FakeClient> client(const std::string& name) {
    return std::make_unique<FakeClient>(context_, endpoint_, name, config_.heartbeat.interval);
  }
  std::unique_ptr<FakePeer> raw_peer(const std::string& identity) {
    return std::make_unique<FakePeer>(context_, endpoint_, identity, config_.heartbeat.interval);
  }

  /* Waits until the stats the broker publishes once per tick satisfy `pred`. */
  template <class Pred>
  bool wait_stats(Pred pred, std::chrono::milliseconds timeout = 2s) {
    return wait_for([&] { return pred(broker_->stats()); }, timeout);
  }

  /* Submits a task for a function no worker offers and waits for its ACCEPT: everything the
   * broker sent this client in earlier loop turns has arrived once it is back. */
  [[nodiscard]] static bool probe(FakeClient& c, std::uint64_t id) {
    c.submit(id, "probe-nobody-offers-this", "");
    const auto seen = c.expect_accepted({id});
    return !seen.empty() && seen.back() == id;
  }

  zmq::context_t context_{1};
  dpool::BrokerConfig config_ = default_config();
  std::unique_ptr<dpool::Broker> broker_;
  std::string endpoint_;
  std::thread thread_;
  std::string broker_error_;
};

TEST_F(BrokerProtocol, NeverLeasesBeyondAWorkersCredit) {
  start();
  auto c = client("credit");
  c->hello();
  std::vector<wire::TaskSpec> specs;
  std::vector<std::string> args;
  for (std::uint64_t id = 1; id <= 5; ++id) {
    specs.push_back({id, "f", 0});
    args.push_back("arg" + std::to_string(id));
  }
  c->submit(specs, args);
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

TEST_F(BrokerProtocol, DeliversResultsToTheSubmittingClientWithPayloadBytesIntact) {
  start();
  auto a = client("alice");
  auto b = client("bob");
  a->hello();
  b->hello();
  const std::string binary("\x00\x01\xff\xfe\x00zero\x00", 11);
  std::string big(100 * 1024, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  // Both clients use id 7: ids are per session.
  a->submit({{7, "echo", 0}, {8, "echo", 0}}, {"A:" + binary, "A:" + big});
  b->submit({{7, "echo", 0}}, {"B:" + binary});
  EXPECT_EQ(a->expect_accepted({7, 8}), (std::vector<std::uint64_t>{7, 8}));
  EXPECT_EQ(b->expect_accepted({7}), std::vector<std::uint64_t>{7});

  auto w = worker("echo");
  w->ready(10, {"echo"});
  auto leases = w->expect_leases(3);
  ASSERT_EQ(leases.size(), 3u);
  std::set<std::string> args;
  for (auto& [lease, arg] : leases) {
    EXPECT_EQ(lease.attempt, 1u);
    EXPECT_EQ(lease.function, "echo");
    args.insert(arg);
    w->finish(lease, "result-of-" + arg);  // the result carries the arguments back
  }
  EXPECT_EQ(args, (std::set<std::string>{"A:" + binary, "A:" + big, "B:" + binary}))
      << "task arguments changed on the way to the worker";

  std::size_t extra_a = 0;
  std::size_t extra_b = 0;
  auto ra = a->expect_results({7, 8}, 2s, &extra_a);
  auto rb = b->expect_results({7}, 2s, &extra_b);
  ASSERT_EQ(ra.size(), 2u);
  ASSERT_EQ(rb.size(), 1u);
  EXPECT_EQ(ra[7].payload, "result-of-A:" + binary);
  EXPECT_EQ(ra[8].payload, "result-of-A:" + big);
  EXPECT_EQ(rb[7].payload, "result-of-B:" + binary);
  for (auto* r : {&ra[7], &ra[8], &rb[7]}) {
    EXPECT_EQ(r->meta.status, Status::kOk);
    EXPECT_EQ(r->meta.attempts, 1u);
    EXPECT_EQ(r->meta.host, w->host());
    EXPECT_EQ(r->meta.pid, 777u);
    EXPECT_EQ(r->meta.error_type, "");
  }
  EXPECT_EQ(extra_a, 0u);
  EXPECT_EQ(extra_b, 0u);
  a->ack({7, 8});
  b->ack({7});
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.completed == 3 && s.tasks == 0; }));
  EXPECT_EQ(broker_->stats().failed, 0u);
}

TEST_F(BrokerProtocol, ServesClientsOfOneFunctionInTurn) {
  start();
  auto a = client("a-many");
  auto b = client("b-few");
  a->hello();
  b->hello();
  std::vector<wire::TaskSpec> specs;
  std::vector<std::string> args;
  for (std::uint64_t id = 1; id <= 100; ++id) {
    specs.push_back({id, "f", 0});
    args.push_back("A" + std::to_string(id));
  }
  a->submit(specs, args);
  ASSERT_EQ(a->expect_accepted({1}).size(), 100u);
  specs.clear();
  args.clear();
  for (std::uint64_t id = 1; id <= 5; ++id) {
    specs.push_back({id, "f", 0});
    args.push_back("B" + std::to_string(id));
  }
  b->submit(specs, args);
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

TEST_F(BrokerProtocol, DropsStaleOutcomesWithoutAResult) {
  start();
  auto c = client("stale");
  c->hello();
  auto w1 = worker("holder");
  w1->ready(1, {"f"});
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.workers == 1; }));
  c->submit(1, "f", "x");
  auto leases = w1->expect_leases(1);
  ASSERT_EQ(leases.size(), 1u);
  const auto lease = leases[0].first;
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
  std::optional<wire::TaskBatch> batch;
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

TEST_F(BrokerProtocol, ResendsAResultUntilTheClientAcksIt) {
  start();
  auto c = client("forgetful-acker");
  c->hello();
  auto w = worker("w");
  w->ready(1, {"f"});
  c->submit(1, "f", "x");
  auto l = w->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  w->finish(l[0].first, "answer");
  auto first = c->expect_results({1});
  ASSERT_EQ(first.size(), 1u);
  const auto first_at = std::chrono::steady_clock::now();

  // No ACK: the same result comes again, after the expiry.
  auto again = c->expect_results({1}, 3s);
  ASSERT_EQ(again.size(), 1u) << "an un-ACKed result was not sent again";
  EXPECT_EQ(again[1].payload, "answer");
  EXPECT_EQ(again[1].meta.status, Status::kOk);
  EXPECT_GE(std::chrono::steady_clock::now() - first_at, kExpiry - kInterval)
      << "resent before the expiry";

  c->ack({1});
  ASSERT_TRUE(probe(*c, 100));  // the ACK has been handled
  c->discard(Command::kResult);  // a resend that crossed the ACK
  // Longer than expiry + one tick, then a probe: nothing for id 1 came any more.
  ASSERT_TRUE(c->wait_ticks(2 * kLiveness + 2));
  ASSERT_TRUE(probe(*c, 101));
  EXPECT_EQ(c->waiting(Command::kResult), 0u) << "an ACKed result was sent again";
  EXPECT_EQ(broker_->stats().completed, 1u);
}

TEST_F(BrokerProtocol, AcceptsARepeatedSubmitWithoutLeasingItTwice) {
  start();
  auto c = client("repeat");
  c->hello();
  // Repeated while queued: one queued task.
  c->submit(1, "nobody", "q");
  EXPECT_EQ(c->expect_accepted({1}), std::vector<std::uint64_t>{1});
  c->submit(1, "nobody", "q again");
  EXPECT_EQ(c->expect_accepted({1}), std::vector<std::uint64_t>{1});
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) {
    return s.functions.contains("nobody") && s.functions.at("nobody").queued == 1 && s.tasks == 1;
  }));

  // Repeated while leased: the worker never gets a second lease for it.
  auto w = worker("w");
  w->ready(2, {"f"});
  c->submit(2, "f", "p2");
  EXPECT_EQ(c->expect_accepted({2}), std::vector<std::uint64_t>{2});
  auto l = w->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].second, "p2");
  c->submit(2, "f", "p2 again");
  EXPECT_EQ(c->expect_accepted({2}), std::vector<std::uint64_t>{2});
  c->submit(3, "f", "p3");
  EXPECT_EQ(c->expect_accepted({3}), std::vector<std::uint64_t>{3});
  // Had id 2 been queued again it would be leased before id 3 (same client, FIFO).
  auto l3 = w->expect_leases(1);
  ASSERT_EQ(l3.size(), 1u);
  EXPECT_EQ(l3[0].second, "p3");
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.tasks == 3 && s.queued == 1; }));
  ASSERT_TRUE(w->wait_ticks(2));
  EXPECT_EQ(w->waiting(Command::kTask), 0u);
}

TEST_F(BrokerProtocol, ResendsTheResultWhenAFinishedIdIsSubmittedAgain) {
  // A long expiry, so that the timed resend cannot be mistaken for the one under test.
  auto config = default_config();
  config.heartbeat.liveness = 60;  // 3 s
  start(config);
  auto c = client("resubmit");
  c->hello();
  auto w = worker("w");
  w->ready(1, {"f"});
  c->submit(1, "f", "x");
  EXPECT_EQ(c->expect_accepted({1}), std::vector<std::uint64_t>{1});
  auto l = w->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  w->finish(l[0].first, "kept");
  ASSERT_EQ(c->expect_results({1}).size(), 1u);

  // Not ACKed (as if the RESULT were lost), and submitted again.
  c->submit(1, "f", "x");
  EXPECT_EQ(c->expect_accepted({1}), std::vector<std::uint64_t>{1});
  auto r = c->expect_results({1}, 1s);
  ASSERT_EQ(r.size(), 1u) << "the waiting result was not sent again";
  EXPECT_EQ(r[1].payload, "kept");
  EXPECT_EQ(r[1].meta.attempts, 1u);
  // ... and not run again.
  ASSERT_TRUE(w->wait_ticks(2));
  EXPECT_EQ(w->waiting(Command::kTask), 0u);
  const auto s = broker_->stats();
  EXPECT_EQ(s.tasks, 0u);
  EXPECT_EQ(s.completed, 1u);

  // A HELLO (a client that reconnected) gets every un-ACKed result again too.
  c->hello();
  auto again = c->expect_results({1}, 1s);
  ASSERT_EQ(again.size(), 1u) << "HELLO did not resend the waiting result";
  EXPECT_EQ(again[1].payload, "kept");
}

TEST_F(BrokerProtocol, RejectsInvalidFunctionNames) {
  start();
  auto c = client("names");
  c->hello();
  c->submit({{1, "", 0}, {2, std::string(257, 'n'), 0}, {3, std::string(256, 'n'), 0}},
            {"a", "b", "c"});
  EXPECT_EQ(c->expect_accepted({1, 2, 3}), (std::vector<std::uint64_t>{1, 2, 3}));
  auto r = c->expect_results({1, 2});
  ASSERT_EQ(r.size(), 2u);
  for (std::uint64_t id : {1, 2}) {
    EXPECT_EQ(r[id].meta.status, Status::kRejected) << id;
    EXPECT_EQ(r[id].meta.error_type, "InvalidFunctionName") << id;
    EXPECT_EQ(r[id].meta.attempts, 0u) << id;
    EXPECT_EQ(r[id].payload, "") << id;
  }
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) {
    return s.tasks == 1 && s.queued == 1 && s.failed == 2;
  }));
}

TEST_F(BrokerProtocol, SurvivesGarbageAndKeepsServing) {
  start();
  auto g = raw_peer("g-garbage");
  std::size_t garbage = 0;
  auto junk = [&](std::vector<std::string> frames) {
    g->send_raw(frames);
    ++garbage;
  };
  const std::string submit_body = packed(wire::Submit{{{1, "f", 0}}});
  junk({"just one frame"});                                        // framing
  junk({""});                                                      // framing
  junk({"DP\x01", submit_body});                                   // framing: short header
  junk({std::string("DP\x01\x03\x00", 5), submit_body, "p"});     // framing: long header
  junk({"XX" + header(1, 3).substr(2), submit_body, "p"});         // framing: signature
  junk({header(2, 3), submit_body, "p"});                          // version
  junk({header(0, 3), submit_body, "p"});                          // version
  junk({header(1, 0), submit_body});                               // command
  junk({header(1, 11), submit_body});                              // command
  junk({header(1, 255), submit_body});                             // command
  junk({header(1, 4), packed(wire::Accept{{1}})});                 // command: ACCEPT
  junk({header(1, 5), packed(wire::TaskBatch{1, {}})});            // command: TASK
  junk({header(1, 7), packed(wire::ResultBatch{})});               // command: RESULT
  junk({header(1, 3), "\xc1"});                                    // body: not msgpack
  junk({header(1, 3), ""});                                        // body: empty
  junk({header(1, 3), packed(42)});                                // body: not an array
  junk({header(1, 3), submit_body + "x", "p"});                    // body: trailing bytes
  junk({header(1, 3), packed(std::vector<std::vector<std::string>>{{"id?"}}), "p"});  // body: type
  junk({header(1, 3), std::string("\xdd\xff\xff\xff\xff", 5)});    // body: 4G-element array
  junk({header(1, 2), std::string("\xdd\xff\xff\xff\xff", 5)});    // body: READY
  junk({header(1, 9), packed(std::string("hb"))});                 // body: HEARTBEAT
  junk({header(1, 1), "\x92\x01"});                                // body: HELLO, truncated
  junk({header(1, 3), submit_body});                               // payloads: 1 task, 0 frames
  junk({header(1, 3), submit_body, "p", "q"});                     // payloads: 1 task, 2 frames
  junk({header(1, 6), packed(wire::DoneBatch{})});                 // unknown-peer: DONE
  std::mt19937 rng(12345);
  for (int i = 0; i < 50; ++i) {
    std::vector<std::string> frames(1 + rng() % 5);
    for (auto& f : frames) {
      f.resize(rng() % 40);
      for (auto& ch : f) ch = static_cast<char>(rng());
    }
    if (!frames[0].empty() && frames[0][0] == 'D') frames[0][0] = 'd';  // never a DP header
    junk(frames);
  }
  ASSERT_TRUE(wait_stats([&](const BrokerStats& s) { return s.dropped >= garbage; }))
      << "dropped " << broker_->stats().dropped << " of " << garbage;

  // A legitimate pair is still served, with garbage from both of them in between.
  auto c = client("legit");
  auto w = worker("legit");
  c->hello();
  w->ready(1, {"f"});
  c->send_raw({header(1, 3), submit_body});  // payloads mismatch from a real session
  ++garbage;
  w->send_raw({header(1, 6), "\xc1"});       // undecodable DONE from a real worker
  ++garbage;
  c->submit(1, "f", "still works");
  EXPECT_EQ(c->expect_accepted({1}), std::vector<std::uint64_t>{1});
  auto l = w->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].second, "still works");
  w->finish(l[0].first, "ok");
  auto r = c->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].payload, "ok");
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.completed == 1; }));
  // Every garbage message counted exactly once, nothing legitimate counted.
  ASSERT_TRUE(c->wait_ticks(1));
  EXPECT_EQ(broker_->stats().dropped, garbage);
  EXPECT_EQ(c->malformed_from_broker(), 0u);
  EXPECT_EQ(w->malformed_from_broker(), 0u);
}

TEST_F(BrokerProtocol, KeepsATaskQueuedUntilAWorkerOffersItsFunction) {
  start();
  auto c = client("waits");
  c->hello();
  auto wy = worker("offers-y");
  wy->ready(5, {"y"});
  c->submit(1, "x", "for x");
  EXPECT_EQ(c->expect_accepted({1}), std::vector<std::uint64_t>{1});
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) {
    return s.functions.contains("x") && s.functions.at("x").queued == 1 &&
           s.functions.at("x").workers == 0 && s.functions.contains("y") &&
           s.functions.at("y").workers == 1;
  }));
  ASSERT_TRUE(wy->wait_ticks(3));
  EXPECT_EQ(wy->waiting(Command::kTask), 0u) << "a task went to a worker not offering it";
  EXPECT_EQ(broker_->stats().functions.at("x").queued, 1u);

  auto wx = worker("offers-x");
  wx->ready(1, {"x"});
  auto l = wx->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].first.function, "x");
  EXPECT_EQ(l[0].second, "for x");
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) {
    return s.functions.at("x").queued == 0 && s.functions.at("x").workers == 1 && s.queued == 0;
  }));
}

TEST_F(BrokerProtocol, DropsASilentClientAndItsQueuedTasks) {
  auto config = default_config();
  config.client_timeout = 300ms;
  start(config);
  auto quiet = client("quiet");
  quiet->hello();
  quiet->set_auto_heartbeat(false);
  quiet->submit({{1, "x", 0}, {2, "x", 0}, {3, "x", 0}}, {"q1", "q2", "q3"});
  const auto silent_since = quiet->last_sent();
  auto active = client("active");
  active->hello();
  active->submit(1, "x", "a1");
  ASSERT_EQ(quiet->expect_accepted({1, 2, 3}).size(), 3u);
  ASSERT_EQ(active->expect_accepted({1}).size(), 1u);

  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.clients == 1 && s.queued == 1; }, 3s))
      << "the silent client or its tasks are still there";
  EXPECT_GE(std::chrono::steady_clock::now() - silent_since, config.client_timeout);
  EXPECT_EQ(broker_->stats().tasks, 1u);

  // Only the live client's task is left to run.
  auto w = worker("x");
  w->ready(10, {"x"});
  auto l = w->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].second, "a1");
  ASSERT_TRUE(w->wait_ticks(2));
  EXPECT_EQ(w->waiting(Command::kTask), 0u) << "a purged client's task was leased";

  // The purged client learns of it from the answer to its next HEARTBEAT.
  quiet->heartbeat();
  EXPECT_TRUE(quiet->expect<wire::Disconnect>(Command::kDisconnect));
}

TEST_F(BrokerProtocol, EndsThePurgedClientsLeaseWhenItsOutcomeArrives) {
  auto config = default_config();
  config.client_timeout = 300ms;
  start(config);
  auto w = worker("busy");
  w->ready(1, {"f"});
  auto quiet = client("quiet");
  quiet->hello();
  quiet->set_auto_heartbeat(false);
  quiet->submit(1, "f", "orphan");
  auto l = w->expect_leases(1);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].second, "orphan");
  auto active = client("active");
  active->hello();
  active->submit(1, "f", "next");
  ASSERT_EQ(active->expect_accepted({1}).size(), 1u);

  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.clients == 1 && s.tasks == 1; }, 3s));
  const auto base = broker_->stats().dropped;
  // The worker was still running the orphan: its outcome is stale, and frees the credit.
  w->finish(l[0].first, "nobody wants this");
  auto next = w->expect_leases(1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].second, "next");
  ASSERT_TRUE(wait_stats([&](const BrokerStats& s) { return s.dropped == base + 1; }));
  EXPECT_EQ(broker_->stats().completed, 0u);
  w->finish(next[0].first, "for active");
  auto r = active->expect_results({1});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[1].payload, "for active");
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
    return s.workers == 1 && s.functions.contains("f") && s.functions.contains("g") && s.queued == 2;
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

}  // namespace
