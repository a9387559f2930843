/* The supervisor's children: their life (spawn, outcomes, exit, replacement) and the limits
 * put on them (time per call, resident memory). See supervisor.hpp for the design.
 *
 * Every SIGKILL this supervisor sends goes through kill_child(), which marks the child: a
 * death by SIGKILL nobody here sent is then the kernel's doing (or an operator's), and is
 * reported as a possible out-of-memory kill, or a certain one when the cgroup counted one.
 */
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>

#include "dpool/log.hpp"
#include "supervisor.hpp"

namespace dpool::detail {
namespace {

constexpr auto kQuickDeath = std::chrono::seconds(1);
constexpr auto kMaxRestartDelay = std::chrono::seconds(10);

std::string describe_exit(pid_t pid, int status) {
  std::string s = "worker process " + std::to_string(pid);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    s += " killed by signal " + std::to_string(sig) +
         (name ? std::string(" (SIG") + name + ")" : "");
  } else if (WIFEXITED(status)) {
    s += " exited with code " + std::to_string(WEXITSTATUS(status));
  }
  return s;
}

/* "2 s", "0.3 s", "1.25 s": short, and exact for the limits people write. */
std::string seconds(double s) {
  char buf[32];
  if (s >= 100 || s == std::floor(s)) std::snprintf(buf, sizeof buf, "%.0f s", s);
  else std::snprintf(buf, sizeof buf, "%.3g s", s);
  return buf;
}

std::string mib(std::uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

/* Asks the zygote for a child in `c`'s slot, with a new link: the supervisor's end stays in
 * `c`, the child's end goes to the zygote and is closed here. */
void Supervisor::spawn(Child& c) {
  std::pair<Fd, Fd> ends;
  try {
    ends = make_link_pair();
  } catch (const Error& e) {
    log::error("cannot start a worker process: {}", e.what());
    c.restart_at = Clock::now() + std::chrono::seconds(1);
    return;
  }
  reset_for_spawn(c);
  c.link = std::make_unique<Link>(std::move(ends.first));
  zygote_.spawn(c.slot, ends.second.get());
}

void Supervisor::reset_for_spawn(Child& c) {
  running_[c.slot].task.store(0);
  running_[c.slot].call_started.store(0);
  running_[c.slot].hold.store(0);
  running_[c.slot].skip.store(0);
  c.pid = 0;
  c.started = Clock::now();
  c.retiring = false;
  c.retire_reason.clear();
  c.killed = false;
  c.timed_out = 0;
  c.timeout_message.clear();
  c.ready = false;
  c.done = 0;
  c.assigned_total = 0;
  c.sent = c.skip_from = c.skip_to = 0;
  c.given_away.clear();
  c.link_lost = {};
  c.broken.clear();
}

void Supervisor::respawn_children(Clock::time_point now) {
  for (auto& c : children_) {
    if (c.pid < 0 && now >= c.restart_at && !stopping_.load()) spawn(c);
  }
}

void Supervisor::on_zygote_events() {
  bool alive = true;
  for (auto& e : zygote_.events(alive)) {
    switch (e.kind) {
      case Zygote::Event::Kind::kSpawned:
        if (e.slot < children_.size() && children_[e.slot].pid == 0) children_[e.slot].pid = e.pid;
        break;
      case Zygote::Event::Kind::kFailed:
        log::error("cannot start a worker process: {}", std::strerror(e.status));
        if (e.slot < children_.size()) {
          children_[e.slot].pid = -1;
          children_[e.slot].link.reset();
          children_[e.slot].restart_at = Clock::now() + std::chrono::seconds(1);
        }
        break;
      case Zygote::Event::Kind::kExited:
        for (auto& c : children_) {
          if (c.pid == e.pid) on_child_exit(c, e.status, std::move(e.stderr_tail));
        }
        break;
    }
  }
  if (!alive && !stopping_.load()) {
    // Without the zygote no child can be replaced; stopping lets the broker requeue our
    // leases at once, and whoever runs this host (systemd, docker) can start it again.
    log::error("the process that starts worker processes died: stopping this worker host");
    stopping_.store(true);
    exit_code_ = 1;
  }
}

void Supervisor::on_child_message(Child& c, Message& m) {
  if (m.command == Command::kReady) {
    c.ready = true;
    return;
  }
  if (m.command != Command::kDone) return;
  on_child_outcomes(c, m);
  check_memory(c);
  maybe_retire(c);
}

void Supervisor::on_child_outcomes(Child& c, Message& m) {
  auto done = decode<wire::DoneBatch>(m, drops_, "child");
  if (!done || done->outcomes.size() != m.payloads.size()) return;
  std::deque<Item> skipped;  // recalled tasks the child confirms it did not start
  for (std::size_t i = 0; i < done->outcomes.size(); ++i) {
    auto& o = done->outcomes[i];
    if (o.status == Status::kCancelled) {
      // A task taken from it (take_queued) comes first in its queue, before any copy of it
      // given back to it since: this answer is for that one.
      if (const auto gone = c.given_away.find(o.task); gone != c.given_away.end()) {
        c.given_away.erase(gone);
        continue;
      }
    }
    auto it = std::find_if(c.assigned.begin(), c.assigned.end(),
                           [&](const Item& item) { return item.lease.task == o.task; });
    if (it == c.assigned.end()) continue;
    if (it->recalled && o.status == Status::kCancelled) {
      it->recalled = false;
      skipped.push_back(std::move(*it));
      c.assigned.erase(it);
      continue;
    }
    c.assigned.erase(it);
    cancelled_.erase(o.task);
    ++c.done;
    pacing_.observe(o.micros);
    outcomes_.outcomes.push_back(std::move(o));
    results_.push_back(std::move(m.payloads[i]));
  }
  // Ahead of the rest: they were leased earlier. A draining host hands them back instead.
  backlog_.insert(backlog_.begin(), std::make_move_iterator(skipped.begin()),
                  std::make_move_iterator(skipped.end()));
}

/* Past max_memory_per_child, the child is replaced once its running task is done. */
void Supervisor::check_memory(Child& c) {
  if (config_.max_memory_per_child == 0 || c.pid <= 0 || c.retiring || !c.retire_reason.empty())
    return;
  const auto rss = resident_bytes(c.pid);
  if (!rss || *rss <= config_.max_memory_per_child) return;
  log::info(
      "worker process {} uses {} resident, over max_memory_per_child {}: replacing it after its "
      "running task",
      c.pid, mib(*rss), format_size(config_.max_memory_per_child));
  c.retire_reason = "max memory per child";
  auto back = recall_unstarted(c);
  backlog_.insert(backlog_.begin(), std::make_move_iterator(back.begin()),
                  std::make_move_iterator(back.end()));
}

/* Stops the child from starting any more tasks (slots.hpp) and returns those it is now known
 * never to start: the ones queued behind its running task. When it runs none, the tasks it
 * holds cannot be told apart (finished with the outcome on its way, or not started): they are
 * marked recalled, and the child answers "cancelled" for each it skips, which
 * on_child_outcomes takes back. */
std::deque<Supervisor::Item> Supervisor::recall_unstarted(Child& c) {
  auto& slot = running_[c.slot];
  slot.hold.store(1);
  const auto running = slot.task.load();
  std::deque<Item> back;
  const auto it = std::find_if(c.assigned.begin(), c.assigned.end(), [running](const Item& i) {
    return running != 0 && i.lease.task == running;
  });
  if (it == c.assigned.end()) {
    for (auto& item : c.assigned) item.recalled = true;
    return back;
  }
  back.assign(std::make_move_iterator(std::next(it)), std::make_move_iterator(c.assigned.end()));
  c.assigned.erase(std::next(it), c.assigned.end());
  return back;
}

/* A child with a reason to go (max tasks, memory) and nothing left to do is told to exit;
 * its exit report starts a fresh one at once. */
void Supervisor::maybe_retire(Child& c) {
  if (c.retiring || c.pid <= 0 || !c.assigned.empty()) return;
  if (config_.max_tasks_per_child && c.done >= config_.max_tasks_per_child)
    c.retire_reason = "max tasks per child";
  if (c.retire_reason.empty()) return;
  c.retiring = true;
  if (!tell(c, Command::kDisconnect, wire::Disconnect{c.retire_reason})) {
    kill_child(c);  // it cannot hear us; its exit report replaces it all the same
  }
}

void Supervisor::on_child_exit(Child& c, int status, std::string stderr_tail) {
  const auto running = running_[c.slot].task.exchange(0);
  running_[c.slot].call_started.store(0);
  const bool recycled = c.retiring && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  const auto [type, what] = describe_loss(c, status);
  if (!recycled && !c.killed) log::warn("{} ({} tasks held)", what, c.assigned.size());
  // The task it was running is charged; the ones it had not started go to another child.
  for (auto it = c.assigned.rbegin(); it != c.assigned.rend(); ++it) {
    const auto key = it->lease.task;
    if (cancelled_.erase(key)) {
      report_cancelled(it->lease, c.pid);
    } else if (running != 0 && key == running && key == c.timed_out) {
      report(it->lease, Status::kTimeout, "Timeout", c.timeout_message, c.pid, stderr_tail);
    } else if (running != 0 && key == running && c.timed_out == 0) {
      report(it->lease, Status::kLost, type, what, c.pid, stderr_tail);
    } else {
      // Not started, or (rarely) started just as the child was killed for the previous
      // task's time limit: not its fault, so not charged.
      it->recalled = false;
      backlog_.push_front(std::move(*it));
    }
  }
  c.assigned.clear();
  c.link.reset();
  ::kill(-c.pid, SIGKILL);  // commands its tasks started may outlive it: not past this point
  const auto now = Clock::now();
  // Children that keep dying young are restarted after 0.2 s, 0.4 s, ... up to 10 s; one this
  // supervisor killed (cancel, time limit) or recycled did not crash, unless killed for
  // breaking its link.
  const bool crashed = !recycled && (!c.killed || !c.broken.empty());
  c.quick_deaths = (crashed && now - c.started < kQuickDeath) ? c.quick_deaths + 1 : 0;
  const auto delay =
      c.quick_deaths == 0
          ? std::chrono::milliseconds(0)
          : std::min<std::chrono::milliseconds>(
                std::chrono::milliseconds(100L << std::min(c.quick_deaths, 10u)), kMaxRestartDelay);
  c.restart_at = now + delay;
  c.pid = -1;
}

/* The error type and message of a child's death. A SIGKILL nobody here sent is most often the
 * kernel's out-of-memory killer: certain when the cgroup counted a kill, else a guess. */
std::pair<std::string, std::string> Supervisor::describe_loss(const Child& c, int status) {
  auto what = describe_exit(c.pid, status);
  if (!c.broken.empty()) return {"WorkerLost", what + " after " + c.broken};
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL || c.killed) return {"WorkerLost", what};
  if (oom_kills_.one_more()) {
    return {"OutOfMemory",
            "worker process " + std::to_string(c.pid) +
                " was killed by the kernel for memory (out-of-memory killer, SIGKILL)"};
  }
  return {"WorkerLost", what + ", possibly by the kernel's out-of-memory killer"};
}

/* The call `c` is running under a time limit, if any. The task key is read before the start
 * time (slots.hpp), so the elapsed time is never overstated. */
std::optional<Supervisor::TimedCall> Supervisor::timed_call(const Child& c) const {
  if (c.pid <= 0 || c.killed) return std::nullopt;
  const auto& slot = running_[c.slot];
  const auto key = slot.task.load(std::memory_order_acquire);
  const auto started = slot.call_started.load(std::memory_order_acquire);
  if (key == 0 || started == 0) return std::nullopt;
  const auto it = std::find_if(c.assigned.begin(), c.assigned.end(),
                               [key](const Item& i) { return i.lease.task == key; });
  if (it == c.assigned.end() || it->lease.timeout_ms == 0) return std::nullopt;
  const Clock::time_point start{Clock::duration(started)};
  const auto limit = std::chrono::milliseconds(
      static_cast<long long>(std::min<std::uint64_t>(it->lease.timeout_ms, 1ULL << 40)));
  return TimedCall{key, start, start + limit, &it->lease,
                   slot.item.load(std::memory_order_relaxed)};
}

/* Kills every child whose call has run past its lease's limit; on_child_exit reports it. */
void Supervisor::enforce_time_limits(Clock::time_point now) {
  for (auto& c : children_) {
    const auto call = timed_call(c);
    if (!call || now < call->deadline) continue;
    const auto again = timed_call(c);  // the call may have ended while we looked
    if (!again || again->task != call->task || again->started != call->started) continue;
    const double ran = std::chrono::duration<double>(now - call->started).count();
    const double limit = static_cast<double>(call->lease->timeout_ms) / 1000;
    std::string where = call->lease->items > 0 ? " in item " + std::to_string(call->item + 1) +
                                                     " of " + std::to_string(call->lease->items)
                                               : "";
    c.timed_out = call->task;
    c.timeout_message = "killed after " + seconds(ran) + where + ": over its " + seconds(limit) +
                        " time limit" + (call->lease->items > 0 ? " per item" : "");
    log::warn("task {} ('{}') on worker process {}: {}", call->task, call->lease->function, c.pid,
              c.timeout_message);
    kill_child(c);
  }
}

void Supervisor::kill_child(Child& c) {
  if (c.pid <= 0) return;
  c.killed = true;
  ::kill(-c.pid, SIGKILL);  // its group: the commands its task started too
}

void Supervisor::shutdown_children() {
  // The zygote reaps them (and kills any left when this process closes its end).
  for (auto& c : children_) {
    kill_child(c);
    c.pid = -1;
    c.link.reset();
  }
}

}  // namespace dpool::detail
