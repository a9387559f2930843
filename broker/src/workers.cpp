/* Worker-facing handlers and dispatch: READY, DONE, worker heartbeats, dead workers.
 *
 * A worker host announces its functions and its credit (how many leases it may hold). The
 * broker never holds out more than that credit; each TASK batch carries a broker-wide, growing
 * sequence number, and each worker heartbeat reports the highest sequence received and the
 * tasks the worker holds, so a lease that the worker should have but does not (lost on a cut
 * link, or its DONE lost) is requeued without charging the task an attempt.
 */
#include <algorithm>

#include <absl/container/flat_hash_set.h>

#include "core.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

constexpr std::uint32_t kMaxCredit = 100000;
constexpr std::size_t kMaxFunctions = 10000;
// Outcomes a DONE may carry beyond twice the leases its worker holds (see on_done).
constexpr std::size_t kOutcomeSlack = 64;

/* The end of a worker line that follows others left out by BrokerCore::worker_lines_. */
std::string unlogged(std::uint64_t skipped) {
  return skipped ? " [" + std::to_string(skipped) + " worker lines before this one not logged]"
                 : std::string();
}

}  // namespace

void BrokerCore::on_ready(Message& m) {
  auto ready = body<wire::Ready>(m);
  if (!ready) return;
  if (ready->functions.size() > kMaxFunctions) {
    drops_.drop(DropReason::kBody, who_,
                "READY with " + std::to_string(ready->functions.size()) + " functions");
    return;
  }
  // Out-of-range credit is clamped, not refused: a refusal would only make it register again.
  ready->credit = std::clamp<std::uint32_t>(ready->credit, 1, kMaxCredit);
  WorkerRecord* w = workers_.find(who_);
  const bool fresh = w == nullptr;
  if (fresh) w = &workers_.add(who_, next_handle_++);
  w->host = std::move(ready->host);
  w->pid = ready->pid;
  w->credit = ready->credit;
  w->processes = std::min<std::uint32_t>(ready->processes, w->credit);
  w->tags = std::move(ready->tags);
  w->draining = false;
  w->functions.clear();
  for (const auto& f : ready->functions) {
    if (f.empty() || f.size() > 256) continue;
    const auto id = ledger_.function_id(f);
    // A name listed twice would get twice the share of this worker's credit.
    if (std::find(w->functions.begin(), w->functions.end(), id) == w->functions.end())
      w->functions.push_back(id);
  }
  add_routes();
  w->routes.clear();
  refresh_routes(*w, 0);
  workers_.heard(*w, Clock::now(), config_.heartbeat.expiry());
  send_heartbeat(w->identity);
  // The host is the peer's own text, and a peer may register and leave in a loop. A known
  // worker's READY is news to nobody (a host sends several in a row after a broker restart).
  if (!fresh) {
    log::debug("worker {} pid {} registered again: {} functions, credit {}",
               log::printable(w->host), w->pid, w->functions.size(), w->credit);
  } else if (std::uint64_t skipped = 0; worker_lines_.allow(skipped)) {
    log::info("worker {} pid {} registered: {} functions, credit {}{}", log::printable(w->host),
              w->pid, w->functions.size(), w->credit, unlogged(skipped));
  }
}

wire::Result result_of(wire::Outcome& o, const WorkerRecord& w) {
  wire::Result r;
  r.status = o.status;
  r.error_type = std::move(o.error_type);
  r.error_message = std::move(o.error_message);
  r.host = w.host;
  r.pid = o.pid;
  return r;
}

void BrokerCore::on_done(Message& m, WorkerRecord& w) {
  // An honest host reports on leases it holds, and on a few the broker took back while they
  // ran; one outcome a payload frame. A DONE with far more is forged, and decoding it is most
  // of what it costs: refused unread, so that a forger's large DONEs cannot take the loop's
  // time from the workers it shares the broker with (tests/test_hostile.cpp).
  if (m.payloads.size() > 2 * w.leases.size() + kOutcomeSlack) {
    drops_.drop(DropReason::kStale, who_,
                "DONE with " + std::to_string(m.payloads.size()) +
                    " outcomes from a worker holding " + std::to_string(w.leases.size()) +
                    " leases");
    return;
  }
  auto done = body<wire::DoneBatch>(m);
  if (!done) return;
  if (done->outcomes.size() != m.payloads.size()) {
    drops_.drop(DropReason::kPayloads, who_, "DONE with mismatched payloads");
    return;
  }
  workers_.heard(w, Clock::now(), config_.heartbeat.expiry());
  for (std::size_t i = 0; i < done->outcomes.size(); ++i) {
    auto& o = done->outcomes[i];
    if (o.status != Status::kOk && o.status != Status::kError && o.status != Status::kLost &&
        o.status != Status::kTimeout && o.status != Status::kCancelled &&
        o.status != Status::kReturned) {
      // Left leased: the next heartbeat shows the worker no longer holds it, and it is requeued.
      drops_.drop(DropReason::kBody, who_,
                  "outcome with status " + std::to_string(static_cast<int>(o.status)));
      continue;
    }
    Task* t = ledger_.find(o.task);
    if (!t) {
      w.leases.erase(o.task);  // its client went away; the lease is over all the same
      drops_.drop(DropReason::kStale, who_, "outcome for a task no longer held");
      continue;
    }
    if (t->state != TaskState::kLeased || t->worker != w.handle || t->attempt != o.attempt) {
      drops_.drop(DropReason::kStale, who_,
                  t->worker != w.handle
                      ? "outcome for a task leased to another worker now"
                      : "outcome for attempt " + std::to_string(o.attempt) +
                            " of a task now at attempt " + std::to_string(t->attempt));
      continue;
    }
    w.leases.erase(o.task);
    if (o.status == Status::kReturned) {  // a draining worker hands back what it never started
      worker_lost(*t, "handed back", false);
      continue;
    }
    if (o.status == Status::kLost) {
      worker_lost(*t, o.error_message, true, &o, &w);
      continue;
    }
    o.status == Status::kOk ? ++w.done : ++w.failed;
    if (o.status == Status::kError || o.status == Status::kTimeout) {
      failed_attempt(*t, o, w);
      continue;
    }
    finish(*t, result_of(o, w), std::move(m.payloads[i]));
  }
}

void BrokerCore::on_worker_heartbeat(const wire::Heartbeat& hb, WorkerRecord& w) {
  const auto now = Clock::now();
  workers_.heard(w, now, config_.heartbeat.expiry());
  if (std::uint64_t skipped = 0; hb.draining && !w.draining && worker_lines_.allow(skipped)) {
    log::info("worker {} pid {} is draining{}", log::printable(w.host), w.pid, unlogged(skipped));
  }
  w.draining = hb.draining;
  // A host asks for more while its tasks are short, less once they are long (worker/pacing.hpp).
  if (hb.credit > 0) w.credit = std::clamp<std::uint32_t>(hb.credit, 1, kMaxCredit);
  const absl::flat_hash_set<std::uint64_t> held(hb.held.begin(), hb.held.end());
  // A lease the worker does not hold although it has seen the batch that carried it (seq <=
  // last_seq), or has not seen that batch for a whole expiry period, is lost: the batch or the
  // outcome went down with a connection. It is requeued without charging the task.
  const auto patience =
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.heartbeat.expiry()).count();
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::vector<TaskKey> missing;
  for (const auto& [key, lease] : w.leases) {
    if (held.contains(key)) continue;
    if (lease.seq <= hb.last_seq || now_ms - lease.sent_ms > patience || !ledger_.find(key))
      missing.push_back(key);
  }
  for (auto key : missing) {
    w.leases.erase(key);
    Task* t = ledger_.find(key);
    if (t && t->state == TaskState::kLeased && t->worker == w.handle) {
      log::debug("task {} never reached worker {} (or its outcome was lost): requeued", key,
                 log::printable(w.host));
      worker_lost(*t, "lost in transit", false);
    }
  }
}

void BrokerCore::worker_lost(Task& task, const std::string& why, bool charge,
                             const wire::Outcome* o, const WorkerRecord* w) {
  if (task.cancel_requested) {  // nobody wants it run again
    finish_cancelled(task);
    return;
  }
  if (!charge) {
    apply(task, TaskEvent::kLostInTransit);
    ++counters_.requeued;
    return;
  }
  if (o) {
    record_attempt(task, *o, w);
  } else {
    wire::Outcome lost;
    lost.attempt = task.attempt;
    lost.status = Status::kLost;
    lost.error_type = "WorkerLost";
    lost.error_message = why;
    record_attempt(task, lost, w);
  }
  auto history = std::move(task.extra->history);
  const auto route = task.function;
  const auto client = task.client;
  const auto client_id = task.client_id;
  const auto attempts = task.attempt;
  const auto items = task.items;
  const auto deaths = task.lost + 1;
  const auto function = ledger_.function_name(task.function);
  if (apply(task, TaskEvent::kWorkerLost) == Transition::kQueued) {
    task.extra->history = std::move(history);
    ++counters_.requeued;
    return;
  }
  // kExhausted: the task is gone from the ledger; tell its owner why.
  wire::Result r;
  r.status = Status::kLost;
  r.error_type = "WorkerLost";
  r.error_message = "the worker running '" + function + "' died on " + std::to_string(deaths) +
                    " of " + std::to_string(attempts) + " attempts (last: " + why + ")";
  r.attempts = attempts;
  r.history = std::move(history);
  if (o) {
    r.error_type = o->error_type.empty() ? r.error_type : o->error_type;
    r.pid = o->pid;
  }
  if (w) r.host = w->host;
  remember_failure(route, client, r);
  report(client, client_id, std::move(r), zmq::message_t(), items);
}

void BrokerCore::remove_worker(WorkerRecord& w, std::string_view why, bool charge) {
  if (std::uint64_t skipped = 0; worker_lines_.allow(skipped)) {
    if (charge || !w.leases.empty()) {
      log::warn("worker {} pid {} lost ({}): {} leases {}{}", log::printable(w.host), w.pid, why,
                w.leases.size(), charge ? "requeued" : "returned", unlogged(skipped));
    } else {
      log::info("worker {} pid {} left ({}){}", log::printable(w.host), w.pid, why,
                unlogged(skipped));
    }
  }
  const std::string what =
      "worker " + w.host + " pid " + std::to_string(w.pid) + " " + std::string(why);
  for (const auto& lease : w.leases) {
    Task* t = ledger_.find(lease.first);
    if (t && t->state == TaskState::kLeased && t->worker == w.handle)
      worker_lost(*t, what, charge, nullptr, &w);
  }
  workers_.remove(w.handle);
}

void BrokerCore::dispatch() {
  if (ledger_.queued_total() == 0) return;
  for (auto& [h, w] : workers_) {
    if (w.free_credit() > 0) dispatch_to(w);
    if (ledger_.queued_total() == 0) break;
  }
}

void BrokerCore::dispatch_to(WorkerRecord& w) {
  std::size_t free = w.free_credit();
  wire::TaskBatch batch;
  batch.seq = next_seq_;
  const auto now_ms = BrokerCore::now_ms();
  std::vector<zmq::message_t> payloads;
  // Each lease goes to the most urgent of the worker's routes (priority, lifted by waiting);
  // among equals the turn rotates, so that a worker offering several functions serves all.
  const std::size_t n = w.routes.size();
  while (free > 0 && n > 0) {
    FunctionId best = w.routes[0];  // one route: nothing to choose; lease_next says if it has work
    if (n > 1) {
      double best_urgency = -1;
      for (std::size_t i = 0; i < n; ++i) {
        const FunctionId r = w.routes[(w.next_function + i) % n];
        const double u = ledger_.urgency(r);
        if (u > best_urgency) {
          best = r;
          best_urgency = u;
        }
      }
      if (best_urgency < 0) break;
    }
    ++w.next_function;
    Task* t = ledger_.lease_next(best, w.handle);
    if (!t) break;
    --free;
    w.leases.insert_or_assign(t->key, LeaseRecord{batch.seq, now_ms});
    wire::Lease lease{t->key, t->attempt, ledger_.function_name(best), t->items};
    if (t->extra) {
      lease.timeout_ms = t->extra->timeout_ms;
      if (t->items > 0) {  // a chunk's items are retried in place by the worker
        lease.retries = t->extra->retries;
        lease.retry_delay_ms = t->extra->retry_delay_ms;
      }
    }
    batch.leases.push_back(std::move(lease));
    payloads.push_back(t->frame());
  }
  if (batch.leases.empty()) return;
  ++next_seq_;
  if (send(w.identity, Command::kTask, batch, std::move(payloads))) return;
  // The worker is not connected right now: the leases go back, uncharged.
  for (const auto& lease : batch.leases) {
    w.leases.erase(lease.task);
    if (Task* t = ledger_.find(lease.task)) worker_lost(*t, "not connected", false);
  }
}

}  // namespace dpool::detail
