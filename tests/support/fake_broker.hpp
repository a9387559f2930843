/* A broker played by the test, for tests of a real worker host (dpool-worker with the test
 * plugin): one ROUTER, one worker, every message the worker sends visible to the test. */
#pragma once

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <msgpack.hpp>
#include <zmq.hpp>

#include "dpool/codec.hpp"
#include "dpool/protocol.hpp"
#include "support/process.hpp"

namespace dpool::test {

using namespace std::chrono_literals;

#ifdef DPOOL_SANITIZED
constexpr auto kSlow = 4;  // sanitized builds start and run processes several times slower
#else
constexpr auto kSlow = 1;
#endif

/* dpool-worker with the test plugin's tasks, heartbeat 200 ms unless `extra` says otherwise.
 * (dpool-worker, not the test worker program: only the former exports the registry a plugin
 * registers into.) */
inline Process start_limits_worker(const std::string& endpoint, int processes,
                                   std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{
      DPOOL_WORKER_BIN,          "--broker", endpoint,         "--processes",
      std::to_string(processes), "--plugin", DPOOL_TEST_PLUGIN};
  if (std::find(extra.begin(), extra.end(), "--heartbeat-interval") == extra.end()) {
    argv.insert(argv.end(), {"--heartbeat-interval", "200"});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return Process(argv);
}

/* A broker played by the test: one ROUTER, one worker host. */
class FakeBroker {
 public:
  /* On `endpoint`; the default, a free port. Another FakeBroker on the endpoint of one that
   * is gone plays a restarted broker. */
  explicit FakeBroker(const std::string& endpoint = "tcp://127.0.0.1:0")
      : socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind(endpoint);
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }

  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }

  /* Waits for the worker's READY; its routing id is where TASKs go from then on. */
  bool wait_ready(std::chrono::milliseconds timeout = 20s * kSlow) {
    auto m = next(Command::kReady, timeout);
    if (m) ready_ = decode<wire::Ready>(*m, drops_, "worker");
    return m.has_value();
  }
  /* The body of the READY wait_ready() saw. */
  [[nodiscard]] const std::optional<wire::Ready>& ready() const { return ready_; }

  /* Sends one TASK with these leases (task keys as given) and payloads. */
  void send_tasks(const std::vector<wire::Lease>& leases,
                  const std::vector<std::string>& payloads) {
    std::vector<zmq::message_t> frames;
    for (const auto& p : payloads) frames.emplace_back(p.data(), p.size());
    ASSERT_TRUE(send_message(socket_, worker_, Command::kTask, wire::TaskBatch{++seq_, leases},
                             std::move(frames)));
  }
  void send_task(wire::Lease lease, const std::string& payload) {
    send_tasks({std::move(lease)}, {payload});
  }

  /* Outcomes from DONE messages, with their payloads, in arrival order. */
  struct Done {
    wire::Outcome outcome;
    std::string payload;
    std::chrono::steady_clock::time_point at;
  };
  std::optional<Done> next_outcome(std::chrono::milliseconds timeout = 30s * kSlow) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (outcomes_.empty()) {
      auto m = next(Command::kDone, left(deadline));
      if (!m) return std::nullopt;
      auto done = decode<wire::DoneBatch>(*m, drops_, "worker");
      if (!done) continue;
      for (std::size_t i = 0; i < done->outcomes.size(); ++i) {
        outcomes_.push_back(Done{done->outcomes[i], std::string(view(m->payloads.at(i))),
                                 std::chrono::steady_clock::now()});
      }
    }
    auto d = std::move(outcomes_.front());
    outcomes_.pop_front();
    return d;
  }

  /* The next HEARTBEAT for which `wanted` holds. */
  std::optional<wire::Heartbeat> next_heartbeat(
      const std::function<bool(const wire::Heartbeat&)>& wanted,
      std::chrono::milliseconds timeout = 10s * kSlow) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto m = next(Command::kHeartbeat, left(deadline));
      if (!m) return std::nullopt;
      auto hb = decode<wire::Heartbeat>(*m, drops_, "worker");
      if (hb && wanted(*hb)) return hb;
    }
  }
  /* The next HEARTBEAT that says the worker drains. */
  std::optional<wire::Heartbeat> next_draining_heartbeat(
      std::chrono::milliseconds timeout = 10s * kSlow) {
    return next_heartbeat([](const wire::Heartbeat& hb) { return hb.draining; }, timeout);
  }

  bool wait_disconnect(std::chrono::milliseconds timeout) {
    return next(Command::kDisconnect, timeout).has_value();
  }

  /* The oldest message with `command` received so far or within `timeout`; the others are
   * kept for later (heartbeats, which keep coming, are dropped unless asked for). */
  std::optional<Message> next(Command command, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
        if (it->command != command) continue;
        Message m = std::move(*it);
        inbox_.erase(it);
        return m;
      }
      if (left(deadline).count() <= 0) return std::nullopt;
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      dpool::poll(&item, 1, std::min(left(deadline), std::chrono::milliseconds(100)));
      while (auto m = read_message(socket_, true, drops_)) {
        worker_ = identity_of(*m);
        if (m->command == Command::kHeartbeat && command != Command::kHeartbeat) continue;
        inbox_.push_back(std::move(*m));
      }
    }
  }

 private:
  static std::chrono::milliseconds left(std::chrono::steady_clock::time_point deadline) {
    return std::max(0ms, std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now()));
  }

  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string endpoint_;
  std::string worker_;
  std::uint64_t seq_ = 0;
  std::optional<wire::Ready> ready_;
  std::deque<Message> inbox_;
  std::deque<Done> outcomes_;
  DropCounters drops_;
};

/* A payload (a task's return value) as a T. */
template <class T>
T unpack_as(const std::string& bytes) {
  auto handle = msgpack::unpack(bytes.data(), bytes.size());
  return handle.get().as<T>();
}

inline wire::Lease lease(std::uint64_t task, const std::string& function,
                         std::uint64_t timeout_ms = 0, std::uint32_t items = 0) {
  return wire::Lease{task, 1, function, items, timeout_ms};
}

/* A worker host on a FakeBroker, registered. */
struct Host {
  FakeBroker broker;
  Process worker;
  int processes;
  explicit Host(int count, std::vector<std::string> extra = {}) : processes(count) {
    worker = start_limits_worker(broker.endpoint(), count, std::move(extra));
    EXPECT_TRUE(broker.wait_ready()) << worker.log();
  }
};


}  // namespace dpool::test
