/* Memory shared between the supervisor and its children: one SlotState per child slot.
 *
 * A child says what it is doing by storing into its slot, without a message: the supervisor
 * must know which task a child was running when it died (that task alone is charged), and
 * when the current call began, to enforce a time limit on a child too busy to answer. The
 * mapping is anonymous and shared, made before the zygote is forked, so every child forked
 * later sees the same pages.
 *
 * Ordering: the child stores the start time before the task key, and the supervisor loads the
 * key before the time; so a supervisor that sees key K sees K's start time or a later one (a
 * later item of the same chunk), never an earlier task's, and an elapsed time it computes is
 * never too long.
 *
 * `hold` stops a child from starting anything more (the host drains, or the child is to be
 * replaced). The child stores the task key, then loads `hold`; the supervisor stores `hold`,
 * then loads the key; all four sequentially consistent. So either the supervisor sees the task
 * the child starts, or the child sees `hold` and does not start it: the tasks queued behind
 * the one the supervisor sees running will never start, and can be handed back at once.
 *
 * `skip` hands tasks queued behind a busy child's running one to an idle child
 * (Supervisor::take_over), by the same four steps. It holds a range of the indexes a child
 * gives the tasks it receives, counted from 0 since it started (mod 2^32). The supervisor
 * stores the range, then loads `task`; the child stores `task`, then loads `skip`, and does not
 * start a task whose index is in it. A child runs its queue in order, so when the supervisor
 * sees it running a task received before the range, the child will skip every task in it.
 * The range only ever grows toward earlier tasks while tasks in it are still queued, so a new
 * one still covers those taken before.
 */
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "dpool/util.hpp"

namespace dpool::detail {

/* Task indexes wrap at 2^32 (a child may live through more tasks): compared by distance. */
[[nodiscard]] constexpr bool in_range(std::uint32_t index, std::uint32_t from,
                                      std::uint32_t to) noexcept {
  return static_cast<std::uint32_t>(index - from) < static_cast<std::uint32_t>(to - from);
}
[[nodiscard]] constexpr bool precedes(std::uint32_t a, std::uint32_t b) noexcept {
  return static_cast<std::int32_t>(a - b) < 0;
}

struct SlotState {
  std::atomic<std::uint64_t> task{0};          // the running task's key; 0: none
  std::atomic<std::int64_t> call_started{
      0};  // steady clock (ns) when the current call began; 0: between calls
  std::atomic<std::uint32_t> item{0};          // in a chunk: the current item, from 0
  std::atomic<std::uint32_t> hold{0};          // set by the supervisor: start no more tasks
  std::atomic<std::uint64_t> skip{0};          // set by the supervisor: [from, to) not to start

  /* The child, as a call begins and ends. */
  void begin_call(std::uint32_t chunk_item = 0, Clock::time_point now = Clock::now()) noexcept {
    item.store(chunk_item, std::memory_order_relaxed);
    call_started.store(now.time_since_epoch().count(), std::memory_order_release);
  }
  void end_call() noexcept { call_started.store(0, std::memory_order_release); }
  /* The child, once a task is over or was not started after all. */
  void end_task() noexcept {
    task.store(0);
    end_call();
  }

  /* The supervisor, handing tasks to another child; the child, before it starts its
   * `index`th task. */
  void set_skip(std::uint32_t from, std::uint32_t to) noexcept {
    skip.store((std::uint64_t{from} << 32) | to);
  }
  [[nodiscard]] bool skips(std::uint32_t index) const noexcept {
    const auto range = skip.load();
    return in_range(index, static_cast<std::uint32_t>(range >> 32),
                    static_cast<std::uint32_t>(range));
  }
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<std::int64_t>::is_always_lock_free,
              "slots are shared between processes: their atomics must not hide a lock");
static_assert(std::is_same_v<Clock::duration, std::chrono::nanoseconds>);

class SharedSlots {
 public:
  explicit SharedSlots(std::size_t n);
  ~SharedSlots();
  SharedSlots(const SharedSlots&) = delete;
  SharedSlots& operator=(const SharedSlots&) = delete;
  // Const for the supervisor's readers too: the slots belong to the children.
  SlotState& operator[](std::size_t i) const { return slots_[i]; }

 private:
  SlotState* slots_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace dpool::detail
