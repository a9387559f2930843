/* The task ledger's transitions and fair queues (see ledger.hpp for the state table). */
#include "ledger.hpp"

#include <cassert>

#include "dpool/util.hpp"

namespace dpool::detail {

Ledger::Ledger() : next_key_((random_u64() >> 2) + 1) {}

FunctionId Ledger::function_id(const std::string& name) {
  if (auto it = function_ids_.find(name); it != function_ids_.end()) return it->second;
  const auto id = static_cast<FunctionId>(functions_.size());
  functions_.push_back(Queue{name, {}, {}, 0});
  function_ids_.emplace(name, id);
  return id;
}

TaskKey Ledger::add(PeerHandle client, std::uint64_t client_id, FunctionId function,
                    std::uint32_t max_attempts, zmq::message_t payload, std::uint32_t items) {
  const TaskKey key = next_key_++;
  Task& t = tasks_[key];
  t.key = key;
  t.client = client;
  t.client_id = client_id;
  t.function = function;
  t.max_attempts = max_attempts;
  t.items = items;
  t.payload = std::move(payload);
  enqueue(t, false);
  return key;
}

Task* Ledger::find(TaskKey key) {
  auto it = tasks_.find(key);
  return it == tasks_.end() ? nullptr : &it->second;
}

void Ledger::enqueue(Task& task, bool front) {
  task.state = TaskState::kQueued;
  Queue& q = functions_[task.function];
  auto& dq = q.by_client[task.client];
  if (dq.empty()) q.ring.push_back(task.client);
  if (front) dq.push_front(task.key);
  else dq.push_back(task.key);
  ++q.size;
  ++queued_total_;
}

Task* Ledger::pop(FunctionId function) {
  Queue& q = functions_[function];
  while (q.size > 0 && !q.ring.empty()) {
    const PeerHandle client = q.ring.front();
    q.ring.pop_front();
    auto it = q.by_client.find(client);
    assert(it != q.by_client.end());
    auto& dq = it->second;
    Task* found = nullptr;
    // Skip keys of tasks dropped while queued; take the first live one.
    while (!dq.empty() && !found) {
      Task* t = find(dq.front());
      dq.pop_front();
      if (t && t->state == TaskState::kQueued) found = t;
    }
    if (dq.empty()) q.by_client.erase(it);
    else q.ring.push_back(client);
    if (found) return found;
  }
  return nullptr;
}

Task* Ledger::lease_next(FunctionId function, PeerHandle worker, std::uint64_t seq) {
  Task* t = pop(function);
  if (t) apply(*t, TaskEvent::kLease, worker, seq);
  return t;
}

Transition Ledger::apply(Task& task, TaskEvent event, PeerHandle worker, std::uint64_t seq) {
  switch (event) {
    case TaskEvent::kLease:
      // pop() has already taken the key out of its queue.
      if (task.state != TaskState::kQueued) return Transition::kRefused;
      task.state = TaskState::kLeased;
      ++task.attempt;
      task.worker = worker;
      task.seq = seq;
      --functions_[task.function].size;
      --queued_total_;
      return Transition::kLeased;

    case TaskEvent::kFinish:
      if (task.state != TaskState::kLeased) return Transition::kRefused;
      tasks_.erase(task.key);
      return Transition::kRemoved;

    case TaskEvent::kWorkerLost:
      if (task.state != TaskState::kLeased) return Transition::kRefused;
      if (++task.lost >= task.max_attempts) {
        tasks_.erase(task.key);
        return Transition::kExhausted;
      }
      enqueue(task, true);  // it has waited already: first in line
      return Transition::kQueued;

    case TaskEvent::kLostInTransit:
      if (task.state != TaskState::kLeased) return Transition::kRefused;
      enqueue(task, true);
      return Transition::kQueued;

    case TaskEvent::kDrop:
      if (task.state == TaskState::kQueued) {
        --functions_[task.function].size;
        --queued_total_;
      }
      tasks_.erase(task.key);
      return Transition::kRemoved;
  }
  return Transition::kRefused;
}

}  // namespace dpool::detail
