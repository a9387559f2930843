/* The worker host's supervisor loop and its side of the broker protocol (see supervisor.hpp
 * for the design; children.cpp and drain.cpp hold the rest). */
#include "supervisor.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "dpool/curve.hpp"
#include "dpool/log.hpp"
#include "executor.hpp"

namespace dpool::detail {
namespace {

// While a child holds a task with a time limit, the loop wakes at least this often: a child
// starts a task without telling anyone, and its deadline must be seen soon after.
constexpr auto kTimeLimitTick = std::chrono::milliseconds(50);
// A long task: outcomes of long tasks may wait to share a DONE (outcome_hold, for at most
// kMaxOutcomeHold), and tasks queued behind a long one may be taken over (take_over); quicker
// tasks leave a queue sooner than a hand-over would.
constexpr auto kLongTask = std::chrono::microseconds(1000);
constexpr auto kMaxOutcomeHold = std::chrono::microseconds(5000);

/* Recent tasks, on the moving mean, ran kLongTask or longer. */
bool long_tasks(const Pacing& pacing) {
  return pacing.mean_micros() >= static_cast<double>(kLongTask.count());
}

WorkerConfig resolved(WorkerConfig c) {
  if (c.processes == 0) c.processes = std::max(1u, std::thread::hardware_concurrency());
  return c;
}

}  // namespace

Supervisor::Supervisor(WorkerConfig config, WorkerHooks hooks)
    : config_(resolved(std::move(config))),
      hooks_(std::move(hooks)),
      running_(config_.processes),
      zygote_([this](std::size_t slot, int link) {
        run_executor(ExecutorSetup{link, &running_[slot], hooks_.initializer, ::getppid()});
      }),
      context_(1),
      broker_(context_, zmq::socket_type::dealer),
      handshakes_(context_, zmq::socket_type::pair),
      identity_(make_peer_id('w')),
      host_(host_name()),
      pacing_(config_.processes, config_.prefetch) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw Error(Errc::kInternal, "cannot set up the supervisor");

  broker_.set(zmq::sockopt::routing_id, identity_);
  broker_.set(zmq::sockopt::sndhwm, 0);
  broker_.set(zmq::sockopt::rcvhwm, 0);
  broker_.set(zmq::sockopt::linger, 1000);
  broker_.set(zmq::sockopt::reconnect_ivl, 100);
  broker_.set(zmq::sockopt::reconnect_ivl_max, 5000);
  // ZMTP heartbeats notice a dead TCP connection (a cut link) and make ZeroMQ reconnect.
  const auto ivl = static_cast<int>(config_.heartbeat.interval.count());
  broker_.set(zmq::sockopt::heartbeat_ivl, ivl);
  broker_.set(zmq::sockopt::heartbeat_timeout, ivl * static_cast<int>(config_.heartbeat.liveness));
  // A refused handshake (CURVE) leaves the DEALER no pipe, and a blocking send would then hang
  // the loop, signals and all; with no HWM a send can wait only then.
  broker_.set(zmq::sockopt::sndtimeo, 0);
  if (const auto keys = load_curve(config_.curve)) apply_curve(broker_, *keys);
  // Before the connect, so that no handshake goes unseen (reconnected()).
  const auto monitor = "inproc://handshakes-" + identity_;
  if (zmq_socket_monitor(broker_.handle(), monitor.c_str(), ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
    throw Error(Errc::kInternal, "cannot watch the broker connection");
  }
  handshakes_.connect(monitor);
  try {
    broker_.connect(config_.broker);
  } catch (const zmq::error_t& e) {
    throw Error(Errc::kUsage, "cannot connect to broker " + config_.broker + ": " + e.what());
  }
  children_.resize(config_.processes);
  for (std::size_t i = 0; i < children_.size(); ++i) children_[i].slot = i;
}

Supervisor::~Supervisor() {
  shutdown_children();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Supervisor::stop() noexcept {
  stopping_.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void Supervisor::drain() noexcept {
  drain_requested_.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void Supervisor::on_signal() noexcept {
  if (signals_.fetch_add(1) == 0) drain();
  else stop();
}

int Supervisor::run() {
  log::info("worker host {} connecting to {} with {} processes, {} functions", host_,
            config_.broker, config_.processes, task_names().size());
  for (auto& c : children_) spawn(c);
  send_ready();
  last_heard_ = Clock::now();
  next_heartbeat_ = Clock::now() + config_.heartbeat.interval;
  while (!stopping_.load() && !drained_) turn();
  log_stop();
  flush_outcomes();
  send_message(broker_, {}, Command::kDisconnect,
               wire::Disconnect{draining_ ? "worker drained" : "worker stopping"});
  shutdown_children();
  return exit_code_;
}

/* One loop turn: wait for something to do, do it. */
void Supervisor::turn() {
  std::vector<zmq::pollitem_t> items{{broker_.handle(), 0, ZMQ_POLLIN, 0},
                                     {nullptr, wake_fd_, ZMQ_POLLIN, 0},
                                     {nullptr, zygote_.fd(), ZMQ_POLLIN, 0}};
  constexpr std::size_t kWake = 1, kZygote = 2, kFirstLink = 3;
  const auto polled = poll_links(items);
  dpool::poll(items.data(), items.size(), poll_timeout());
  // Only what poll found ready is read: on one task at a time, every system call is latency.
  if (items[kWake].revents) {
    std::uint64_t woken = 0;
    [[maybe_unused]] auto n = ::read(wake_fd_, &woken, sizeof woken);
  }
  if (drain_requested_.load() && !draining_) {
    if (config_.drain_timeout.count() == 0) stopping_.store(true);
    else begin_drain();
  }

  while (auto m = read_message(broker_, false, drops_)) on_broker_message(*m);
  serve_links(items, kFirstLink, polled);
  if (items[kZygote].revents) on_zygote_events();
  const auto now = Clock::now();
  check_links(now);
  enforce_time_limits(now);
  if (draining_) {
    drain_turn(now);
  } else {
    respawn_children(now);
    assign();
  }
  send_outcomes(now);
  announce_credit(now);
  // A link back after silence: one heartbeat at once, for the broker to answer (or disown).
  if (now - last_heard_ > config_.heartbeat.expiry() && reconnected()) next_heartbeat_ = now;
  if (now >= next_heartbeat_) {
    // Idle from one heartbeat to the next: the payloads' memory kept for more goes back.
    const bool idle_now = idle();
    if (worked_since_trim_ && idle_now && idle_at_heartbeat_) {
      release_free_memory();
      worked_since_trim_ = false;
    }
    idle_at_heartbeat_ = idle_now;
    send_heartbeat();
    next_heartbeat_ = now + heartbeat_gap(now);
    if (now - last_heard_ > config_.heartbeat.expiry() && !broker_silent_logged_) {
      log::warn("broker {} silent for {} ms; still trying", config_.broker,
                config_.heartbeat.expiry().count());
      broker_silent_logged_ = true;
    }
  }
}

/* The heartbeat interval while the broker answers. While it is silent, every heartbeat waits in
 * ZeroMQ's queue until the link is back and then arrives stale, all at once: after an hour's
 * cut, 3,600 of them, each listing every task held. So the gap doubles per silent heartbeat, up
 * to kSilentHeartbeatGap. What brings this host back at once is the handshake of the new
 * connection (reconnected()); the spaced heartbeats are for a link that comes back without a
 * new handshake, which the broker, having forgotten this worker by then, answers only when one
 * reaches it (with the DISCONNECT that makes this host register again). */
std::chrono::milliseconds Supervisor::heartbeat_gap(Clock::time_point now) {
  const auto interval = config_.heartbeat.interval;
  if (now - last_heard_ <= config_.heartbeat.expiry()) {
    silent_gap_ = interval;
  } else {
    silent_gap_ = std::clamp(silent_gap_ * 2, interval, std::max(kSilentHeartbeatGap, interval));
  }
  return silent_gap_;
}

/* Whether ZeroMQ completed a handshake with the broker since the last call: the link is back
 * (or a restarted broker is up), and the heartbeat that was spaced out can go now. Read only
 * while the broker is silent; events from before are old news then and only cost one extra
 * heartbeat. */
bool Supervisor::reconnected() {
  bool any = false;
  zmq::message_t frame;
  while (handshakes_.recv(frame, zmq::recv_flags::dontwait)) {
    if (!frame.more()) any = true;  // an event is two frames: id and value, then the address
  }
  return any;
}

/* Until the next heartbeat, drain deadline, restart, time limit or lost link's grace,
 * whichever comes first. */
std::chrono::milliseconds Supervisor::poll_timeout() const {
  auto wake = next_heartbeat_;
  if (draining_) wake = std::min(wake, drain_deadline_);
  if (outcomes_due_ != Clock::time_point{}) wake = std::min(wake, outcomes_due_);
  bool timed = false;
  for (const auto& c : children_) {
    if (c.pid < 0 && !draining_) wake = std::min(wake, c.restart_at);
    timed = timed || std::any_of(c.assigned.begin(), c.assigned.end(),
                                 [](const Item& i) { return i.lease.timeout_ms > 0; });
    if (auto call = timed_call(c)) wake = std::min(wake, call->deadline);
    wake = std::min(wake, link_deadline(c));
  }
  if (has_idle_child()) {
    // A call that runs past kLongTask lets an idle child take what waits behind it. A queue
    // takeable already was not taken this turn: it became so since take_over looked (a loaded
    // machine), or could only be recalled. Look again in a moment, not at the next heartbeat.
    const auto now = Clock::now();
    for (const auto& c : children_) {
      const auto from = takeable_from(c, now);
      if (from != Clock::time_point::max()) wake = std::min(wake, std::max(from, now + kLongTask));
    }
  }
  return until(wake, timed ? kTimeLimitTick : config_.heartbeat.interval);
}

void Supervisor::send_ready() {
  wire::Ready r;
  r.host = host_;
  r.pid = static_cast<std::uint32_t>(::getpid());
  r.credit = pacing_.credit();
  announced_credit_ = r.credit;
  r.functions = task_names();
  r.tags = config_.tags;
  r.processes = config_.processes;
  send_message(broker_, {}, Command::kReady, r);
  // READY makes the broker forget that this worker drains: say it again at once.
  if (draining_) send_heartbeat();
}

bool Supervisor::idle() const {
  return backlog_.empty() && std::all_of(children_.begin(), children_.end(),
                                         [](const Child& c) { return c.assigned.empty(); });
}

void Supervisor::send_heartbeat() {
  // The broker takes a lease a HEARTBEAT does not list for lost: held outcomes go first.
  flush_outcomes();
  wire::Heartbeat hb;
  hb.last_seq = last_seq_;
  for (const auto& item : backlog_) hb.held.push_back(item.lease.task);
  for (const auto& c : children_) {
    for (const auto& item : c.assigned) hb.held.push_back(item.lease.task);
  }
  hb.draining = draining_;
  hb.credit = pacing_.credit();
  announced_credit_ = hb.credit;
  credit_announced_at_ = Clock::now();
  send_message(broker_, {}, Command::kHeartbeat, hb);
}

/* Tells the broker at once when the credit moved a lot (tasks turned out short, or long), but
 * not more than every 10 ms: a heartbeat lists every task held. */
void Supervisor::announce_credit(Clock::time_point now) {
  if (draining_ || !pacing_.worth_announcing(announced_credit_)) return;
  if (now - credit_announced_at_ < std::chrono::milliseconds(10)) return;
  send_heartbeat();
}

void Supervisor::on_broker_message(Message& m) {
  last_heard_ = Clock::now();
  if (broker_silent_logged_) {
    log::info("broker {} answers again", config_.broker);
    broker_silent_logged_ = false;
  }
  switch (m.command) {
    case Command::kTask:
      on_tasks(m);
      worked_since_trim_ = true;
      break;
    case Command::kHeartbeat: {
      auto hb = decode<wire::Heartbeat>(m, drops_, "broker");
      if (!hb || hb->instance == broker_instance_) return;
      // A new broker knows none of our leases; unstarted ones would be run for nobody.
      if (broker_instance_ != 0) {
        log::warn("broker restarted: registering again, dropping {} unstarted tasks",
                  backlog_.size());
        forget_unstarted();
      }
      broker_instance_ = hb->instance;
      break;
    }
    case Command::kDisconnect:
      // The broker expired us (and requeued our leases) or restarted (and never knew them):
      // either way unstarted ones would run for nobody, and its batch numbers start afresh.
      log::info("broker does not know this worker: registering again, dropping {} unstarted tasks",
                backlog_.size());
      forget_unstarted();
      break;
    case Command::kCancel:
      on_cancel(m);
      break;
    case Command::kJoin:
    case Command::kJoined:
    case Command::kJob:
    case Command::kJobInfo:
    case Command::kFetch:
    case Command::kFetched:
    case Command::kStatus:
    case Command::kReport:
    case Command::kHello:
    case Command::kReady:
    case Command::kSubmit:
    case Command::kAccept:
    case Command::kDone:
    case Command::kResult:
    case Command::kAck:
      drops_.drop(DropReason::kCommand, "broker",
                  std::string(to_string(m.command)) + " sent to a worker");
      break;
  }
}

void Supervisor::on_tasks(Message& m) {
  auto batch = decode<wire::TaskBatch>(m, drops_, "broker");
  if (!batch) return;
  if (batch->leases.size() != m.payloads.size()) {
    drops_.drop(DropReason::kPayloads, "broker", "TASK with mismatched payloads");
    return;
  }
  last_seq_ = std::max(last_seq_, batch->seq);
  for (std::size_t i = 0; i < batch->leases.size(); ++i) {
    if (draining_) {
      // Sent before the broker heard that we drain: straight back, uncharged.
      report(batch->leases[i], Status::kReturned, "Returned",
             "handed back unstarted: the worker is draining", 0);
      continue;
    }
    backlog_.push_back(Item{std::move(batch->leases[i]), std::move(m.payloads[i])});
  }
}

void Supervisor::forget_unstarted() {
  backlog_.clear();
  last_seq_ = 0;
  send_ready();
}

void Supervisor::on_cancel(Message& m) {
  auto cancel = decode<wire::Cancel>(m, drops_, "broker");
  if (!cancel) return;
  for (auto key : cancel->ids) {
    auto in_backlog = std::find_if(backlog_.begin(), backlog_.end(),
                                   [key](const Item& i) { return i.lease.task == key; });
    if (in_backlog != backlog_.end()) {
      report_cancelled(in_backlog->lease, 0);
      backlog_.erase(in_backlog);
      continue;
    }
    for (auto& c : children_) {
      auto held = std::find_if(c.assigned.begin(), c.assigned.end(),
                               [key](const Item& i) { return i.lease.task == key; });
      if (held == c.assigned.end()) continue;
      if (running_[c.slot].task.load() == key && c.pid > 0) {
        // A task cannot be interrupted in its process: the child is killed, its other tasks go
        // to another child uncharged, and on_child_exit reports this one cancelled.
        cancelled_.insert(key);
        kill_child(c);
      } else {
        // Not started: reported cancelled now, while the child may be busy for long; the child
        // is told to skip it, and whatever it says of it later is ignored (no longer assigned).
        report_cancelled(held->lease, c.pid);
        c.assigned.erase(held);
        tell(c, Command::kCancel, wire::Cancel{{key}});
        maybe_retire(c);
      }
    }
  }
}

void Supervisor::report(const wire::Lease& lease, Status status, std::string type,
                        std::string message, pid_t pid, std::string stderr_tail) {
  wire::Outcome o;
  o.task = lease.task;
  o.attempt = lease.attempt;
  o.status = status;
  o.error_type = std::move(type);
  o.error_message = std::move(message);
  o.pid = static_cast<std::uint32_t>(std::max<pid_t>(pid, 0));
  o.stderr_tail = std::move(stderr_tail);
  outcomes_.outcomes.push_back(std::move(o));
  results_.emplace_back();
}

void Supervisor::report_cancelled(const wire::Lease& lease, pid_t pid) {
  report(lease, Status::kCancelled, "Cancelled", "cancelled by its caller", pid);
}

void Supervisor::assign() {
  // Deal tasks out in rounds, one per child a round, so that idle children start work before
  // any child gets a second task queued behind its first.
  const std::size_t cap = pacing_.depth();
  std::vector<wire::TaskBatch> batches(children_.size());
  std::vector<std::vector<zmq::message_t>> payloads(children_.size());
  // A child still starting will be free soon: nothing is stacked behind a busy one meanwhile.
  const bool starting = std::any_of(children_.begin(), children_.end(), [](const Child& c) {
    return !c.retiring && (c.pid == 0 || (c.pid > 0 && !c.ready));
  });
  // The first round that can give anything: one past the shortest queue of an open child.
  std::size_t level = cap + 1;
  for (const auto& c : children_) {
    if (takes_tasks(c)) level = std::min(level, c.assigned.size() + 1);
  }
  for (; level <= cap && !backlog_.empty(); ++level) {
    if (level > 1 && starting) break;
    for (std::size_t i = 0; i < children_.size() && !backlog_.empty(); ++i) {
      Child& c = children_[i];
      if (!takes_tasks(c) || c.assigned.size() >= level) continue;
      Item& item = backlog_.front();
      batches[i].leases.push_back(item.lease);
      payloads[i].push_back(share(item.payload));  // the original stays here for a requeue
      item.index = c.sent++;
      c.assigned.push_back(std::move(item));
      backlog_.pop_front();
      ++c.assigned_total;
    }
  }
  if (backlog_.empty()) take_over(batches, payloads);
  for (std::size_t i = 0; i < children_.size(); ++i) {
    if (batches[i].leases.empty()) continue;
    // Never blocks: what the socket does not take now goes on POLLOUT. A child whose link fails
    // here is dying; its tasks go back to the backlog when its exit is reported.
    tell(children_[i], Command::kTask, batches[i], std::move(payloads[i]));
  }
}

bool Supervisor::takes_tasks(const Child& c) const {
  return c.pid > 0 && c.ready && !c.retiring && c.retire_reason.empty() && c.link &&
         !(config_.max_tasks_per_child && c.assigned_total >= config_.max_tasks_per_child);
}

/* With the backlog empty, a child with nothing to do takes over tasks queued behind a busy
 * sibling's running one, which would otherwise wait out that run while this child idles: the
 * short tasks queued behind a long one, or the last task of a batch (with 10 ms tasks on two
 * processes, most batches ended with one process idle for a task's length: W3 in bench/).
 * It takes the back half of the longest queue, so quick tasks are not passed back and forth. */
void Supervisor::take_over(std::vector<wire::TaskBatch>& batches,
                           std::vector<std::vector<zmq::message_t>>& payloads) {
  const auto now = Clock::now();
  for (std::size_t i = 0; i < children_.size(); ++i) {
    Child& idle = children_[i];
    if (!idle.assigned.empty() || !takes_tasks(idle)) continue;
    Child* donor = nullptr;
    for (auto& c : children_) {
      const bool longer = !donor || c.assigned.size() > donor->assigned.size();
      if (longer && takeable_from(c, now) <= now) donor = &c;
    }
    if (!donor) return;
    for (auto& item : take_queued(*donor)) {
      item.index = idle.sent++;
      batches[i].leases.push_back(item.lease);
      payloads[i].push_back(share(item.payload));
      idle.assigned.push_back(std::move(item));
      ++idle.assigned_total;
    }
  }
}

/* When tasks queued at `c` may be taken over: once it runs a call, at once while recent tasks
 * were long (kLongTask), else once that call has run that long; never with nothing queued. */
Clock::time_point Supervisor::takeable_from(const Child& c, Clock::time_point now) const {
  if (c.pid <= 0 || c.assigned.size() < 2) return Clock::time_point::max();
  const auto& slot = running_[c.slot];
  const auto started = slot.call_started.load(std::memory_order_acquire);
  // Running nothing: between two tasks, or not yet started on tasks just dealt, or starting one
  // (its start time is stored before its key). Nothing can be taken then, only recalled
  // (take_queued), which frees nothing until the child reaches them; and its start wakes
  // nobody (stores to shared memory), while it sends nothing until its first run ends. So look
  // again in a moment: a sibling that ran its share before this child was first scheduled
  // would otherwise idle out the whole of a long run.
  if (started == 0 || slot.task.load() == 0) return now + kLongTask;
  if (long_tasks(pacing_)) return Clock::time_point::min();
  return Clock::time_point(Clock::duration(started)) + kLongTask;
}

/* True when a child waits for work that take_over could give it. */
bool Supervisor::has_idle_child() const {
  return backlog_.empty() &&
         std::any_of(children_.begin(), children_.end(),
                     [this](const Child& c) { return c.assigned.empty() && takes_tasks(c); });
}

/* Tells `c` to skip the back half of its queue (slots.hpp: `skip`) and returns those tasks
 * when it is seen running one ahead of them, which proves it will skip them all. Otherwise
 * (between tasks, or already past the first of them) they stay and are marked recalled: the
 * child either runs each or answers "cancelled", and on_child_outcomes puts it back in the
 * backlog for whoever is free.
 *
 * Until the child is seen past the tasks taken from it before, the new range starts no later
 * than the old one, and every task still here inside it goes too. */
std::deque<Supervisor::Item> Supervisor::take_queued(Child& c) {
  auto& q = c.assigned;
  auto& slot = running_[c.slot];
  auto from = q[q.size() - q.size() / 2].index;  // half of the size - 1 queued, rounded up
  if (c.skip_from != c.skip_to && !runs_after_skipped(c, slot.task.load()) &&
      precedes(c.skip_from, from)) {
    from = c.skip_from;
  }
  const auto first = std::find_if(q.begin(), q.end(),
                                  [&](const Item& i) { return in_range(i.index, from, c.sent); });
  c.skip_from = from;
  c.skip_to = c.sent;
  slot.set_skip(from, c.sent);
  const auto running = slot.task.load();
  const auto at =
      std::find_if(q.begin(), first, [running](const Item& i) { return i.lease.task == running; });
  std::deque<Item> taken;
  if (running == 0 || at == first) {
    for (auto it = first; it != q.end(); ++it) it->recalled = true;
    return taken;
  }
  taken.assign(std::make_move_iterator(first), std::make_move_iterator(q.end()));
  q.erase(first, q.end());
  for (auto& item : taken) {
    item.recalled = false;  // a recall of earlier is answered by this proof
    c.given_away.insert(item.lease.task);
  }
  c.assigned_total -= taken.size();
  return taken;
}

/* True when `running` is a task `c` received after the range it was last told to skip: it
 * runs its queue in order, so it is past every task in that range. */
bool Supervisor::runs_after_skipped(const Child& c, std::uint64_t running) const {
  const auto it = std::find_if(c.assigned.begin(), c.assigned.end(), [running](const Item& i) {
    return running != 0 && i.lease.task == running;
  });
  return it != c.assigned.end() && !precedes(it->index, c.skip_to);
}

/* Outcomes of long tasks may wait a little, so that one DONE carries several and the broker
 * answers them with one TASK. With 10 ms tasks on two processes (W3 in bench/), every outcome
 * sent alone cost the supervisor, the broker and their I/O threads a wake-up each way, CPU
 * that the processes running tasks lose on a small machine.
 *
 * They wait only while recent tasks were long (kLongTask) and every process still has a task
 * queued behind the one it runs, so no process idles for the refill that waits with them; and
 * for at most half the mean run time, capped at kMaxOutcomeHold, so the queued task outlasts
 * the wait. Quick tasks are batched by the processes themselves (executor.cpp), and a lone task
 * never waits. A HEARTBEAT, a drain or the loop's end sends them at once. */
std::chrono::microseconds Supervisor::outcome_hold() const {
  if (draining_ || stopping_.load() || !long_tasks(pacing_)) return std::chrono::microseconds(0);
  // One outcome a process is as full as a batch gets: the next ones are a task's run away.
  if (outcomes_.outcomes.size() >= children_.size()) return std::chrono::microseconds(0);
  for (const auto& c : children_) {
    if (c.assigned.size() < 2) return std::chrono::microseconds(0);
  }
  return std::min(kMaxOutcomeHold,
                  std::chrono::microseconds(static_cast<std::int64_t>(pacing_.mean_micros() / 2)));
}

void Supervisor::send_outcomes(Clock::time_point now) {
  if (outcomes_.outcomes.empty()) return;
  const auto hold = outcome_hold();
  if (hold.count() > 0) {
    if (outcomes_due_ == Clock::time_point{}) outcomes_due_ = now + hold;
    if (now < outcomes_due_) return;
  }
  flush_outcomes();
}

void Supervisor::flush_outcomes() {
  outcomes_due_ = {};
  if (outcomes_.outcomes.empty()) return;
  send_message(broker_, {}, Command::kDone, outcomes_, std::move(results_));
  outcomes_.outcomes.clear();
  results_.clear();
}

/* Tasks this host holds: waiting here or given to a child (running or not). */
std::size_t Supervisor::held() const {
  std::size_t n = backlog_.size();
  for (const auto& c : children_) n += c.assigned.size();
  return n;
}

}  // namespace dpool::detail
