/* The child side of a worker host: receives leases from the supervisor over its link
 * (link.hpp), runs them one at a time in order, and sends outcomes back (see executor.cpp). */
#pragma once

#include <cstdint>
#include <functional>

#include "slots.hpp"

namespace dpool::detail {

struct ExecutorSetup {
  int link = -1;                          // this child's end of its link to the supervisor
  SlotState* slot;                        // shared with the supervisor: the task being run
  std::function<void()> initializer;
  int parent = 0;                         // the supervisor's pid
};

/* Runs in a freshly forked child; never returns. Exits 0 when the supervisor says DISCONNECT. */
[[noreturn]] void run_executor(const ExecutorSetup& setup);

}  // namespace dpool::detail
