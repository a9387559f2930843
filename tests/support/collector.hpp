/* Test support: collects task outcomes from a dpool::Client and counts how often each task's
 * completion ran, so a test can assert "every result, exactly once". */
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "dpool/client.hpp"
#include "support/process.hpp"

namespace dpool::test {

class Collector {
 public:
  explicit Collector(std::size_t n) : calls_(n), results_(n) {}

  /* A completion for task number `index`. */
  Completion slot(std::size_t index) {
    return [this, index](TaskResult&& r) {
      std::lock_guard lock(mutex_);
      ++calls_[index];
      results_[index] = std::move(r);
      done_.fetch_add(1);
    };
  }
  [[nodiscard]] std::size_t done() const { return done_.load(); }
  bool wait_all(std::chrono::milliseconds timeout) {
    return wait_for([this] { return done_.load() >= calls_.size(); }, timeout);
  }
  /* Completions that ran other than exactly once. */
  [[nodiscard]] std::size_t not_exactly_once() {
    std::lock_guard lock(mutex_);
    std::size_t bad = 0;
    for (auto c : calls_) bad += c != 1;
    return bad;
  }
  TaskResult& result(std::size_t i) { return results_[i]; }

 private:
  std::mutex mutex_;
  std::vector<int> calls_;
  std::vector<TaskResult> results_;
  std::atomic<std::size_t> done_{0};
};

/* A client config for tests: fast heartbeats, given broker. */
inline ClientConfig client_config(const std::string& endpoint,
                                  std::chrono::milliseconds hb = 200ms) {
  ClientConfig c;
  c.broker = endpoint;
  c.heartbeat.interval = hb;
  return c;
}

}  // namespace dpool::test
