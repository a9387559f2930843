/* The broker's outgoing queue per peer (docs/protocol.md, section 4.11): a peer that stops
 * reading has at most a bounded number of messages queued for it, and the broker never blocks
 * on it. What could not be sent is not lost: a frozen client that reads again gets every
 * result, because unACKed RESULTs are sent again, and the broker counts what it held back.
 *
 * The client here reads through a tiny ZeroMQ queue and kernel buffer (FakePeer's
 * receive_queue), so that when it stops reading the broker's side fills within a few MB
 * instead of after everything the kernel would otherwise buffer on loopback.
 *
 * The same frozen client, leaving as the broker closes, must not bring the process down.
 */
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/broker_fixture.hpp"
#include "support/fake_peer.hpp"

namespace {

using namespace std::chrono_literals;
using dpool::BrokerStats;
using dpool::Status;
using dpool::test::BrokerProtocol;
using dpool::test::FakeClient;
using dpool::test::FakeWorker;
namespace wire = dpool::wire;

using BrokerSendQueue = BrokerProtocol;

/* Tasks 1..count of `function`, in SUBMITs of 100. */
void submit_all(FakeClient& c, const std::string& function, std::uint64_t count) {
  for (std::uint64_t first = 1; first <= count; first += 100) {
    std::vector<wire::TaskSpec> specs;
    std::vector<std::string> args;
    for (auto id = first; id < first + 100 && id <= count; ++id) {
      specs.push_back({id, function, 0});
      args.push_back("arg" + std::to_string(id));
    }
    c.submit(specs, args);
  }
}

TEST_F(BrokerSendQueue, AClientThatStopsReadingGetsEveryResultOnceItReadsAgain) {
  start();
  auto w = worker("sendq");
  // Credit 1: one lease out at a time, so each outcome comes back in a loop turn of its own and
  // leaves as a RESULT message of its own, more messages than the broker queues for one peer.
  w->ready(1, {"blob"});
  FakeClient c(context_, endpoint_, "frozen", config_.heartbeat.interval, 1);
  c.hello();
  c.set_reading(false);
  constexpr std::uint64_t kTasks = 4000;
  const std::string result(4096, 'r');
  submit_all(c, "blob", kTasks);

  std::uint64_t answered = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (answered < kTasks && std::chrono::steady_clock::now() < deadline) {
    for (const auto& [lease, arg] : w->expect_leases(1, 2s)) {
      w->finish(lease, result);
      ++answered;
    }
  }
  ASSERT_EQ(answered, kTasks) << "the worker was not sent every task";
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.unsent > 0; }, 10s))
      << "the frozen client's queue never filled: the test proves nothing";

  c.set_reading(true);
  std::set<std::uint64_t> ids;
  for (std::uint64_t id = 1; id <= kTasks; ++id) ids.insert(id);
  const auto got = c.expect_results(ids, 60s);
  ASSERT_EQ(got.size(), kTasks) << "results lost while the client did not read";
  std::size_t wrong = 0;
  for (const auto& [id, r] : got) {
    if (r.meta.status != Status::kOk || r.payload != result) ++wrong;
  }
  EXPECT_EQ(wrong, 0u);
  c.ack({ids.begin(), ids.end()});
  EXPECT_TRUE(broker_error_.empty());
}

using BrokerStopping = BrokerProtocol;

#ifdef DPOOL_SANITIZED
constexpr int kStopRounds = 15;
#else
constexpr int kStopRounds = 60;
#endif

/* Tasks 1..count of `c`, each answered with `size` bytes in DONEs of 100 outcomes: the RESULTs
 * are messages of 100 frames, so a connection that stops taking bytes almost always stops
 * part-way through one. */
void answer_all(FakeWorker& w, FakeClient& c, std::uint64_t count, std::size_t size) {
  submit_all(c, "blob", count);
  std::uint64_t answered = 0;
  while (answered < count) {
    std::vector<wire::Outcome> outcomes;
    std::vector<std::string> payloads;
    for (const auto& [lease, arg] : w.expect_leases(100, 2s)) {
      outcomes.push_back(FakeWorker::outcome_of(lease));
      payloads.emplace_back(size, 'r');
    }
    ASSERT_FALSE(outcomes.empty()) << "the worker was not sent every task";
    answered += outcomes.size();
    w.done(outcomes, payloads);
  }
}

/* libzmq 4.3 aborts the process when a connection breaks part-way through sending a multipart
 * message after its socket was closed with linger 0 (see ~BrokerCore). Here a client that
 * stopped reading in the middle of the RESULTs leaves while the broker closes, round after
 * round, and the process must live through every round. The race is narrow: with the broker
 * closing at linger 0, 6 of 6 runs of this test aborted; with the linger, none of 10. */
TEST_F(BrokerStopping, AClientLeavingMidMessageAsTheBrokerClosesDoesNotAbortIt) {
  for (int round = 0; round < kStopRounds && !HasFatalFailure(); ++round) {
    zmq::context_t context(1);
    auto config = default_config();
    auto broker = std::make_unique<dpool::Broker>(config);
    std::thread loop([&] { broker->run(); });
    auto w =
        std::make_unique<FakeWorker>(context, broker->endpoint(), "w", config.heartbeat.interval);
    w->ready(100, {"blob"});
    auto c = std::make_unique<FakeClient>(context, broker->endpoint(), "frozen",
                                          config.heartbeat.interval, 1);
    c->hello();
    c->set_reading(false);
    answer_all(*w, *c, 4000, 500);
    w.reset();
    broker->stop();
    loop.join();
    std::thread leaving([&] { c.reset(); });
    broker.reset();
    leaving.join();
  }
}

}  // namespace
