/* The task ledger: every task the broker holds, its state, and the queues it waits in.
 *
 * A task lives here from SUBMIT until its outcome is known; then its result moves to the
 * client's session (peers.hpp) until the client acknowledges it. All state changes go
 * through Ledger::apply(), the one transition function; docs/protocol.md has the table:
 *
 *   queued  --lease-->          leased      (attempt + 1)
 *   leased  --finish-->         (removed; result to client)
 *   leased  --worker_lost-->    queued      (lost + 1, at the front) | removed when lost == max
 *   leased  --lost_in_transit-> queued      (not charged: the lease never reached the worker)
 *   leased  --retry-->          delayed     (queued at the front once its retry delay passes)
 *   any     --drop-->           (removed: its client is gone, it was cancelled or it expired)
 *
 * Queues are per route: a function together with the tags a worker must have to run it
 * (`needs`); the route of a function with no needs has the id function_id(name) returns.
 * Inside a route, tasks wait by priority (0..9, higher first) and inside a priority per
 * client, served round-robin, so that one client's million tasks do not hold back another
 * client's ten. Low priorities do not starve: a priority level that has tasks waiting but
 * has not been served for k × `aging` competes as if it were k levels higher (a level served
 * resets its clock). Keys of tasks that left a queue by another path (drop) are skipped
 * lazily when popped.
 *
 * Time comes in through advance(now): it moves delayed retries whose time has come into
 * their queues and returns the queued tasks whose start deadline (expires) has passed.
 *
 * Memory: a queued task costs its record (task.hpp: 64 bytes and a small payload, in one
 * allocation), a pointer's slot in the open-addressing set of records, and its key in its
 * client's queue; its owner (peers.hpp, jobs.hpp) adds one entry in a table of live ids.
 */
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <zmq.hpp>

#include "dpool/protocol.hpp"
#include "task.hpp"

namespace dpool::detail {

using Tags = std::map<std::string, std::string>;

inline constexpr std::uint8_t kPriorities = kMaxPriority + 1;

enum class TaskEvent : std::uint8_t { kLease, kFinish, kWorkerLost, kLostInTransit, kRetry, kDrop };

/* What apply() decided, for the caller to act on. */
enum class Transition : std::uint8_t {
  kLeased,     // now leased to the given worker
  kQueued,     // back in its queue
  kDelayed,    // waiting for its retry delay
  kRemoved,    // gone from the ledger (finished or dropped)
  kExhausted,  // lost its worker on every allowed attempt: removed, the caller reports it
  kRefused,    // the event does not apply to the task's state (a bug or a stale event)
};

class Ledger {
 public:
  explicit Ledger(std::chrono::milliseconds aging = std::chrono::seconds(10));

  /* Interns a function name: the id of its route with no needs, stable for the broker's life. */
  FunctionId function_id(const std::string& name);
  /* The route of `name` with `needs` (function_id(name) when needs is empty). */
  FunctionId route_id(const std::string& name, const Tags& needs);
  [[nodiscard]] const std::string& function_name(FunctionId id) const { return routes_[id].name; }
  [[nodiscard]] const Tags& needs(FunctionId id) const { return routes_[id].needs; }
  [[nodiscard]] FunctionId base_route(FunctionId id) const { return routes_[id].base; }
  [[nodiscard]] std::size_t function_count() const { return routes_.size(); }

  /* Adds a queued task and returns its key. `payload` is copied into the task's record when
   * small and kept when large (task.hpp). `expires_at` (steady-clock ms, 0: never) is when it
   * fails unless leased by then. */
  TaskKey add(PeerHandle client, std::uint64_t client_id, FunctionId route,
              std::uint32_t max_attempts, zmq::message_t payload, std::uint32_t items = 0,
              std::uint8_t priority = kDefaultPriority, std::int64_t expires_at = 0);

  [[nodiscard]] Task* find(TaskKey key);

  /* Leases the next queued task of `route` (highest priority after aging, then fair between
   * clients) to `worker`; nullptr when none is queued. */
  Task* lease_next(FunctionId route, PeerHandle worker);
  /* The priority, after aging, that the next task of `route` competes with; -1 when empty. */
  [[nodiscard]] double urgency(FunctionId route) const;
  [[nodiscard]] std::size_t queued(FunctionId route) const { return routes_[route].size; }
  [[nodiscard]] std::size_t delayed(FunctionId route) const { return routes_[route].delayed; }
  /* How long the longest-waiting non-empty priority level of `route` has gone unserved. */
  [[nodiscard]] std::int64_t unserved_ms(FunctionId route) const;
  [[nodiscard]] std::size_t queued_total() const { return queued_total_; }
  [[nodiscard]] std::size_t size() const { return tasks_.size(); }

  /* The one transition function (see the table above). For kLease, `worker` says where the
   * lease went; for kRetry, `delay_ms` how long it waits. kRemoved and kExhausted erase the
   * task: read it before. */
  Transition apply(Task& task, TaskEvent event, PeerHandle worker = 0, std::int64_t delay_ms = 0);

  /* Sets the time (steady-clock ms) that queueing, aging and retry delays count from. */
  void set_now(std::int64_t now_ms) { now_ms_ = std::max(now_ms_, now_ms); }
  /* Moves time to `now_ms` (steady clock): due retries join their queues; returns the keys of
   * queued tasks never leased whose deadline has passed (still in the ledger: drop them). */
  std::vector<TaskKey> advance(std::int64_t now_ms);
  /* When advance() next has something to do (steady-clock ms), or 0 when nothing waits. */
  [[nodiscard]] std::int64_t next_due() const;

  /* Gives back the table space of tasks that are gone (after a burst; costs O(tasks)). */
  void compact() { shrink_if_sparse(tasks_); }

 private:
  struct Level {
    absl::flat_hash_map<PeerHandle, std::deque<TaskKey>> by_client;
    std::deque<PeerHandle> ring;  // clients with queued tasks, served in turn
    std::size_t size = 0;         // live queued tasks (the deques may also hold dropped keys)
    std::int64_t since = 0;       // last served, or became non-empty
  };
  struct Route {
    std::string name;
    Tags needs;
    FunctionId base = 0;
    std::array<Level, kPriorities> levels;
    std::size_t size = 0;
    std::size_t delayed = 0;
  };
  using Due = std::pair<std::int64_t, TaskKey>;
  using DueHeap = std::priority_queue<Due, std::vector<Due>, std::greater<>>;

  FunctionId new_route(const std::string& name, const Tags& needs, FunctionId base);
  void enqueue(Task& task, bool front);
  void unqueue(Task& task);
  void forget(Task& task);
  Task* pop(FunctionId route);
  [[nodiscard]] int best_level(const Route& r) const;

  TaskSet tasks_;
  std::vector<Route> routes_;
  absl::flat_hash_map<std::string, FunctionId> function_ids_;
  std::map<std::pair<FunctionId, Tags>, FunctionId> tagged_routes_;
  // Keys start at a random point so that an outcome for a task of an earlier broker instance
  // (still running on a worker when the broker restarted) cannot match a task of this one.
  TaskKey next_key_;
  std::size_t queued_total_ = 0;
  std::int64_t aging_ms_;
  std::int64_t now_ms_ = 0;
  DueHeap retry_at_;
  DueHeap expires_at_;
};

}  // namespace dpool::detail
