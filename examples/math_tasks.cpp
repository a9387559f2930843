/* A plugin of task functions: build it as a shared library and load it into any worker with
 *   dpool-worker --plugin libdpool_math_tasks.so
 * It links nothing of dpool: its DPOOL_TASK registrations bind to the worker's own registry
 * when the worker loads it. */
#include <dpool/task.hpp>

#include <cstdint>
#include <string>

namespace {

std::int64_t square(std::int64_t x) { return x * x; }
DPOOL_TASK(square);

/* The CPU-bound countdown of the seeds, to feel a pool's speed-up. */
std::int64_t countdown(std::int64_t n) {
  volatile std::int64_t i = n;
  while (i > 0) i = i - 1;
  return n;
}
DPOOL_TASK(countdown);

}  // namespace
