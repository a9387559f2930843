/* The broker's outgoing queue per peer (docs/protocol.md, section 4.11): a peer that stops
 * reading has at most a bounded number of messages queued for it, and the broker never blocks
 * on it. What could not be sent is not lost: a frozen client that reads again gets every
 * result, because unACKed RESULTs are sent again, and the broker counts what it held back.
 *
 * The client here reads through a tiny ZeroMQ queue and kernel buffer (FakePeer's
 * receive_queue), so that when it stops reading the broker's side fills within a few MB
 * instead of after everything the kernel would otherwise buffer on loopback.
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

}  // namespace
