/* The task ledger's transitions, priority levels and fair queues (see ledger.hpp). */
#include "ledger.hpp"

#include <algorithm>
#include <cassert>

#include "dpool/util.hpp"

namespace dpool::detail {

Ledger::Ledger(std::chrono::milliseconds aging)
    : next_key_((random_u64() >> 2) + 1), aging_ms_(std::max<std::int64_t>(1, aging.count())) {}

FunctionId Ledger::new_route(const std::string& name, const Tags& needs, FunctionId base) {
  const auto id = static_cast<FunctionId>(routes_.size());
  routes_.emplace_back();
  routes_.back().name = name;
  routes_.back().needs = needs;
  routes_.back().base = base;
  return id;
}

FunctionId Ledger::function_id(const std::string& name) {
  if (auto it = function_ids_.find(name); it != function_ids_.end()) return it->second;
  // A function's own route (no needs) is its base.
  const auto id = new_route(name, {}, static_cast<FunctionId>(routes_.size()));
  function_ids_.emplace(name, id);
  return id;
}

FunctionId Ledger::route_id(const std::string& name, const Tags& needs) {
  const FunctionId base = function_id(name);
  if (needs.empty()) return base;
  auto [it, fresh] = tagged_routes_.try_emplace({base, needs}, 0);
  if (fresh) it->second = new_route(name, needs, base);
  return it->second;
}

TaskKey Ledger::add(PeerHandle client, std::uint64_t client_id, FunctionId route,
                    std::uint32_t max_attempts, zmq::message_t payload, std::uint32_t items,
                    std::uint8_t priority, std::int64_t expires_at) {
  const TaskKey key = next_key_++;
  TaskPtr record = Task::make(std::move(payload));
  Task& t = *record;
  t.key = key;  // before it joins the set, which hashes it by key
  t.client = client;
  t.client_id = client_id;
  t.function = route;
  t.max_attempts = max_attempts;
  t.items = items;
  t.priority = std::min<std::uint8_t>(priority, kPriorities - 1);
  tasks_.insert(std::move(record));
  enqueue(t, false);
  if (expires_at > 0) expires_at_.emplace(expires_at, key);
  return key;
}

/* Ends a task's record: `task` dangles afterwards. */
void Ledger::forget(Task& task) {
  const TaskKey key = task.key;  // erase must not read it from the record it destroys
  tasks_.erase(key);
}

Task* Ledger::find(TaskKey key) {
  auto it = tasks_.find(key);
  return it == tasks_.end() ? nullptr : it->get();
}

void Ledger::enqueue(Task& task, bool front) {
  task.state = TaskState::kQueued;
  Route& r = routes_[task.function];
  Level& level = r.levels[task.priority];
  if (level.size == 0) level.since = now_ms_;
  auto& dq = level.by_client[task.client];
  if (dq.empty()) level.ring.push_back(task.client);
  if (front) dq.push_front(task.key);
  else dq.push_back(task.key);
  ++level.size;
  ++r.size;
  ++queued_total_;
}

/* The counts of a queued task that leaves its queue; its key stays and is skipped later. */
void Ledger::unqueue(Task& task) {
  Route& r = routes_[task.function];
  --r.levels[task.priority].size;
  --r.size;
  --queued_total_;
}

int Ledger::best_level(const Route& r) const {
  int best = -1;
  std::int64_t best_score = -1;
  // Scores in units of 1/aging: level p waiting w ms scores p * aging + w.
  for (int p = kPriorities - 1; p >= 0; --p) {
    const Level& level = r.levels[static_cast<std::size_t>(p)];
    if (level.size == 0) continue;
    const std::int64_t score = p * aging_ms_ + std::max<std::int64_t>(0, now_ms_ - level.since);
    if (score > best_score) {
      best = p;
      best_score = score;
    }
  }
  return best;
}

double Ledger::urgency(FunctionId route) const {
  const Route& r = routes_[route];
  const int p = best_level(r);
  if (p < 0) return -1;
  const auto waited =
      std::max<std::int64_t>(0, now_ms_ - r.levels[static_cast<std::size_t>(p)].since);
  return p + static_cast<double>(waited) / static_cast<double>(aging_ms_);
}

std::int64_t Ledger::unserved_ms(FunctionId route) const {
  std::int64_t longest = 0;
  for (const Level& level : routes_[route].levels) {
    if (level.size > 0) longest = std::max(longest, now_ms_ - level.since);
  }
  return longest;
}

Task* Ledger::pop(FunctionId route) {
  Route& r = routes_[route];
  const int p = best_level(r);
  if (p < 0) return nullptr;
  Level& level = r.levels[static_cast<std::size_t>(p)];
  while (level.size > 0 && !level.ring.empty()) {
    const PeerHandle client = level.ring.front();
    level.ring.pop_front();
    auto it = level.by_client.find(client);
    assert(it != level.by_client.end());
    auto& dq = it->second;
    Task* found = nullptr;
    // Skip keys of tasks that left while queued; take the first live one.
    while (!dq.empty() && !found) {
      Task* t = find(dq.front());
      dq.pop_front();
      if (t && t->state == TaskState::kQueued) found = t;
    }
    if (dq.empty()) level.by_client.erase(it);
    else level.ring.push_back(client);
    if (found) {
      level.since = now_ms_;
      return found;
    }
  }
  return nullptr;
}

Task* Ledger::lease_next(FunctionId route, PeerHandle worker) {
  Task* t = pop(route);
  if (t) apply(*t, TaskEvent::kLease, worker);
  return t;
}

Transition Ledger::apply(Task& task, TaskEvent event, PeerHandle worker, std::int64_t delay_ms) {
  switch (event) {
    case TaskEvent::kLease:
      // pop() has already taken the key out of its queue.
      if (task.state != TaskState::kQueued) return Transition::kRefused;
      unqueue(task);
      task.state = TaskState::kLeased;
      ++task.attempt;
      task.worker = worker;
      return Transition::kLeased;

    case TaskEvent::kFinish:
      if (task.state != TaskState::kLeased) return Transition::kRefused;
      forget(task);
      return Transition::kRemoved;

    case TaskEvent::kWorkerLost:
      if (task.state != TaskState::kLeased) return Transition::kRefused;
      if (++task.lost >= task.max_attempts) {
        forget(task);
        return Transition::kExhausted;
      }
      enqueue(task, true);  // it has waited already: first in line
      return Transition::kQueued;

    case TaskEvent::kLostInTransit:
      if (task.state != TaskState::kLeased) return Transition::kRefused;
      enqueue(task, true);
      return Transition::kQueued;

    case TaskEvent::kRetry:
      if (task.state != TaskState::kLeased) return Transition::kRefused;
      if (delay_ms <= 0) {
        enqueue(task, true);
        return Transition::kQueued;
      }
      task.state = TaskState::kDelayed;
      ++routes_[task.function].delayed;
      retry_at_.emplace(now_ms_ + delay_ms, task.key);
      return Transition::kDelayed;

    case TaskEvent::kDrop:
      if (task.state == TaskState::kQueued) unqueue(task);
      if (task.state == TaskState::kDelayed) --routes_[task.function].delayed;
      forget(task);
      return Transition::kRemoved;
  }
  return Transition::kRefused;
}

std::vector<TaskKey> Ledger::advance(std::int64_t now_ms) {
  now_ms_ = std::max(now_ms_, now_ms);
  while (!retry_at_.empty() && retry_at_.top().first <= now_ms_) {
    const TaskKey key = retry_at_.top().second;
    retry_at_.pop();
    Task* t = find(key);
    if (!t || t->state != TaskState::kDelayed) continue;
    --routes_[t->function].delayed;
    enqueue(*t, true);
  }
  std::vector<TaskKey> expired;
  while (!expires_at_.empty() && expires_at_.top().first <= now_ms_) {
    const TaskKey key = expires_at_.top().second;
    expires_at_.pop();
    const Task* t = find(key);
    if (t && t->state == TaskState::kQueued && t->attempt == 0) expired.push_back(key);
  }
  return expired;
}

std::int64_t Ledger::next_due() const {
  std::int64_t due = 0;
  if (!retry_at_.empty()) due = retry_at_.top().first;
  if (!expires_at_.empty() && (due == 0 || expires_at_.top().first < due))
    due = expires_at_.top().first;
  return due;
}

}  // namespace dpool::detail
