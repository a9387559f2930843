/* The worker host's supervisor loop (see supervisor.hpp for the design). */
#include "supervisor.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <thread>

#include "dpool/log.hpp"
#include "executor.hpp"

namespace dpool::detail {
namespace {

constexpr auto kQuickDeath = std::chrono::seconds(1);
constexpr auto kMaxRestartDelay = std::chrono::seconds(10);

std::string describe_exit(pid_t pid, int status) {
  std::string s = "worker process " + std::to_string(pid);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    s += " killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  } else if (WIFEXITED(status)) {
    s += " exited with code " + std::to_string(WEXITSTATUS(status));
  }
  return s;
}

WorkerConfig resolved(WorkerConfig c) {
  if (c.processes == 0) c.processes = std::max(1u, std::thread::hardware_concurrency());
  return c;
}

}  // namespace

Supervisor::SharedSlots::SharedSlots(std::size_t n) : n_(n) {
  void* mem = ::mmap(nullptr, sizeof(std::atomic<std::uint64_t>) * n, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw Error(Errc::kInternal, "cannot map memory shared with the children");
  words_ = static_cast<std::atomic<std::uint64_t>*>(mem);
  for (std::size_t i = 0; i < n; ++i) new (&words_[i]) std::atomic<std::uint64_t>(0);
}

Supervisor::SharedSlots::~SharedSlots() { ::munmap(words_, sizeof(std::atomic<std::uint64_t>) * n_); }

Supervisor::Supervisor(WorkerConfig config, WorkerHooks hooks)
    : config_(resolved(std::move(config))), hooks_(std::move(hooks)), running_(config_.processes),
      zygote_([this](std::size_t slot, const std::string& endpoint) {
        run_executor(ExecutorSetup{endpoint, &running_[slot], hooks_.initializer, ::getppid()});
      }),
      context_(1), broker_(context_, zmq::socket_type::dealer), identity_(make_peer_id('w')),
      host_(host_name()) {
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

int Supervisor::run() {
  log::info("worker host {} connecting to {} with {} processes, {} functions", host_,
            config_.broker, config_.processes, task_names().size());
  for (auto& c : children_) spawn(c);
  send_ready();
  last_heard_ = Clock::now();
  auto next_heartbeat = Clock::now() + config_.heartbeat.interval;
  std::vector<zmq::pollitem_t> items;
  while (!stopping_.load()) {
    items.clear();
    items.push_back({broker_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
    items.push_back({nullptr, zygote_.fd(), ZMQ_POLLIN, 0});
    for (auto& c : children_) {
      if (c.pair) items.push_back({c.pair->handle(), 0, ZMQ_POLLIN, 0});
    }
    dpool::poll(items.data(), items.size(), until(next_heartbeat, config_.heartbeat.interval));
    std::uint64_t drained = 0;
    [[maybe_unused]] auto n = ::read(wake_fd_, &drained, sizeof drained);

    while (auto m = read_message(broker_, false, drops_)) on_broker_message(*m);
    for (auto& c : children_) {
      while (c.pair) {
        auto m = read_message(*c.pair, false, drops_);
        if (!m) break;
        on_child_message(c, *m);
      }
    }
    on_zygote_events();
    const auto now = Clock::now();
    for (auto& c : children_) {
      if (c.pid < 0 && now >= c.restart_at && !stopping_.load()) spawn(c);
    }
    assign();
    flush_outcomes();
    if (now >= next_heartbeat) {
      send_heartbeat();
      next_heartbeat = now + config_.heartbeat.interval;
      if (now - last_heard_ > config_.heartbeat.expiry() && !broker_silent_logged_) {
        log::warn("broker {} silent for {} ms; still trying", config_.broker,
                  config_.heartbeat.expiry().count());
        broker_silent_logged_ = true;
      }
    }
  }
  log::info("stopping: the broker requeues the {} tasks held here", backlog_.size());
  flush_outcomes();
  send_message(broker_, {}, Command::kDisconnect, wire::Disconnect{"worker stopping"});
  shutdown_children();
  return exit_code_;
}

void Supervisor::send_ready() {
  wire::Ready r;
  r.host = host_;
  r.pid = static_cast<std::uint32_t>(::getpid());
  r.credit = config_.processes * (1 + config_.prefetch);
  r.functions = task_names();
  r.tags = config_.tags;
  r.processes = config_.processes;
  send_message(broker_, {}, Command::kReady, r);
}

void Supervisor::send_heartbeat() {
  wire::Heartbeat hb;
  hb.last_seq = last_seq_;
  for (const auto& item : backlog_) hb.held.push_back(item.lease.task);
  for (const auto& c : children_) {
    for (const auto& item : c.assigned) hb.held.push_back(item.lease.task);
  }
  send_message(broker_, {}, Command::kHeartbeat, hb);
}

void Supervisor::on_broker_message(Message& m) {
  last_heard_ = Clock::now();
  if (broker_silent_logged_) {
    log::info("broker {} answers again", config_.broker);
    broker_silent_logged_ = false;
  }
  switch (m.command) {
    case Command::kTask: {
      auto batch = decode<wire::TaskBatch>(m, drops_, "broker");
      if (!batch) return;
      if (batch->leases.size() != m.payloads.size()) {
        drops_.drop(DropReason::kPayloads, "broker", "TASK with mismatched payloads");
        return;
      }
      last_seq_ = std::max(last_seq_, batch->seq);
      for (std::size_t i = 0; i < batch->leases.size(); ++i) {
        backlog_.push_back(Item{std::move(batch->leases[i]), std::move(m.payloads[i])});
      }
      break;
    }
    case Command::kHeartbeat: {
      auto hb = decode<wire::Heartbeat>(m, drops_, "broker");
      if (!hb || hb->instance == broker_instance_) return;
      if (broker_instance_ != 0) {
        // A new broker knows none of our leases; unstarted ones would be run for nobody.
        log::warn("broker restarted: registering again, dropping {} unstarted tasks", backlog_.size());
        backlog_.clear();
        last_seq_ = 0;
        send_ready();
      }
      broker_instance_ = hb->instance;
      break;
    }
    case Command::kDisconnect:
      // The broker expired us (and requeued our leases) or restarted (and never knew them):
      // either way unstarted ones would run for nobody, and its batch numbers start afresh.
      log::info("broker does not know this worker: registering again, dropping {} unstarted tasks",
                backlog_.size());
      backlog_.clear();
      last_seq_ = 0;
      send_ready();
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
      drops_.drop(DropReason::kCommand, "broker", std::string(to_string(m.command)) + " sent to a worker");
      break;
  }
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
      if (running_[c.slot].load() == key && c.pid > 0) {
        // A task cannot be interrupted in its process: the child is killed, its other tasks go
        // to another child uncharged, and on_child_exit reports this one cancelled.
        cancelled_.insert(key);
        ::kill(-c.pid, SIGKILL);
      } else {
        // Not started: reported cancelled now, while the child may be busy for long; the child
        // is told to skip it, and whatever it says of it later is ignored (no longer assigned).
        report_cancelled(held->lease, c.pid);
        c.assigned.erase(held);
        if (c.pair) send_message(*c.pair, {}, Command::kCancel, wire::Cancel{{key}}, {}, true);
      }
    }
  }
}

void Supervisor::report_cancelled(const wire::Lease& lease, pid_t pid) {
  wire::Outcome o;
  o.task = lease.task;
  o.attempt = lease.attempt;
  o.status = Status::kCancelled;
  o.error_type = "Cancelled";
  o.error_message = "cancelled by its caller";
  o.pid = static_cast<std::uint32_t>(pid);
  outcomes_.outcomes.push_back(std::move(o));
  results_.emplace_back();
}

void Supervisor::on_child_message(Child& c, Message& m) {
  if (m.command == Command::kReady) {
    c.ready = true;
    return;
  }
  if (m.command != Command::kDone) return;
  auto done = decode<wire::DoneBatch>(m, drops_, "child");
  if (!done || done->outcomes.size() != m.payloads.size()) return;
  for (std::size_t i = 0; i < done->outcomes.size(); ++i) {
    auto& o = done->outcomes[i];
    auto it = std::find_if(c.assigned.begin(), c.assigned.end(),
                           [&](const Item& item) { return item.lease.task == o.task; });
    if (it == c.assigned.end()) continue;
    c.assigned.erase(it);
    cancelled_.erase(o.task);
    ++c.done;
    outcomes_.outcomes.push_back(std::move(o));
    results_.push_back(std::move(m.payloads[i]));
  }
  if (config_.max_tasks_per_child && c.done >= config_.max_tasks_per_child && c.assigned.empty() &&
      !c.retiring) {
    // Recycle: the child exits after this, and the exit report starts a fresh one at once.
    c.retiring = true;
    if (!send_message(*c.pair, {}, Command::kDisconnect, wire::Disconnect{"max tasks per child"}, {}, true)) {
      ::kill(-c.pid, SIGKILL);  // it cannot hear us; its exit report replaces it all the same
    }
  }
}

void Supervisor::spawn(Child& c) {
  const std::string endpoint = "ipc://@dpool-" + std::to_string(::getpid()) + "-" +
                               std::to_string(c.slot) + "-" + std::to_string(++generation_);
  c.pair = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
  c.pair->set(zmq::sockopt::linger, 0);
  c.pair->set(zmq::sockopt::sndhwm, 0);
  c.pair->set(zmq::sockopt::rcvhwm, 0);
  c.pair->bind(endpoint);
  running_[c.slot].store(0);
  c.pid = 0;
  c.started = Clock::now();
  c.retiring = false;
  c.ready = false;
  c.done = 0;
  c.assigned_total = 0;
  zygote_.spawn(c.slot, endpoint);
}

void Supervisor::on_zygote_events() {
  bool alive = true;
  for (const auto& e : zygote_.events(alive)) {
    switch (e.kind) {
      case Zygote::Event::Kind::kSpawned:
        if (e.slot < children_.size() && children_[e.slot].pid == 0) children_[e.slot].pid = e.pid;
        break;
      case Zygote::Event::Kind::kFailed:
        log::error("cannot start a worker process: {}", std::strerror(e.status));
        if (e.slot < children_.size()) {
          children_[e.slot].pid = -1;
          children_[e.slot].pair.reset();
          children_[e.slot].restart_at = Clock::now() + std::chrono::seconds(1);
        }
        break;
      case Zygote::Event::Kind::kExited:
        for (auto& c : children_) {
          if (c.pid == e.pid) on_child_exit(c, e.status);
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

void Supervisor::on_child_exit(Child& c, int status) {
  const auto running = running_[c.slot].exchange(0);
  const bool recycled = c.retiring && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  const auto what = describe_exit(c.pid, status);
  if (!recycled) log::warn("{} ({} tasks held)", what, c.assigned.size());
  // The task it was running is charged; the ones it had not started go to another child.
  bool killed_for_cancel = false;
  for (auto it = c.assigned.rbegin(); it != c.assigned.rend(); ++it) {
    if (cancelled_.erase(it->lease.task)) {
      killed_for_cancel = killed_for_cancel || it->lease.task == running;
      report_cancelled(it->lease, c.pid);
    } else if (running != 0 && it->lease.task == running) {
      wire::Outcome o;
      o.task = it->lease.task;
      o.attempt = it->lease.attempt;
      o.status = Status::kLost;
      o.error_type = "WorkerLost";
      o.error_message = what;
      o.pid = static_cast<std::uint32_t>(c.pid);
      outcomes_.outcomes.push_back(std::move(o));
      results_.emplace_back();
    } else {
      backlog_.push_front(std::move(*it));
    }
  }
  c.assigned.clear();
  c.pair.reset();
  ::kill(-c.pid, SIGKILL);  // commands its tasks started may outlive it: not past this point
  const auto now = Clock::now();
  // A child killed to cancel its task did not crash: no back-off for that.
  const bool cancelled_kill = killed_for_cancel;
  c.quick_deaths = (!recycled && !cancelled_kill && now - c.started < kQuickDeath) ? c.quick_deaths + 1 : 0;
  // Children that keep dying young are restarted after 0.2 s, 0.4 s, ... up to 10 s.
  const auto delay = c.quick_deaths == 0
                         ? std::chrono::milliseconds(0)
                         : std::min<std::chrono::milliseconds>(
                               std::chrono::milliseconds(100L << std::min(c.quick_deaths, 10u)),
                               kMaxRestartDelay);
  c.restart_at = now + delay;
  c.pid = -1;
}

void Supervisor::assign() {
  // Deal tasks out in rounds, one per child a round, so that idle children start work before
  // any child gets a second task queued behind its first.
  const std::size_t cap = 1 + config_.prefetch;
  std::vector<wire::TaskBatch> batches(children_.size());
  std::vector<std::vector<zmq::message_t>> payloads(children_.size());
  // A child still starting will be free soon: nothing is stacked behind a busy one meanwhile.
  const bool starting = std::any_of(children_.begin(), children_.end(), [](const Child& c) {
    return !c.retiring && (c.pid == 0 || (c.pid > 0 && !c.ready));
  });
  for (std::size_t level = 1; level <= cap && !backlog_.empty(); ++level) {
    if (level > 1 && starting) break;
    for (std::size_t i = 0; i < children_.size() && !backlog_.empty(); ++i) {
      Child& c = children_[i];
      if (c.pid <= 0 || !c.ready || c.retiring || !c.pair || c.assigned.size() >= level) continue;
      if (config_.max_tasks_per_child && c.assigned_total >= config_.max_tasks_per_child) continue;
      Item& item = backlog_.front();
      batches[i].leases.push_back(item.lease);
      payloads[i].push_back(share(item.payload));  // the original stays here for a requeue
      c.assigned.push_back(std::move(item));
      backlog_.pop_front();
      ++c.assigned_total;
    }
  }
  for (std::size_t i = 0; i < children_.size(); ++i) {
    if (batches[i].leases.empty()) continue;
    Child& c = children_[i];
    // Never block on a child: one that died (not yet reported) would hold the whole host.
    // Its tasks wait for the next turn.
    if (!send_message(*c.pair, {}, Command::kTask, batches[i], std::move(payloads[i]), true)) {
      for (std::size_t k = 0; k < batches[i].leases.size(); ++k) {
        backlog_.push_front(std::move(c.assigned.back()));
        c.assigned.pop_back();
        --c.assigned_total;
      }
    }
  }
}

void Supervisor::flush_outcomes() {
  if (outcomes_.outcomes.empty()) return;
  send_message(broker_, {}, Command::kDone, outcomes_, std::move(results_));
  outcomes_.outcomes.clear();
  results_.clear();
}

void Supervisor::shutdown_children() {
  // The zygote reaps them (and kills any left when this process closes its end).
  for (auto& c : children_) {
    if (c.pid > 0) ::kill(-c.pid, SIGKILL);
    c.pid = -1;
    c.pair.reset();
  }
}

}  // namespace dpool::detail
