/* The supervisor's drain (see supervisor.hpp): leave without losing or charging anything.
 *
 * The broker must stop leasing here before it sees the leases handed back, or it could lease
 * them straight back: so the draining heartbeat goes out first (DEALER to ROUTER keeps the
 * order), then the outcomes. Leases never started are handed back as kReturned, uncharged:
 * those waiting in the backlog, those queued behind a child's running task (the child is held
 * and will never start them, slots.hpp), those a TASK brings in while draining, and those a
 * child skips or leaves behind when it dies. Running tasks finish and are reported as usual.
 * Past drain_timeout the host leaves with DISCONNECT, which has the broker run whatever is
 * still held here elsewhere, uncharged too.
 */

#include "dpool/log.hpp"
#include "supervisor.hpp"

namespace dpool::detail {
namespace {

constexpr const char* kReturned = "handed back unstarted: the worker is draining";

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

void Supervisor::begin_drain() {
  draining_ = true;
  drain_started_ = Clock::now();
  drain_deadline_ = drain_started_ + config_.drain_timeout;
  send_heartbeat();
  std::size_t handed_back = backlog_.size(), running = 0;
  return_backlog();
  for (auto& c : children_) {
    if (c.pid > 0 && running_[c.slot].task.load() != 0) ++running;
    for (auto& item : recall_unstarted(c)) {
      report(item.lease, Status::kReturned, "Returned", kReturned, 0);
      ++handed_back;
    }
  }
  log::info("draining: {} tasks running, {} handed back; waiting up to {} for the running ones",
            running, handed_back, format_duration(config_.drain_timeout));
}

/* Hands back what waits in the backlog (children that died or skipped tasks put them there). */
void Supervisor::return_backlog() {
  for (const auto& item : backlog_) report(item.lease, Status::kReturned, "Returned", kReturned, 0);
  backlog_.clear();
}

void Supervisor::drain_turn(Clock::time_point now) {
  return_backlog();
  if (held() == 0) {
    drained_ = true;
  } else if (now >= drain_deadline_) {
    log::warn(
        "drain timeout ({}) passed with {} tasks still held: stopping; the broker runs them "
        "elsewhere",
        format_duration(config_.drain_timeout), held());
    stopping_.store(true);
  }
}

void Supervisor::log_stop() {
  if (drained_) log::info("drained in {:.1f} s", seconds_since(drain_started_));
  else log::info("stopping: the broker requeues the {} tasks held here", held());
}

}  // namespace dpool::detail
