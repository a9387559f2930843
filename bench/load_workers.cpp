/* The simulated workers behind load_workers.hpp: one epoll loop per thread over its share of
 * the DEALER sockets. See the header for why they are simulated and why epoll.
 *
 * A worker answers each TASK at once with one DONE, so between two of its loop turns it holds
 * nothing: its HEARTBEAT reports last_seq and an empty `held`, which is the truth. Arguments
 * are decoded and results computed for real (square), so a lost, mixed-up or repeated payload
 * shows up as a wrong or missing result at the client, not only in a counter.
 */
#include "load_workers.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <dpool/codec.hpp>
#include <dpool/protocol.hpp>
#include <msgpack.hpp>
#include <mutex>
#include <stdexcept>
#include <unordered_set>
#include <utility>
#include <zmq.hpp>

namespace bench::load {

struct Relet {
  std::uint64_t key;
  Clock::time_point at;
};

struct SimWorkers::Shared {
  zmq::context_t context{1};
  std::atomic<bool> stopping{false};
  std::atomic<bool> kill_requested{false};
  std::atomic<std::uint64_t> executed{0}, malformed{0}, reregistered{0};
  dpool::DropCounters drops;
  mutable std::mutex mutex;  // guards everything below
  DeathReport death;
  std::unordered_set<std::uint64_t> victim_keys;
  std::vector<Relet> relets;  // every lease with attempt > 1, seen by a live worker
};

namespace {

constexpr int kMessagesPerVisit = 64;  // then other sockets get their turn

struct Sim {
  zmq::socket_t socket;
  std::string host;
  std::uint64_t last_seq = 0;
  Clock::time_point last_sent{}, next_heartbeat{};
  bool victim = false, dead = false;
};

std::string routing_id(std::size_t index) {
  char id[40];
  std::snprintf(id, sizeof id, "w-%016llx%016llx", static_cast<unsigned long long>(::getpid()),
                static_cast<unsigned long long>(index));
  return id;
}

Sim make_sim(zmq::context_t& context, const SimConfig& config, std::size_t index) {
  Sim s{zmq::socket_t(context, zmq::socket_type::dealer)};
  char host[32];
  std::snprintf(host, sizeof host, "sim-%04zu", index);
  s.host = host;
  s.victim = index == 0;
  // The options a real worker host sets (docs/protocol.md, "Socket options").
  s.socket.set(zmq::sockopt::routing_id, routing_id(index));
  s.socket.set(zmq::sockopt::sndhwm, 0);
  s.socket.set(zmq::sockopt::rcvhwm, 0);
  s.socket.set(zmq::sockopt::linger, 200);
  s.socket.set(zmq::sockopt::reconnect_ivl, 100);
  s.socket.set(zmq::sockopt::reconnect_ivl_max, 5000);
  const auto ivl = static_cast<int>(config.heartbeat.count());
  s.socket.set(zmq::sockopt::heartbeat_ivl, ivl);
  s.socket.set(zmq::sockopt::heartbeat_timeout, 3 * ivl);
  s.socket.connect(config.broker);
  return s;
}

/* x * x for the argument array [x], msgpack-encoded; nothing if the payload is not that. */
std::optional<zmq::message_t> square_of(const zmq::message_t& payload) {
  try {
    auto handle = msgpack::unpack(static_cast<const char*>(payload.data()), payload.size());
    const auto& args = handle.get();
    if (args.type != msgpack::type::ARRAY || args.via.array.size != 1) return std::nullopt;
    const auto x = args.via.array.ptr[0].as<std::int64_t>();
    msgpack::sbuffer out;
    msgpack::pack(out, x * x);
    return zmq::message_t(out.data(), out.size());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

class Loop {
 public:
  Loop(SimWorkers::Shared& shared, const SimConfig& config, std::vector<Sim> sims)
      : s_(shared), config_(config), sims_(std::move(sims)) {}

  void run();

 private:
  bool send(Sim& sim, dpool::Command command, const auto& body,
            std::vector<zmq::message_t> payloads = {}) {
    sim.last_sent = Clock::now();
    return dpool::send_message(sim.socket, {}, command, body, std::move(payloads));
  }
  void ready(Sim& sim) {
    dpool::wire::Ready r{
        sim.host, static_cast<std::uint32_t>(::getpid()), config_.credit, {config_.function}, {},
        1};
    send(sim, dpool::Command::kReady, r);
  }
  [[nodiscard]] bool readable(Sim& sim) {
    return (sim.socket.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0;
  }
  bool visit(Sim& sim);
  void on_task(Sim& sim, dpool::Message& m);
  void answer(Sim& sim, const dpool::wire::TaskBatch& batch, dpool::Message& m);
  void heartbeats(std::vector<std::size_t>& again);
  void check_kill();

  SimWorkers::Shared& s_;
  const SimConfig& config_;
  std::vector<Sim> sims_;
};

/* Reads what `sim` has waiting, up to a limit; true if it may have more. */
bool Loop::visit(Sim& sim) {
  for (int i = 0; i < kMessagesPerVisit; ++i) {
    bool got = false;
    auto m = dpool::read_message(sim.socket, false, s_.drops, &got);
    if (!got) return false;
    if (!m) {
      s_.malformed.fetch_add(1);
      continue;
    }
    if (m->command == dpool::Command::kTask) {
      on_task(sim, *m);
    } else if (m->command == dpool::Command::kDisconnect && !sim.dead) {
      // The broker no longer knows this worker (it restarted, or expired it): register again.
      s_.reregistered.fetch_add(1);
      ready(sim);
    }
  }
  return readable(sim);
}

void Loop::on_task(Sim& sim, dpool::Message& m) {
  auto batch = dpool::decode<dpool::wire::TaskBatch>(m, s_.drops, "broker");
  if (!batch || batch->leases.size() != m.payloads.size()) {
    s_.malformed.fetch_add(1);
    return;
  }
  sim.last_seq = std::max(sim.last_seq, batch->seq);
  if (sim.dead) {  // holds them without a word, as a frozen host would
    std::lock_guard lock(s_.mutex);
    for (const auto& lease : batch->leases) s_.victim_keys.insert(lease.task);
    s_.death.leases = s_.victim_keys.size();
    return;
  }
  answer(sim, *batch, m);
}

void Loop::answer(Sim& sim, const dpool::wire::TaskBatch& batch, dpool::Message& m) {
  const auto now = Clock::now();
  dpool::wire::DoneBatch done;
  std::vector<zmq::message_t> results;
  done.outcomes.reserve(batch.leases.size());
  results.reserve(batch.leases.size());
  for (std::size_t i = 0; i < batch.leases.size(); ++i) {
    const auto& lease = batch.leases[i];
    if (lease.attempt > 1) {
      std::lock_guard lock(s_.mutex);
      s_.relets.push_back({lease.task, now});
    }
    dpool::wire::Outcome o;
    o.task = lease.task;
    o.attempt = lease.attempt;
    o.pid = static_cast<std::uint32_t>(::getpid());
    o.micros = 1;
    auto value = square_of(m.payloads[i]);
    if (!value) {
      o.status = dpool::Status::kError;
      o.error_type = "BadArguments";
      o.error_message = "the simulated worker expected [int]";
      s_.malformed.fetch_add(1);
    }
    done.outcomes.push_back(std::move(o));
    results.push_back(value ? std::move(*value) : zmq::message_t());
  }
  send(sim, dpool::Command::kDone, done, std::move(results));
  s_.executed.fetch_add(batch.leases.size());
}

/* Every live worker whose interval has passed says it is alive and what it holds (nothing). */
void Loop::heartbeats(std::vector<std::size_t>& again) {
  const auto now = Clock::now();
  for (std::size_t i = 0; i < sims_.size(); ++i) {
    Sim& sim = sims_[i];
    if (sim.dead || now < sim.next_heartbeat) continue;
    dpool::wire::Heartbeat hb;
    hb.last_seq = sim.last_seq;
    send(sim, dpool::Command::kHeartbeat, hb);
    sim.next_heartbeat = now + config_.heartbeat;
    // A send may have taken in the signal that announced input: look again.
    if (readable(sim)) again.push_back(i);
  }
}

void Loop::check_kill() {
  if (!s_.kill_requested.load()) return;
  for (Sim& sim : sims_) {
    if (!sim.victim || sim.dead) continue;
    sim.dead = true;
    std::lock_guard lock(s_.mutex);
    s_.death.host = sim.host;
    s_.death.died = sim.last_sent;
  }
}

void Loop::run() {
  const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) {  // its workers never register, and the test's bounded wait for them fails
    std::perror("dpool-bench-load: epoll_create1");
    return;
  }
  for (std::size_t i = 0; i < sims_.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(epoll, EPOLL_CTL_ADD, sims_[i].socket.get(zmq::sockopt::fd), &ev);
    ready(sims_[i]);
    sims_[i].next_heartbeat = Clock::now() + config_.heartbeat;
  }
  std::vector<std::size_t> again, next;
  std::vector<epoll_event> events(256);
  while (!s_.stopping.load()) {
    check_kill();
    const int timeout = again.empty() ? 20 : 0;  // ms; bounds how late a heartbeat or a stop is
    const int n = ::epoll_wait(epoll, events.data(), static_cast<int>(events.size()), timeout);
    next.clear();
    for (int e = 0; e < n; ++e) {
      const auto i = static_cast<std::size_t>(events[static_cast<std::size_t>(e)].data.u64);
      if (visit(sims_[i])) next.push_back(i);
    }
    for (auto i : again) {
      if (visit(sims_[i])) next.push_back(i);
    }
    std::sort(next.begin(), next.end());
    next.erase(std::unique(next.begin(), next.end()), next.end());
    again.swap(next);
    heartbeats(again);
  }
  ::close(epoll);
  for (Sim& sim : sims_) {
    if (!sim.dead)
      send(sim, dpool::Command::kDisconnect, dpool::wire::Disconnect{"load test done"});
    sim.socket.close();
  }
}

}  // namespace

SimWorkers::SimWorkers(SimConfig config)
    : config_(std::move(config)), shared_(std::make_unique<Shared>()) {
  // Sockets beyond ZeroMQ's default of 1023 a context must be allowed before any is made.
  shared_->context.set(zmq::ctxopt::max_sockets, static_cast<int>(config_.workers + 64));
  const std::size_t threads =
      std::clamp<std::size_t>(config_.threads, 1, std::max<std::size_t>(config_.workers, 1));
  std::vector<std::vector<Sim>> shares(threads);
  try {
    for (std::size_t i = 0; i < config_.workers; ++i)
      shares[i % threads].push_back(make_sim(shared_->context, config_, i));
  } catch (const zmq::error_t& e) {
    throw std::runtime_error(std::string("cannot create the simulated workers' sockets: ") +
                             e.what() + " (raise the open file limit, ulimit -n)");
  }
  for (auto& share : shares) {
    threads_.emplace_back([this, sims = std::move(share)]() mutable {
      Loop loop(*shared_, config_, std::move(sims));
      loop.run();
    });
  }
}

SimWorkers::~SimWorkers() {
  shared_->stopping.store(true);
  for (auto& t : threads_) t.join();
}

void SimWorkers::kill_one() {
  shared_->kill_requested.store(true);
}

DeathReport SimWorkers::death() const {
  std::lock_guard lock(shared_->mutex);
  DeathReport d = shared_->death;
  std::unordered_set<std::uint64_t> seen;
  for (const auto& r : shared_->relets) {
    if (!shared_->victim_keys.contains(r.key) || !seen.insert(r.key).second) continue;
    if (!d.first_relet || r.at < *d.first_relet) d.first_relet = r.at;
    if (!d.last_relet || r.at > *d.last_relet) d.last_relet = r.at;
  }
  d.relet = seen.size();
  return d;
}

SimCounters SimWorkers::counters() const {
  return {shared_->executed.load(), shared_->malformed.load(), shared_->reregistered.load()};
}

}  // namespace bench::load
