/* Task records and their payloads (see task.hpp for why they are laid out this way).
 *
 * A record is one allocation: the Task, then either the payload's bytes or a zmq::message_t
 * holding a large payload. Its size is known only when it is made, so it is built with
 * placement new and ended by TaskFree, never by delete.
 */
#include "task.hpp"

#include <cstring>
#include <new>
#include <utility>

namespace dpool::detail {

// What a queued task costs beside its payload (docs/protocol.md, section 5) starts here.
static_assert(sizeof(Task) <= 64, "a queued task's record grew: see task.hpp");
static_assert(sizeof(Task) % alignof(zmq::message_t) == 0, "a shared payload follows the record");

TaskPtr Task::make(zmq::message_t payload) {
  const bool small = payload.size() <= kInlinePayload;
  const std::size_t tail = small ? payload.size() : sizeof(zmq::message_t);
  void* memory = ::operator new(sizeof(Task) + tail);
  TaskPtr task(new (memory) Task());
  if (small) {
    task->size_ = static_cast<std::uint32_t>(payload.size());
    if (!payload.empty()) std::memcpy(task->tail(), payload.data(), payload.size());
  } else {
    new (task->tail()) zmq::message_t(std::move(payload));
    task->size_ = kShared;
  }
  return task;
}

void TaskFree::operator()(Task* task) const noexcept {
  if (task->is_shared()) task->shared().~message_t();
  task->~Task();
  ::operator delete(task);
}

zmq::message_t& Task::shared() noexcept {
  return *std::launder(reinterpret_cast<zmq::message_t*>(tail()));
}

const zmq::message_t& Task::shared() const noexcept {
  return *std::launder(reinterpret_cast<const zmq::message_t*>(tail()));
}

std::string_view Task::payload() const noexcept {
  if (is_shared()) return {static_cast<const char*>(shared().data()), shared().size()};
  return {reinterpret_cast<const char*>(tail()), size_};
}

zmq::message_t Task::frame() {
  if (!is_shared()) return zmq::message_t(tail(), size_);
  zmq::message_t out;
  out.copy(shared());
  return out;
}

}  // namespace dpool::detail
