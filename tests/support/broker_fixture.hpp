/* Test support: the fixture for the broker's side of the wire protocol (docs/protocol.md),
 * shared by test_broker_leases.cpp and test_broker_sessions.cpp.
 *
 * Each test runs a dpool::Broker in process on a free loopback port with a 50 ms heartbeat
 * (liveness 3, so expiry is 150 ms) and drives it with hand-written DEALER peers
 * (support/fake_peer.hpp) that send exactly the frames a test needs.
 *
 * No test sleeps to tune timing: each waits for an event (a message, a published statistic, a
 * number of broker ticks) with a deadline. An absence ("no RESULT", "no more leases") is shown
 * by a later message the broker must send after it on the same connection: a probe SUBMIT's
 * ACCEPT, or broker HEARTBEATs (one per tick, sent after that tick's dispatch).
 */
#pragma once

#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "dpool/broker.hpp"
#include "dpool/config.hpp"
#include "dpool/log.hpp"
#include "dpool/protocol.hpp"
#include "support/fake_peer.hpp"
#include "support/process.hpp"

namespace dpool::test {

inline constexpr auto kInterval = 50ms;
inline constexpr std::uint32_t kLiveness = 3;
inline constexpr auto kExpiry = kInterval * kLiveness;

class BrokerProtocol : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* level = std::getenv("DPOOL_TEST_LOG");  // e.g. debug, to see the broker's side
    dpool::log::init("broker", level ? level : "warn");
  }

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

  /* A client (HELLO sent) and a worker offering "f" with credit 1, and the client's task 1 of
   * "f" leased to that worker: where most lease tests begin, right after start(). `lease` is
   * the one lease, or a default (task 0) with a test failure when none came. */
  struct OneLease {
    std::unique_ptr<FakeClient> client;
    std::unique_ptr<FakeWorker> worker;
    wire::Lease lease;
  };
  OneLease lease_one(const std::string& client_name, const std::string& worker_name) {
    OneLease one{client(client_name), worker(worker_name), {}};
    one.client->hello();
    one.worker->ready(1, {"f"});
    EXPECT_TRUE(wait_stats([](const BrokerStats& s) { return s.workers == 1; }));
    one.client->submit(1, "f", "x");
    auto leases = one.worker->expect_leases(1);
    EXPECT_EQ(leases.size(), 1u);
    if (!leases.empty()) one.lease = leases[0].first;
    return one;
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

  /* Submits tasks 1..count of `function` in one SUBMIT, task i with the argument
   * arg_prefix + "i". */
  static void submit_numbered(FakeClient& c, const std::string& function,
                              const std::string& arg_prefix, std::uint64_t count) {
    std::vector<wire::TaskSpec> specs;
    std::vector<std::string> args;
    for (std::uint64_t id = 1; id <= count; ++id) {
      specs.push_back({id, function, 0});
      args.push_back(arg_prefix + std::to_string(id));
    }
    c.submit(specs, args);
  }

  zmq::context_t context_{1};
  dpool::BrokerConfig config_ = default_config();
  std::unique_ptr<dpool::Broker> broker_;
  std::string endpoint_;
  std::thread thread_;
  std::string broker_error_;
};

}  // namespace dpool::test
