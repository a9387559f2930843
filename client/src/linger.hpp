/* When the client's I/O thread waits a little before it blocks.
 *
 * One task at a time (W2 in bench/), the caller submits its next task a few microseconds
 * after the I/O thread completed the last one's result. If the thread is blocked in poll by
 * then, the submit costs an eventfd write and a wake-up of the thread, and on a virtual
 * machine the wake-up of an idle CPU is the slow part (futures.hpp says the same of get()).
 * So after completing results the thread lingers, yielding, until news comes or its budget
 * runs out: twice the recent gap between completing results and the next submit, plus 20 us,
 * never past kMaxLinger, and nothing while those gaps are longer than that (a caller that
 * awaits a whole map, or does work between tasks). A linger that fails pays both the CPU and
 * the wake-up, which is why the budget follows what callers did recently.
 */
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <utility>

namespace dpool::detail {

class Linger {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::microseconds kMaxLinger{200};

  /* Results were completed now: the next submit's gap is measured from here. */
  void completed(Clock::time_point now) {
    completed_at_ = now;
    armed_ = true;
  }
  /* New tasks arrived from the caller now. */
  void submitted(Clock::time_point now) {
    if (completed_at_ == Clock::time_point{}) return;
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(now - completed_at_).count();
    // Capped so that one long pause is forgotten after a few quick submits.
    recent_us_ = (3 * recent_us_ + std::min<std::int64_t>(us, kForget)) / 4;
    completed_at_ = {};
  }
  /* How long to linger now (zero: block at once); once per completion. */
  [[nodiscard]] std::chrono::microseconds take_budget() {
    if (!std::exchange(armed_, false) || recent_us_ >= kMaxLinger.count())
      return std::chrono::microseconds(0);
    return std::min(kMaxLinger, std::chrono::microseconds(2 * recent_us_ + 20));
  }

 private:
  static constexpr std::int64_t kForget = 2000;  // us
  Clock::time_point completed_at_;
  std::int64_t recent_us_ = kMaxLinger.count();  // no lingering until a quick submit was seen
  bool armed_ = false;
};

}  // namespace dpool::detail
