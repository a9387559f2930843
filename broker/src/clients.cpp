/* Client-facing handlers: sessions, SUBMIT, ACK, and delivery of results.
 *
 * A result is sent once when the task finishes (or a little later, with others: hold()) and
 * kept until the client ACKs it; if no ACK comes within the heartbeat expiry, or the client
 * says HELLO again, it is sent again. The client drops duplicates, so each result reaches the
 * caller exactly once even across a cut link. A resubmitted task id that the session already
 * knows is acknowledged, not run again.
 */
#include <algorithm>
#include <unordered_map>

#include "core.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kMaxFunctionName = 256;
constexpr std::uint32_t kMaxAttemptsCap = 100;
constexpr std::size_t kMaxResultsPerMessage = 256;
constexpr std::size_t kMaxAcceptsPerMessage = 10000;
constexpr auto kAcceptDelay = std::chrono::milliseconds(2);  // longest an ACCEPT waits
constexpr std::size_t kResultsWorthAMessage = 64;              // ... unless this many wait

bool past(Clock::time_point due, Clock::time_point now) {
  return due != Clock::time_point{} && now >= due;
}

}  // namespace

ClientSession& BrokerCore::client_session(const std::string& identity) {
  ClientSession* c = clients_.find(identity);
  if (!c) {
    c = &clients_.add(identity, next_handle_++);
    log::debug("client {} connected", log::printable(identity));
  }
  c->last_heard = Clock::now();
  return *c;
}

void BrokerCore::on_hello(Message& m, ClientSession& c) {
  auto hello = body<wire::Hello>(m);
  if (!hello) return;
  c.hello = std::move(*hello);
  std::uint32_t processes = 0;
  for (auto& [h, w] : workers_) processes += w.processes;
  send_heartbeat(c.identity, processes, true);
  // A HELLO after results went out may mean they were lost with the old connection.
  for (auto& [id, r] : c.finished) c.results.push_back(id);
  if (!c.results.empty()) mark_dirty(c);
}

void BrokerCore::on_submit(Message& m, ClientSession& c) {
  auto submit = body<wire::Submit>(m);
  if (!submit) return;
  if (submit->tasks.size() != m.payloads.size()) {
    drops_.drop(DropReason::kPayloads, who_,
                "SUBMIT with " + std::to_string(submit->tasks.size()) + " tasks but " +
                    std::to_string(m.payloads.size()) + " payloads");
    return;
  }
  for (std::size_t i = 0; i < submit->tasks.size(); ++i) {
    auto& spec = submit->tasks[i];
    c.accepts.push_back(spec.id);
    if (c.live.contains(spec.id)) continue;  // a resubmission of a task we hold
    if (c.finished.contains(spec.id)) {      // ... or one whose result was lost on the way
      c.results.push_back(spec.id);
      continue;
    }
    // A job task's payload is the job's to hold (add_job_task): here only its count matters.
    if (auto refusal = over_limit(c, spec.job.empty() ? m.payloads[i].size() : 0)) {
      c.accepts.pop_back();
      refuse(c, spec.id, std::move(*refusal));
      continue;
    }
    if (spec.function.empty() || spec.function.size() > kMaxFunctionName) {
      wire::Result r;
      r.status = Status::kRejected;
      r.error_type = "InvalidFunctionName";
      r.error_message = "a function name must have 1 to 256 characters";
      deliver(c, spec.id, std::move(r), zmq::message_t());
      continue;
    }
    if (auto refusal = check_policy(spec)) {
      deliver(c, spec.id, std::move(*refusal), zmq::message_t());
      continue;
    }
    const auto attempts = spec.max_attempts ? std::min(spec.max_attempts, kMaxAttemptsCap)
                                            : config_.max_attempts;
    if (!spec.job.empty()) {
      // Accepted means "the job holds it": its result goes to the job, not to this session.
      if (auto refusal = add_job_task(c, spec, m.payloads[i], attempts)) {
        c.accepts.pop_back();  // the client takes an ACCEPT of a job task as success
        deliver(c, spec.id, std::move(*refusal), zmq::message_t());
      }
      continue;
    }
    const auto key = admit(c.handle, spec.id, spec, std::move(m.payloads[i]), attempts);
    c.live[spec.id] = key;
    if (journal_)
      journal_->task(false, c.identity, spec.id, attempts, spec, ledger_.find(key)->payload());
    if (!spec.queue.empty() && spec.queue.size() <= kMaxFunctionName)
      join_named_queue(*ledger_.find(key), spec.queue);
  }
  mark_dirty(c);
}

void BrokerCore::join_named_queue(Task& task, const std::string& name) {
  auto [it, fresh] = queue_ids_.try_emplace(name, 0);
  if (fresh) {
    if (free_queues_.empty()) {
      it->second = static_cast<std::uint32_t>(queues_.size());
      queues_.push_back(NamedQueue{});
    } else {
      it->second = free_queues_.back();
      free_queues_.pop_back();
    }
    queues_[it->second].name = name;
  }
  task.queue = it->second;
  ++queues_[it->second].outstanding;
}

void BrokerCore::on_ack(Message& m, ClientSession& c) {
  auto ack = body<wire::Ack>(m);
  if (!ack) return;
  c.last_heard = Clock::now();
  for (auto id : ack->ids) {
    auto it = c.finished.find(id);
    if (it == c.finished.end()) continue;
    c.bytes -= std::min<std::uint64_t>(c.bytes, it->second.payload.size());
    c.finished.erase(it);
  }
  if (journal_) journal_->ack(c.identity, ack->ids);
}

void BrokerCore::on_cancel(Message& m, ClientSession& c) {
  auto cancel = body<wire::Cancel>(m);
  if (!cancel) return;
  c.last_heard = Clock::now();
  std::unordered_map<PeerHandle, wire::Cancel> to_workers;
  for (auto id : cancel->ids) {
    auto it = c.live.find(id);
    if (it == c.live.end()) continue;  // finished already, or never known: nothing to stop
    Task* t = ledger_.find(it->second);
    if (!t) continue;
    if (t->state == TaskState::kQueued) {
      c.live.erase(it);
      apply(*t, TaskEvent::kDrop);
      deliver(c, id, cancelled_result("cancelled before it started"), zmq::message_t());
    } else if (!t->cancel_requested) {
      // Running: the worker kills the process running it and reports it cancelled.
      t->cancel_requested = true;
      to_workers[t->worker].ids.push_back(t->key);
    }
  }
  for (auto& [handle, msg] : to_workers) {
    if (auto* w = workers_.find(handle)) send(w->identity, Command::kCancel, msg);
  }
}

void BrokerCore::on_join(Message& m, ClientSession& c) {
  auto join = body<wire::Join>(m);
  if (!join) return;
  c.last_heard = Clock::now();
  auto it = queue_ids_.find(join->queue);
  if (it == queue_ids_.end() || queues_[it->second].outstanding == 0) {
    send(c.identity, Command::kJoined, wire::Joined{join->request});
    return;
  }
  auto& waiters = queues_[it->second].waiters;
  const std::pair<std::string, std::uint64_t> waiter{c.identity, join->request};
  if (std::find(waiters.begin(), waiters.end(), waiter) == waiters.end()) waiters.push_back(waiter);
}

Transition BrokerCore::apply(Task& task, TaskEvent event, std::int64_t delay_ms) {
  const auto queue = task.queue;
  const auto owner = task.client;
  const auto size = task.payload().size();
  const auto t = ledger_.apply(task, event, 0, delay_ms);
  if (t == Transition::kRemoved || t == Transition::kExhausted) {
    charge(owner, -static_cast<std::int64_t>(size));
    if (queue != 0) queue_left(queue);
  }
  return t;
}

void BrokerCore::queue_left(std::uint32_t queue) {
  auto& q = queues_[queue];
  if (q.outstanding > 0) --q.outstanding;
  if (q.outstanding > 0) return;
  for (const auto& [identity, request] : q.waiters) {
    send(identity, Command::kJoined, wire::Joined{request});
  }
  // An empty queue is forgotten (names are often unique): its slot is reused.
  queue_ids_.erase(q.name);
  q = NamedQueue{};
  free_queues_.push_back(queue);
}

wire::Result cancelled_result(std::string message) {
  wire::Result r;
  r.status = Status::kCancelled;
  r.error_type = "Cancelled";
  r.error_message = std::move(message);
  return r;
}

void BrokerCore::finish_cancelled(Task& task) {
  finish(task, cancelled_result("cancelled while running"), zmq::message_t());
}

void BrokerCore::finish(Task& task, wire::Result meta, zmq::message_t payload) {
  meta.attempts = task.attempt;
  if (task.extra) meta.history = std::move(task.extra->history);
  remember_failure(task.function, task.client, meta);
  const auto owner = task.client;
  const auto id = task.client_id;
  const auto items = task.items;
  apply(task, TaskEvent::kFinish);
  report(owner, id, std::move(meta), std::move(payload), items);
}

void BrokerCore::report(PeerHandle owner, std::uint64_t id, wire::Result meta,
                        zmq::message_t payload, std::uint32_t items) {
  if (auto* c = clients_.find(owner)) {
    c->live.erase(id);
    deliver(*c, id, std::move(meta), std::move(payload));
  } else if (auto* job = jobs_.find(owner)) {
    count_result(meta);
    job_result(*job, id, std::move(meta), std::move(payload), items);
  }
  // else: its client left (or the job was forgotten); nobody wants the result
}

void BrokerCore::count_result(const wire::Result& meta) {
  ++counters_.completed;
  if (meta.status != Status::kOk) ++counters_.failed;
  rate_.add(turn_);
}

void BrokerCore::deliver(ClientSession& c, std::uint64_t client_id, wire::Result meta,
                         zmq::message_t payload) {
  count_result(meta);
  meta.id = client_id;
  c.bytes += payload.size();
  if (journal_) journal_->result(false, c.identity, client_id, meta, view(payload), 0);
  // Built in its node rather than moved there (a Result and a frame are a few hundred bytes).
  // The id is new: one enters `finished` only when it leaves `live`, and SUBMIT looks in both.
  c.finished.try_emplace(client_id, FinishedResult{std::move(meta), std::move(payload), {}});
  c.results.push_back(client_id);
  mark_dirty(c);
}

void BrokerCore::mark_dirty(ClientSession& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_clients_.push_back(c.handle);
}

/* A session's ACCEPTs and RESULTs may wait a little, so that one message and one wake-up of
 * the client carry several.
 *
 * ACCEPTs wait up to kAcceptDelay. One task at a time, an ACCEPT sent at once wakes the
 * client in the middle of the task's run, on a machine whose cores the worker needs (W2 in
 * bench/); under load, more ids share a message. The client resends a SUBMIT only after a
 * heartbeat expiry without ACCEPT, so a few ms cost nothing.
 *
 * RESULTs wait up to the broker's `result_delay` (50 ms), and only while the client has at
 * least two other tasks live and the broker still has tasks queued that no worker runs yet.
 * Then the client's next move (submitting more as its window frees) cannot be what keeps a
 * worker idle, and a client that awaits a whole batch wakes once for several results instead
 * of once each (W3: 50 ms rather than 10 saved a fifth of the cluster's context switches).
 * A lone task's RESULT, the last of a batch's, and any RESULT while the queue is empty leave
 * at once, and waiting ones leave as soon as the queue empties (release_held).
 *
 * Whatever ends the wait of one sends all of the session's batch: a RESULT takes its ACCEPTs
 * along, an ACCEPT that is due takes the RESULTs, and refusals take both. */
bool BrokerCore::hold(ClientSession& c) {
  if (!c.refusals.empty() || (c.accepts.empty() && c.results.empty())) return false;
  const bool accepts_wait = c.accepts.empty() || (c.accepts.size() < kMaxAcceptsPerMessage &&
                                                  !past(c.accepts_due, turn_));
  const bool results_wait =
      c.results.empty() ||
      (config_.result_delay.count() > 0 && c.results.size() < kResultsWorthAMessage &&
       !past(c.results_due, turn_) && c.live.size() >= 2 && ledger_.queued_total() > 0);
  if (!accepts_wait || !results_wait) return false;
  const bool listed = c.accepts_due != Clock::time_point{} || c.results_due != Clock::time_point{};
  if (!c.accepts.empty() && c.accepts_due == Clock::time_point{})
    c.accepts_due = turn_ + kAcceptDelay;
  if (!c.results.empty() && c.results_due == Clock::time_point{})
    c.results_due = turn_ + config_.result_delay;
  if (!listed) held_clients_.push_back(c.handle);
  const auto due = held_until(c);
  if (next_held_due_ == Clock::time_point{} || due < next_held_due_) next_held_due_ = due;
  return true;
}

Clock::time_point BrokerCore::held_until(const ClientSession& c) {
  if (c.accepts_due == Clock::time_point{}) return c.results_due;
  if (c.results_due == Clock::time_point{}) return c.accepts_due;
  return std::min(c.accepts_due, c.results_due);
}

/* Lists for this turn's flush the held sessions whose wait is over, and notes when the next
 * of the others is (next_held_due_, zero when none waits). Results wait no longer once the
 * queue is empty (a worker took the last queued task), though none of the session's came:
 * its next submissions may be what keeps a worker busy now. */
void BrokerCore::release_held() {
  Clock::time_point next{};
  std::size_t kept = 0;
  const bool queue_empty = ledger_.queued_total() == 0;
  for (auto h : held_clients_) {
    auto* c = clients_.find(h);
    if (!c) continue;
    const auto due = held_until(*c);
    if (due == Clock::time_point{}) continue;  // sent meanwhile
    if (turn_ >= due || (queue_empty && c->results_due != Clock::time_point{})) {
      mark_dirty(*c);
      continue;
    }
    held_clients_[kept++] = h;
    if (next == Clock::time_point{} || due < next) next = due;
  }
  held_clients_.resize(kept);
  next_held_due_ = next;
}

void BrokerCore::flush_client(ClientSession& c) {
  if (hold(c)) return;
  c.accepts_due = c.results_due = {};
  flush_accepts(c);
  flush_refusals(c);
  flush_results(c);
}

void BrokerCore::flush_accepts(ClientSession& c) {
  for (std::size_t start = 0; start < c.accepts.size(); start += kMaxAcceptsPerMessage) {
    const auto end = std::min(c.accepts.size(), start + kMaxAcceptsPerMessage);
    wire::Accept accept;
    accept.ids.assign(c.accepts.begin() + static_cast<std::ptrdiff_t>(start),
                      c.accepts.begin() + static_cast<std::ptrdiff_t>(end));
    send(c.identity, Command::kAccept, accept);
  }
  c.accepts.clear();
}

void BrokerCore::flush_results(ClientSession& c) {
  const auto now = Clock::now();
  for (std::size_t start = 0; start < c.results.size(); start += kMaxResultsPerMessage) {
    const auto end = std::min(c.results.size(), start + kMaxResultsPerMessage);
    wire::ResultBatch batch;
    std::vector<zmq::message_t> payloads;
    batch.results.reserve(end - start);
    payloads.reserve(end - start);
    for (std::size_t i = start; i < end; ++i) {
      auto it = c.finished.find(c.results[i]);
      if (it == c.finished.end()) continue;  // ACKed meanwhile
      it->second.sent_at = now;
      c.sent.emplace_back(it->first, now);
      batch.results.push_back(it->second.meta);
      payloads.push_back(share(it->second.payload));
    }
    // If the client is not connected now the results stay in `finished` for a later resend.
    if (!batch.results.empty()) {
      send(c.identity, Command::kResult, batch, std::move(payloads));
    }
  }
  c.results.clear();
}

void BrokerCore::resend_unacked(ClientSession& c, Clock::time_point now) {
  const auto patience = config_.heartbeat.expiry();
  while (!c.sent.empty() && c.sent.front().second + patience <= now) {
    const auto [id, when] = c.sent.front();
    c.sent.pop_front();
    auto it = c.finished.find(id);
    if (it != c.finished.end() && it->second.sent_at == when) c.results.push_back(id);
  }
  if (!c.results.empty()) mark_dirty(c);
}

void BrokerCore::purge_client(ClientSession& c) {
  for (auto& [id, key] : c.live) {
    // A leased task stays on its worker; its outcome will find no task and be dropped.
    if (Task* t = ledger_.find(key)) apply(*t, TaskEvent::kDrop);
  }
  if (journal_) journal_->purge(c.identity);
  submitter_left(c.handle);
  clients_.remove(c.handle);
}

}  // namespace dpool::detail
