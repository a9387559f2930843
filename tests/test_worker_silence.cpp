/* A worker host whose broker falls silent: it keeps trying without flooding the link, and it
 * is back as soon as a connection is (worker/src/supervisor.cpp, heartbeat_gap and
 * reconnected). A heartbeat sent while the link is down waits in ZeroMQ's queue and arrives
 * stale with all the others once the link is back, so the count here is what a cut link would
 * deliver in one burst. */
#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "support/fake_broker.hpp"

namespace dpool::test {
namespace {

using Clock = std::chrono::steady_clock;

/* Heartbeats the broker receives within `span`. */
int heartbeats_within(FakeBroker& broker, std::chrono::milliseconds span) {
  int n = 0;
  const auto end = Clock::now() + span;
  while (Clock::now() < end) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (broker.next_heartbeat([](const wire::Heartbeat&) { return true; }, std::max(left, 1ms)))
      ++n;
  }
  return n;
}

TEST(WorkerSilence, HeartbeatsToASilentBrokerAreSpacedOutAndARestartedOneHearsOneAtOnce) {
  auto broker = std::make_unique<FakeBroker>();
  const auto endpoint = broker->endpoint();
  // Heartbeat every 200 ms, silent after 600 ms: this broker never says a word.
  auto worker = start_limits_worker(endpoint, 1);
  ASSERT_TRUE(broker->wait_ready()) << worker.log();
  // At one heartbeat an interval, 30 in 6 s; spaced out, the gap doubles once the broker is
  // silent: 200, 200, 200, 400, 800, 1600, 3200 ms.
  const int n = heartbeats_within(*broker, 6s);
  EXPECT_GE(n, 3) << "a worker host keeps trying";
  EXPECT_LE(n, 12) << "heartbeats to a silent broker are spaced out\n" << worker.log();

  // Just after a spaced-out heartbeat (the next is 6.4 s away), the broker restarts on the
  // same address: the new connection's handshake brings that heartbeat forward.
  ASSERT_TRUE(broker->next_heartbeat([](const wire::Heartbeat&) { return true; }, 10s * kSlow))
      << worker.log();
  broker.reset();
  broker = std::make_unique<FakeBroker>(endpoint);
  const auto restarted = Clock::now();
  ASSERT_TRUE(broker->next_heartbeat([](const wire::Heartbeat&) { return true; }, 10s * kSlow))
      << worker.log();
  EXPECT_LT(Clock::now() - restarted, 3s) << "the heartbeat waited for its spaced-out turn\n"
                                          << worker.log();
}

}  // namespace
}  // namespace dpool::test
