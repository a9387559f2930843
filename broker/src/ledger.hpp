/* The task ledger: every task the broker holds, its state, and the per-function queues.
 *
 * A task lives here from SUBMIT until its outcome is known; then its result moves to the
 * client's session (peers.hpp) until the client acknowledges it. All state changes go
 * through Ledger::apply(), the one transition function; docs/protocol.md has the table:
 *
 *   queued  --lease-->          leased      (attempt + 1)
 *   leased  --finish-->         (removed; result to client)
 *   leased  --worker_lost-->    queued      (lost + 1, at the front) | removed when lost == max
 *   leased  --lost_in_transit-> queued      (not charged: the lease never reached the worker)
 *   queued, leased --drop-->    (removed: its client is gone)
 *
 * Queues are per function, and inside a function per client, served round-robin so that one
 * client's million tasks do not hold back another client's ten. Keys of tasks that left the
 * queue by another path (drop) are skipped lazily when popped.
 */
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

namespace dpool::detail {

using TaskKey = std::uint64_t;
using PeerHandle = std::uint32_t;   // a client or worker, as numbered by the broker
using FunctionId = std::uint32_t;

enum class TaskState : std::uint8_t { kQueued, kLeased };

enum class TaskEvent : std::uint8_t { kLease, kFinish, kWorkerLost, kLostInTransit, kDrop };

struct Task {
  TaskKey key = 0;
  PeerHandle client = 0;
  std::uint64_t client_id = 0;
  FunctionId function = 0;
  TaskState state = TaskState::kQueued;
  std::uint32_t attempt = 0;      // leases so far
  std::uint32_t lost = 0;         // leases that ended with the worker dying
  std::uint32_t max_attempts = 0;
  std::uint32_t items = 0;        // > 0: a chunk of that many calls
  bool cancel_requested = false;  // its client cancelled it while leased
  std::uint32_t queue = 0;        // index of its named queue in the broker (0: none)
  PeerHandle worker = 0;          // while leased
  std::uint64_t seq = 0;          // the TaskBatch seq that carried the lease
  std::int64_t leased_at = 0;     // steady-clock milliseconds when the lease was sent
  zmq::message_t payload;
};

/* What apply() decided, for the caller to act on. */
enum class Transition : std::uint8_t {
  kLeased,     // now leased to the given worker
  kQueued,     // back in its queue
  kRemoved,    // gone from the ledger (finished or dropped)
  kExhausted,  // lost its worker on every allowed attempt: removed, the caller reports it
  kRefused,    // the event does not apply to the task's state (a bug or a stale event)
};

class Ledger {
 public:
  Ledger();
  /* Interns a function name; the id is stable for the broker's life. */
  FunctionId function_id(const std::string& name);
  [[nodiscard]] const std::string& function_name(FunctionId id) const { return functions_[id].name; }
  [[nodiscard]] std::size_t function_count() const { return functions_.size(); }

  /* Adds a queued task and returns its key. */
  TaskKey add(PeerHandle client, std::uint64_t client_id, FunctionId function,
              std::uint32_t max_attempts, zmq::message_t payload, std::uint32_t items = 0);

  [[nodiscard]] Task* find(TaskKey key);

  /* Leases the next queued task of `function` (fair between clients) to `worker` in batch
   * `seq`; nullptr when none is queued. */
  Task* lease_next(FunctionId function, PeerHandle worker, std::uint64_t seq);
  [[nodiscard]] std::size_t queued(FunctionId function) const { return functions_[function].size; }
  [[nodiscard]] std::size_t queued_total() const { return queued_total_; }
  [[nodiscard]] std::size_t size() const { return tasks_.size(); }

  /* The one transition function (see the table above). For kLease, `worker` and `seq` say
   * where the lease went. kRemoved and kExhausted erase the task: read it before. */
  Transition apply(Task& task, TaskEvent event, PeerHandle worker = 0, std::uint64_t seq = 0);

 private:
  struct Queue {
    std::string name;
    std::unordered_map<PeerHandle, std::deque<TaskKey>> by_client;
    std::deque<PeerHandle> ring;  // clients with queued tasks, served in turn
    std::size_t size = 0;         // live queued tasks (the deques may also hold dropped keys)
  };
  void enqueue(Task& task, bool front);
  Task* pop(FunctionId function);

  std::unordered_map<TaskKey, Task> tasks_;
  std::vector<Queue> functions_;
  std::unordered_map<std::string, FunctionId> function_ids_;
  // Keys start at a random point so that an outcome for a task of an earlier broker instance
  // (still running on a worker when the broker restarted) cannot match a task of this one.
  TaskKey next_key_;
  std::size_t queued_total_ = 0;
};

}  // namespace dpool::detail
