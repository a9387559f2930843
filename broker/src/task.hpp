/* One task as the broker holds it: a compact record with its payload in the same allocation.
 *
 * A broker may hold millions of queued tasks, so the record is what a queued task costs beside
 * its arguments. Three choices keep it small:
 *   - a small payload (most are tens of bytes) is copied into the record's own allocation, and
 *     the frame sent with each lease is built from it. Holding the frame ZeroMQ received
 *     instead would keep alive the whole receive buffer it points into (ZeroMQ reads up to
 *     8 KiB of frames into one shared, reference-counted buffer of about 18 KiB), plus a
 *     64-byte zmq::message_t. A large payload arrived in an allocation of its own: it is kept
 *     as that frame, after the record, and shared (zmq_msg_copy) with every lease, never copied;
 *   - what a lease needs only while it is out (its TASK seq, when it was sent) is kept by the
 *     worker's lease table (peers.hpp), and what few tasks need (time limits, retry budgets,
 *     the history of failed attempts) in TaskExtra, allocated on first use;
 *   - the ledger indexes the records in an open-addressing set of pointers, looked up by key
 *     (TaskKeyHash, TaskKeyEq), instead of a node-based map whose nodes would hold the records.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <absl/container/flat_hash_set.h>
#include <absl/hash/hash.h>
#include <zmq.hpp>

#include "dpool/protocol.hpp"

namespace dpool::detail {

using TaskKey = std::uint64_t;
using PeerHandle = std::uint32_t;   // a client or worker, as numbered by the broker
using FunctionId = std::uint32_t;   // a route: a function name and the tags it needs

enum class TaskState : std::uint8_t { kQueued, kLeased, kDelayed };

/* Payloads up to this size are copied into the task's record; larger ones are shared. It is
 * ZeroMQ's receive batch (ZMQ_IN_BATCH_SIZE): frames that fit in it may point into a shared
 * receive buffer, larger ones never do. */
inline constexpr std::size_t kInlinePayload = 8192;

/* What only some tasks need: a time limit, retry budgets, the record of failed attempts.
 * Kept apart so that the common task stays small (a million may be queued). */
struct TaskExtra {
  std::uint64_t timeout_ms = 0;
  std::uint32_t retries = 0;          // budget for attempts that threw
  std::uint32_t timeout_retries = 0;  // budget for attempts that timed out
  std::uint32_t errors = 0;           // attempts that threw so far
  std::uint32_t timeouts = 0;         // attempts that timed out so far
  std::uint64_t retry_delay_ms = 0;
  double retry_backoff = 2.0;
  std::vector<wire::Attempt> history;
};

class Task;
struct TaskFree {
  void operator()(Task* task) const noexcept;
};
/* The owner of a task record (records have a variable size: only Task::make creates them). */
using TaskPtr = std::unique_ptr<Task, TaskFree>;

class Task {
 public:
  TaskKey key = 0;
  std::uint64_t client_id = 0;
  std::unique_ptr<TaskExtra> extra;
  PeerHandle client = 0;
  FunctionId function = 0;        // its route
  std::uint32_t attempt = 0;      // leases so far
  std::uint32_t lost = 0;         // leases that ended with the worker dying
  std::uint32_t max_attempts = 0;
  std::uint32_t items = 0;        // > 0: a chunk of that many calls
  std::uint32_t queue = 0;        // index of its named queue in the broker (0: none)
  PeerHandle worker = 0;          // while leased
  TaskState state = TaskState::kQueued;
  std::uint8_t priority = kDefaultPriority;
  bool cancel_requested = false;  // its client cancelled it while leased

  /* A new record holding `payload` (copied when small, kept when large). Throws bad_alloc. */
  [[nodiscard]] static TaskPtr make(zmq::message_t payload);

  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  TaskExtra& more() {
    if (!extra) extra = std::make_unique<TaskExtra>();
    return *extra;
  }
  /* The payload's bytes, valid while the task lives. */
  [[nodiscard]] std::string_view payload() const noexcept;
  /* The payload as a frame for a TASK message: a copy of a small one, a share of a large one. */
  [[nodiscard]] zmq::message_t frame();

 private:
  friend struct TaskFree;
  Task() = default;
  ~Task() = default;
  [[nodiscard]] std::byte* tail() noexcept {
    return reinterpret_cast<std::byte*>(this) + sizeof(Task);
  }
  [[nodiscard]] const std::byte* tail() const noexcept {
    return reinterpret_cast<const std::byte*>(this) + sizeof(Task);
  }
  [[nodiscard]] bool is_shared() const noexcept { return size_ == kShared; }
  [[nodiscard]] zmq::message_t& shared() noexcept;
  [[nodiscard]] const zmq::message_t& shared() const noexcept;

  static constexpr std::uint32_t kShared = UINT32_MAX;
  std::uint32_t size_ = 0;  // of a payload in the tail; kShared: the tail holds a zmq::message_t
};

/* Hash and equality of task records by key, so that a set of records is looked up by key. */
struct TaskKeyHash {
  using is_transparent = void;
  std::size_t operator()(TaskKey key) const noexcept { return absl::Hash<TaskKey>{}(key); }
  std::size_t operator()(const TaskPtr& task) const noexcept { return (*this)(task->key); }
};
struct TaskKeyEq {
  using is_transparent = void;
  bool operator()(const TaskPtr& a, const TaskPtr& b) const noexcept { return a->key == b->key; }
  bool operator()(const TaskPtr& a, TaskKey b) const noexcept { return a->key == b; }
  bool operator()(TaskKey a, const TaskPtr& b) const noexcept { return a == b->key; }
};
using TaskSet = absl::flat_hash_set<TaskPtr, TaskKeyHash, TaskKeyEq>;

/* Open-addressing tables keep the capacity of their fullest moment: after a burst has drained
 * (a million tasks queued, then run), one that is mostly empty is rebuilt at its size. */
template <class Table>
void shrink_if_sparse(Table& table) {
  if (table.size() * 4 < table.capacity()) table.rehash(0);
}

}  // namespace dpool::detail
