/* The load test's judges (bench/load_test.cpp): the Checker, which holds one flag per task
 * and decides whether every result arrived exactly once and was right, and the DeathWatch,
 * which makes one simulated worker die and times how long the broker takes to notice.
 *
 * Kept apart from the driver so that what counts as a failure is written down in one place:
 * a missing, repeated, failed or wrong result; a malformed message from the broker; a dead
 * worker whose leases were not all given to others, or that `dpool status` kept listing.
 * Times are reported, never judged: the machine is shared and a slow run is not a wrong one.
 */
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <dpool/client.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "load_workers.hpp"

namespace bench::load {

class Checker {
 public:
  explicit Checker(std::uint64_t tasks) : seen_(tasks, 0) {}

  /* Task `i`'s completion (on its client's I/O thread; tasks of one client are on one thread,
   * and clients own disjoint ranges of i). Expects `square(i)`. Ignored once closed. */
  void take(std::uint64_t i, dpool::TaskResult&& r);
  /* Records a failure that is not one result's (a timeout, a dead worker unnoticed). */
  void problem(std::string what);
  /* From now on completions are ignored (destroying a Client completes its leftovers). */
  void close() { closed_.store(true); }

  [[nodiscard]] std::uint64_t done() const { return done_.load(); }

  /* Prints the check's RESULT line; call after close() and after the clients are gone. */
  void report(const std::string& id, const SimCounters& sims,
              const std::optional<dpool::wire::Report>& broker);
  /* 0 when every check passed; 1 otherwise, with every reason on stderr. */
  [[nodiscard]] int verdict() const;
  [[nodiscard]] bool passed() const;

 private:
  void note(std::string what);

  std::vector<std::uint8_t> seen_;
  std::atomic<bool> closed_{false};
  std::atomic<std::uint64_t> done_{0}, wrong_{0}, failed_{0}, twice_{0}, retried_{0};
  std::uint64_t missing_ = 0;
  mutable std::mutex mutex_;
  std::vector<std::string> problems_;  // the first few, for the log
  std::uint64_t problem_count_ = 0;
};

class DeathWatch {
 public:
  DeathWatch(SimWorkers& sims, dpool::Client& probe, Clock::time_point deadline)
      : sims_(sims), probe_(probe), deadline_(deadline) {}
  ~DeathWatch() { finish(); }
  DeathWatch(const DeathWatch&) = delete;
  DeathWatch& operator=(const DeathWatch&) = delete;

  /* The first call makes one worker die and starts timing; later calls do nothing. */
  void start();
  /* Waits for the watch to end (it is bounded by the deadline). */
  void finish();
  /* Prints the dead-worker RESULT line and tells `check` what went wrong, if `expected`. */
  void report(const std::string& id, std::chrono::milliseconds interval,
              std::chrono::milliseconds expiry, bool expected, Checker& check);

 private:
  void watch();
  bool victim_listed();

  SimWorkers& sims_;
  dpool::Client& probe_;
  const Clock::time_point deadline_;
  std::thread thread_;
  bool started_ = false;
  std::optional<Clock::time_point> gone_;  // the STATUS answer that first left it out
  double status_ms_ = 0;                   // that STATUS's round trip
  std::string error_;
};

/* The broker's REPORT now (nothing if it does not answer within 10 s). */
[[nodiscard]] std::optional<dpool::wire::Report> final_status(dpool::Client& probe);

}  // namespace bench::load
