/* The work the benchmark's tasks do, in one place, so that dpool's bench worker and the raw
 * ZeroMQ baseline's worker run exactly the same code and differ only in how the task got to
 * them. The Python peer (python_pool.py) mirrors these by hand.
 *
 *   square(x)      x * x: no work at all, so W1 measures the path and nothing else;
 *   spin_10ms(x)   10 ms of this thread's CPU, returns x: W3's CPU-bound task;
 *   echo_bytes(b)  returns its argument: W5's and W6's payloads.
 */
#pragma once

#include <chrono>
#include <cstdint>

#include "common.hpp"

namespace bench {

inline constexpr std::chrono::microseconds kSpinCpu{10'000};

inline std::int64_t square(std::int64_t x) { return x * x; }

inline std::int64_t spin_10ms(std::int64_t x) {
  spin_cpu(kSpinCpu);
  return x;
}

}  // namespace bench
