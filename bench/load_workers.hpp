/* Simulated worker hosts for the load test (bench/load_test.cpp): many DEALER sockets in one
 * process, each speaking the worker side of the wire protocol (docs/protocol.md, section 4.2)
 * with no supervisor and no child behind it.
 *
 * Why simulated: a thousand real worker hosts would be a thousand supervisors, zygotes and
 * children on a 2-core machine, and the test would measure the machine's scheduler instead of
 * the broker. What the broker sees is the same: READY, TASK batches answered by DONE with one
 * correct outcome each, HEARTBEATs carrying last_seq and held, DISCONNECT at the end.
 *
 * Why epoll and not zmq_poll: zmq_poll over hundreds of sockets asks each socket for its
 * events on every call, so the simulator would spend more CPU than the broker it measures. Each
 * thread instead waits on the sockets' ZMQ_FDs with epoll and, since those only signal that
 * something changed, drains a socket until it says it has nothing left (ZMQ_EVENTS), revisiting it
 * later if it was cut short.
 *
 * One worker can be made to die (kill_one): from then on it sends nothing at all, neither
 * outcomes nor heartbeats, but keeps its connection and keeps reading, so it knows every lease
 * the broker holds out to it. Every lease with attempt > 1 that any other worker receives is
 * logged with its arrival time; death() matches the two to tell when the broker gave the dead
 * worker's tasks to others.
 */
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"

namespace bench::load {

struct SimConfig {
  std::string broker;
  std::size_t workers = 1000;
  std::size_t threads = 2;    // each owns workers / threads sockets
  std::uint32_t credit = 10;  // READY credit of each worker
  std::chrono::milliseconds heartbeat{1000};
  std::string function = "square";
};

/* What happened to the worker made to die. Times are empty until they happened. */
struct DeathReport {
  std::string host;                       // as READY named it (and `dpool status` lists it)
  std::optional<Clock::time_point> died;  // its last message to the broker
  std::size_t leases = 0;                 // leases it held, unanswered, once dead
  std::size_t relet = 0;                  // of those, how many another worker received
  std::optional<Clock::time_point> first_relet, last_relet;
};

/* Counters over all simulated workers. */
struct SimCounters {
  std::uint64_t executed = 0;      // outcomes sent
  std::uint64_t malformed = 0;     // broker messages that did not decode, or bad payloads
  std::uint64_t reregistered = 0;  // READYs sent again after the broker's DISCONNECT
};

class SimWorkers {
 public:
  /* Creates every socket (connecting in the background) and starts the threads. Throws
   * std::runtime_error if the sockets cannot be made (file descriptors, ZMQ_MAX_SOCKETS). */
  explicit SimWorkers(SimConfig config);
  /* Stops the threads, sends DISCONNECT from every live worker, closes everything. */
  ~SimWorkers();
  SimWorkers(const SimWorkers&) = delete;
  SimWorkers& operator=(const SimWorkers&) = delete;

  /* Makes one worker (the first) go silent with its leases; returns at once. */
  void kill_one();
  [[nodiscard]] DeathReport death() const;
  [[nodiscard]] SimCounters counters() const;

  struct Shared;  // state the threads share (load_workers.cpp)

 private:
  SimConfig config_;
  std::unique_ptr<Shared> shared_;
  std::vector<std::thread> threads_;
};

}  // namespace bench::load
