/* The broker's side of the wire protocol (docs/protocol.md), client side: sessions.
 *
 * Covers: results reach the submitting client with their payload bytes intact and ACCEPT lists
 * the submitted ids; task payloads on both sides of the size the broker copies into its own
 * records (task.hpp) reach the worker intact on every lease, a requeue included; un-ACKed results
 * are resent until ACKed; repeated SUBMITs are accepted but not run twice, and resubmitting a
 * finished id (or a HELLO) resends its result; invalid function names are rejected; garbage is
 * survived and counted; tasks wait for a worker offering their function; a silent client is purged
 * with its queued tasks, and the outcome of a lease it left running is dropped.
 *
 * The broker under test and the way absences are shown: support/broker_fixture.hpp.
 */
#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <msgpack.hpp>

#include "dpool/broker.hpp"
#include "dpool/codec.hpp"
#include "dpool/protocol.hpp"
#include "support/broker_fixture.hpp"
#include "support/fake_peer.hpp"
#include "task.hpp"

namespace {

using namespace std::chrono_literals;
using dpool::BrokerStats;
using dpool::Command;
using dpool::Status;
using dpool::test::BrokerProtocol;
using dpool::test::kExpiry;
using dpool::test::kInterval;
using dpool::test::kLiveness;
namespace wire = dpool::wire;

/* A message header: the signature "DP", then any version and command bytes. */
std::string header(std::uint8_t version, std::uint8_t command) {
  return std::string{'D', 'P', static_cast<char>(version), static_cast<char>(command)};
}

template <class T>
std::string packed(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return std::string(buffer.data(), buffer.size());
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

TEST_F(BrokerProtocol, LeasesPayloadsOnBothSidesOfTheCopyLimitIntactEveryTime) {
  start();
  auto c = client("sizes");
  c->hello();
  const std::size_t limit = dpool::detail::kInlinePayload;
  std::vector<wire::TaskSpec> specs;
  std::vector<std::string> args;
  for (std::size_t size : {std::size_t{40}, limit, limit + 1, 4 * limit}) {
    std::string arg(size, '\0');
    for (std::size_t i = 0; i < size; ++i) arg[i] = static_cast<char>(i * 13 + size);
    specs.push_back(wire::TaskSpec{specs.size() + 1, "echo", 0});
    args.push_back(std::move(arg));
  }
  c->submit(specs, args);
  ASSERT_EQ(c->expect_accepted({1, 2, 3, 4}).size(), 4u);

  auto w = worker("sizes");
  w->ready(4, {"echo"});
  const std::set<std::string> sent(args.begin(), args.end());
  // Handed back unstarted (a draining worker's `returned`): requeued, and leased again.
  for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
    auto leases = w->expect_leases(4);
    ASSERT_EQ(leases.size(), 4u) << "attempt " << attempt;
    std::set<std::string> received;
    for (auto& [lease, arg] : leases) {
      EXPECT_EQ(lease.attempt, attempt);
      received.insert(arg);
      w->finish(lease, attempt == 1 ? "" : arg, attempt == 1 ? Status::kReturned : Status::kOk);
    }
    EXPECT_EQ(received, sent) << "arguments changed on lease " << attempt;
  }
  auto r = c->expect_results({1, 2, 3, 4});
  ASSERT_EQ(r.size(), 4u);
  for (std::uint64_t id = 1; id <= 4; ++id) EXPECT_EQ(r[id].payload, args[id - 1]) << "task " << id;
}

TEST_F(BrokerProtocol, ResendsAResultUntilTheClientAcksIt) {
  start();
  auto [c, w, lease] = lease_one("forgetful-acker", "w");
  ASSERT_NE(lease.task, 0u);
  w->finish(lease, "answer");
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

}  // namespace
