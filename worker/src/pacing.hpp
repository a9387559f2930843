/* How much work a worker host takes ahead: its credit with the broker and the depth of each
 * child's queue.
 *
 * A fixed prefetch is wrong at both ends. For tasks of a few microseconds, a queue of three per
 * process drains faster than the next TASK can arrive, so every task pays a full round trip
 * through broker, supervisor and child (W1 in bench/: 17,000 tasks/s at prefetch 2 against
 * 210,000 at 500). For tasks of seconds, a deep queue strands work on one host while another
 * idles. So the depth is measured in time, not in tasks: each process holds about
 * kPrefetchWork of work (at least 1 + prefetch tasks, at most kMaxDepth), from a moving average
 * of how long recent tasks ran. Tasks of 1 ms or more keep the configured prefetch exactly;
 * prefetch 0 means no task ever waits on this host, and turns the adaptation off.
 *
 * The cost of holding more: a host holds up to kPrefetchWork per process of tasks that a later
 * higher-priority task cannot overtake, and that another host cannot take over.
 */
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace dpool::detail {

class Pacing {
 public:
  static constexpr double kPrefetchWorkMicros = 2000;  // kPrefetchWork: work held per process
  static constexpr std::uint32_t kMaxDepth = 1000;    // tasks held per process at most

  Pacing(std::uint32_t processes, std::uint32_t prefetch)
      : processes_(processes), prefetch_(prefetch) {}

  /* One task's run time in its process (0: not measured, ignored). */
  void observe(std::uint32_t micros) {
    if (micros == 0) return;
    // Recent tasks weigh most; a single slow one moves the mean a fifth of the way at once.
    mean_micros_ = mean_micros_ == 0 ? micros : mean_micros_ + 0.2 * (micros - mean_micros_);
  }

  /* The moving mean of recent tasks' run time; 0 before any was measured. */
  [[nodiscard]] double mean_micros() const { return mean_micros_; }
  /* Tasks one process holds, running and queued. */
  [[nodiscard]] std::uint32_t depth() const {
    const std::uint32_t floor = 1 + prefetch_;
    if (prefetch_ == 0 || mean_micros_ == 0) return floor;
    const double by_time = kPrefetchWorkMicros / mean_micros_;
    if (by_time <= floor) return floor;
    return static_cast<std::uint32_t>(std::min<double>(by_time, std::max(kMaxDepth, floor)));
  }

  /* Leases the broker may hold out to this host. */
  [[nodiscard]] std::uint32_t credit() const { return processes_ * depth(); }

  /* True when `credit()` has moved far enough from `announced` to be worth telling the broker:
   * by a quarter either way, so that jitter in task times sends nothing. */
  [[nodiscard]] bool worth_announcing(std::uint32_t announced) const {
    const auto now = credit();
    return now * 4 > announced * 5 || now * 5 < announced * 4;
  }

 private:
  std::uint32_t processes_;
  std::uint32_t prefetch_;
  double mean_micros_ = 0;
};

}  // namespace dpool::detail
