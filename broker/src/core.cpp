/* The broker's loop: poll, read, one handler per command, dispatch, flush, timers.
 *
 * Everything happens on the thread that calls run(); the only cross-thread entries are stop()
 * (an eventfd the loop polls) and stats() (a snapshot published once per heartbeat tick). The
 * loop drains at most a bounded number of messages per turn so that heartbeats and expiry still
 * run while a client floods the broker.
 */
#include "core.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "dpool/curve.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

constexpr int kMaxMessagesPerTurn = 4096;
// Messages waiting to be read, per connection (the ROUTER's RCVHWM; see the constructor).
constexpr int kReceiveQueue = 100;
// Messages waiting to be sent, per connection (the ROUTER's SNDHWM; see the constructor).
constexpr int kSendQueue = 1000;
// A tick that read fewer frames (payload bytes) than this is quiet; a burst is this many since
// the last trim.
constexpr std::uint64_t kQuietTickFrames = 1000;
constexpr std::uint64_t kBurstFrames = 100000;
constexpr std::uint64_t kQuietTickBytes = 64u << 20;
constexpr std::uint64_t kBurstBytes = 256u << 20;
// How long, on closing, the connections keep sending what is queued for them (see the
// destructor).
constexpr int kCloseLingerMs = 500;

/* True when `endpoint` can only be reached from this host. */
bool loopback_only(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  const auto rest = endpoint.substr(6);
  const auto colon = rest.rfind(':');
  const auto host = rest.substr(0, colon);
  return host == "localhost" || host == "lo" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

}  // namespace

BrokerCore::BrokerCore(BrokerConfig config, bool insecure)
    : config_(std::move(config)),
      quota_{config_.max_tasks_per_client, config_.max_bytes_per_client, config_.max_message_size},
      decode_limits_{config_.decode_max_array, config_.decode_max_map, config_.decode_max_str,
                     config_.decode_max_depth},
      context_(1), socket_(context_, zmq::socket_type::router),
      instance_(random_u64()), ledger_(config_.priority_aging) {
  const bool known_scheme = config_.bind.rfind("tcp://", 0) == 0 ||
                            config_.bind.rfind("ipc://", 0) == 0 ||
                            config_.bind.rfind("inproc://", 0) == 0;
  if (!known_scheme) {
    throw Error(Errc::kUsage, "cannot listen on '" + config_.bind +
                                  "': an address looks like tcp://HOST:PORT or ipc:///PATH");
  }
  const auto keys = load_curve(config_.curve);
  if (!loopback_only(config_.bind) && !keys) {
    if (!insecure) {
      throw Error(Errc::kUsage, "refusing to listen on " + config_.bind +
                                    ": it is reachable from other hosts and CURVE is not set up "
                                    "(see docs/security.md); pass --insecure to do it anyway");
    }
    log::warn("listening on {} without CURVE (--insecure): anyone who can reach it can submit "
              "tasks and register workers", config_.bind);
  }
  if (keys) {
    // The ZAP handler must be bound before the ROUTER, or the first handshakes go unchecked.
    gate_ = std::make_unique<Gatekeeper>(context_, *keys, drops_);
    gate_->secure(socket_);
  }
  // A peer that reconnects (same routing id, new TCP connection) takes over its old pipe.
  socket_.set(zmq::sockopt::router_handover, 1);
  // Sending to a peer that is gone fails instead of vanishing, so results can be kept.
  socket_.set(zmq::sockopt::router_mandatory, 1);
  // Outgoing, a peer that stops reading (a frozen process, or one that sends STATUS and never
  // reads the REPORTs) would otherwise have the broker queue for it without end. Honest peers
  // read all the time and stay far below the bound: a worker host is sent at most its credit,
  // a client its results in batches. Past it a send fails at once (ROUTER_MANDATORY with
  // dontwait, see send()) and nothing is dropped silently.
  socket_.set(zmq::sockopt::sndhwm, kSendQueue);
  // Incoming, a full queue drops nothing: ZeroMQ stops reading that one connection and TCP
  // pushes back on its peer. Without a bound, a peer writing faster than this loop reads
  // (forged DONEs of 512 outcomes, say) piles up in the broker's memory: 760 MB in 4 s in
  // tests/test_hostile.cpp. Honest peers stay far below it: a client has at most a window of
  // tasks in flight, in SUBMITs of many, and a worker host its credit.
  socket_.set(zmq::sockopt::rcvhwm, kReceiveQueue);
  socket_.set(zmq::sockopt::linger, 0);
  // A frame larger than this makes ZeroMQ drop the connection before any of it is buffered
  // whole: what one message can make the broker allocate is bounded before we see it.
  socket_.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(config_.max_message_size));
  try {
    socket_.bind(config_.bind);
  } catch (const zmq::error_t& e) {
    throw Error(Errc::kUsage, "cannot listen on " + config_.bind + ": " + e.what());
  }
  endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  if (!config_.data_dir.empty()) {
    // Attached after the restore, so that what the journal gave back is not written again.
    auto journal = std::make_unique<Journal>(config_.data_dir);
    restore(journal->take_state());
    journal_ = std::move(journal);
  }
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw Error(Errc::kInternal, "eventfd failed");
}

BrokerCore::~BrokerCore() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
  // Not 0, though the loop runs with 0. libzmq 4.3 aborts the process (session_base.cpp,
  // clean_pipes: "Resource temporarily unavailable") when a connection that is part-way
  // through sending a multipart message breaks after its socket was closed with linger 0: the
  // closed pipe no longer yields the message's remaining frames. A peer that leaves just as
  // the broker stops does that. With a linger the pipe stays readable until it is drained, or
  // until the linger ends; only a peer that read nothing for all of it and leaves in the
  // moment after is still exposed. The cost is that closing waits up to this long for such a
  // peer.
  socket_.set(zmq::sockopt::linger, kCloseLingerMs);
}

void BrokerCore::stop() noexcept {
  stopping_.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void BrokerCore::run() {
  log::info("listening on {} (instance {:016x})", endpoint_, instance_);
  if (gate_)
    log::info("CURVE on: {} client keys, {} worker keys allowed", gate_->clients(),
              gate_->workers());
  const auto interval = config_.heartbeat.interval;
  next_tick_ = Clock::now() + interval;
  std::vector<zmq::pollitem_t> items{{socket_.handle(), 0, ZMQ_POLLIN, 0},
                                     {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
  if (gate_) items.push_back({gate_->socket().handle(), 0, ZMQ_POLLIN, 0});
  while (!stopping_.load()) {
    // Wake for the next heartbeat tick, or sooner for a retry whose delay ends or a deadline.
    auto wake = next_tick_;
    if (const auto due = ledger_.next_due(); due > 0) {
      wake = std::min(wake, Clock::time_point(std::chrono::milliseconds(due)));
    }
    if (next_held_due_ != Clock::time_point{}) wake = std::min(wake, next_held_due_);
    dpool::poll(items.data(), items.size(), until(wake, interval));
    turn_ = Clock::now();
    ledger_.set_now(now_ms(turn_));
    if (gate_) gate_->serve();
    for (int i = 0; i < kMaxMessagesPerTurn; ++i) {
      bool got = false;
      auto m = read_message(socket_, true, drops_, &got);
      if (!got) break;
      if (!m) continue;
      frames_this_tick_ += 2 + m->payloads.size();
      for (const auto& p : m->payloads) bytes_this_tick_ += p.size();
      handle(*m);
    }
    const auto now = Clock::now();
    expire_tasks(now);
    dispatch();
    flush();
    if (now >= next_tick_) {
      on_tick(now);
      next_tick_ = now + interval;
    }
  }
  publish_stats();
  log::info("stopped: {} tasks held, {} workers, {} clients", ledger_.size(), workers_.size(),
            clients_.size());
}

void BrokerCore::handle(Message& m) {
  who_ = identity_of(m);
  if (gate_ && !role_fits(m)) return;
  switch (m.command) {
    case Command::kHello:
      on_hello(m, client_session(who_));
      break;
    case Command::kSubmit:
      on_submit(m, client_session(who_));
      break;
    case Command::kAck:
      if (auto* c = clients_.find(who_)) on_ack(m, *c);
      else drops_.drop(DropReason::kUnknownPeer, who_, "ACK from an unknown client");
      break;
    case Command::kCancel:
      if (auto* c = clients_.find(who_)) on_cancel(m, *c);
      else drops_.drop(DropReason::kUnknownPeer, who_, "CANCEL from an unknown client");
      break;
    case Command::kJoin:
      on_join(m, client_session(who_));
      break;
    case Command::kJob:
      on_job(m, client_session(who_));
      break;
    case Command::kFetch:
      on_fetch(m, client_session(who_));
      break;
    case Command::kStatus:
      on_status(m, client_session(who_));
      break;
    case Command::kReady:
      on_ready(m);
      break;
    case Command::kDone:
      if (auto* w = workers_.find(who_)) {
        on_done(m, *w);
      } else {
        drops_.drop(DropReason::kUnknownPeer, who_, "DONE from an unregistered worker");
        disown(who_, "not registered");
      }
      break;
    case Command::kHeartbeat:
      on_heartbeat(m);
      break;
    case Command::kDisconnect:
      if (auto* w = workers_.find(who_)) remove_worker(*w, "it disconnected", false);
      else if (auto* c = clients_.find(who_)) purge_client(*c);
      break;
    case Command::kAccept:
    case Command::kTask:
    case Command::kResult:
    case Command::kJoined:
    case Command::kJobInfo:
    case Command::kFetched:
    case Command::kReport:
      drops_.drop(DropReason::kCommand, who_,
                  std::string(to_string(m.command)) + " sent to the broker");
      break;
  }
}

std::optional<Role> BrokerCore::required_role(Command command) {
  switch (command) {
    case Command::kHello:
    case Command::kSubmit:
    case Command::kAck:
    case Command::kCancel:
    case Command::kJoin:
    case Command::kJob:
    case Command::kFetch:
    case Command::kStatus:
      return Role::kClient;
    case Command::kReady:
    case Command::kDone:
      return Role::kWorker;
    case Command::kHeartbeat:
    case Command::kDisconnect:
      // Both roles send these: the session the routing id names decides, so a key of the
      // other role that took over a peer's routing id cannot keep its session alive or end it.
      if (workers_.find(who_)) return Role::kWorker;
      if (clients_.find(who_)) return Role::kClient;
      return std::nullopt;
    case Command::kAccept:
    case Command::kTask:
    case Command::kResult:
    case Command::kJoined:
    case Command::kJobInfo:
    case Command::kFetched:
    case Command::kReport:
      return std::nullopt;  // the broker's own commands: handle() drops them anyway
  }
  return std::nullopt;
}

bool BrokerCore::role_fits(const Message& m) {
  const auto need = required_role(m.command);
  if (!need) return true;
  const auto role = Gatekeeper::role_of(m.body);
  if (role == need) return true;
  drops_.drop(DropReason::kRole, who_,
              std::string(to_string(m.command)) + " needs a " + std::string(to_string(*need)) +
                  " key, sent with " +
                  (role ? "a " + std::string(to_string(*role)) + " key" : std::string("no role")));
  return false;
}

void BrokerCore::on_heartbeat(Message& m) {
  auto hb = body<wire::Heartbeat>(m);
  if (!hb) return;
  if (auto* w = workers_.find(who_)) {
    on_worker_heartbeat(*hb, *w);
  } else if (auto* c = clients_.find(who_)) {
    c->last_heard = Clock::now();
  } else {
    // A peer we do not know (we restarted, or expired it): tell it to introduce itself again.
    disown(who_, "unknown peer");
  }
}

bool BrokerCore::send_heartbeat(const std::string& identity, std::uint32_t processes,
                                bool to_client) {
  wire::Heartbeat hb;
  hb.instance = instance_;
  hb.processes = processes;
  if (to_client) {
    hb.max_tasks = quota_.max_tasks;
    hb.max_bytes = quota_.max_bytes;
    hb.max_message = quota_.max_message;
  }
  return send(identity, Command::kHeartbeat, hb);
}

void BrokerCore::not_sent(std::string_view identity, Command command) {
  ++counters_.unsent;
  const auto now = Clock::now();
  if (now < next_unsent_log_) return;
  next_unsent_log_ = now + std::chrono::seconds(10);
  log::warn("peer {} is not reading: {} messages wait for it, a {} was held back ({} so far; "
            "results and tasks go out again later, requests are repeated by their senders)",
            log::printable(identity), kSendQueue, to_string(command), counters_.unsent);
}

void BrokerCore::disown(const std::string& identity, std::string_view reason) {
  send(identity, Command::kDisconnect, wire::Disconnect{std::string(reason)});
}

void BrokerCore::on_tick(Clock::time_point now) {
  for (auto h : workers_.expired(now)) {
    if (auto* w = workers_.find(h)) {
      remove_worker(
          *w, "no heartbeat for " + std::to_string(config_.heartbeat.expiry().count()) + " ms");
    }
  }
  std::vector<PeerHandle> silent;
  for (auto& [h, c] : clients_) {
    if (now - c.last_heard > config_.client_timeout) silent.push_back(h);
    else resend_unacked(c, now);
  }
  for (auto h : silent) {
    if (auto* c = clients_.find(h)) {
      log::warn("client {} silent for {} ms: dropping its {} tasks", log::printable(c->identity),
                config_.client_timeout.count(), c->live.size());
      purge_client(*c);
    }
  }
  expire_jobs(now);
  release_memory();
  std::uint32_t processes = 0;
  for (auto& [h, w] : workers_) {
    processes += w.processes;
    send_heartbeat(w.identity);
  }
  for (auto& [h, c] : clients_) send_heartbeat(c.identity, processes, true);
  if (journal_) journal_->commit(true);  // results and ACKs reach the disk within a tick
  flush();

  if (ledger_.queued_total() > 0 && now >= next_idle_warning_) {
    for (FunctionId f = 0; f < ledger_.function_count(); ++f) {
      if (ledger_.queued(f) == 0) continue;
      if (const auto why = waiting_reason(f); !why.empty()) {
        log::warn("{} tasks wait: {}", ledger_.queued(f), why);
        next_idle_warning_ = now + std::chrono::seconds(10);
      }
    }
  }
  publish_stats();
}

/* After a burst, memory nothing uses any more stays with the broker: the hash tables keep the
 * capacity of their fullest moment, ZeroMQ's I/O thread receives into a malloc arena of its
 * own, whose free pages glibc gives back to the system only from its top (a client that
 * submits a million tasks at once leaves tens of MB there), and the process keeps up to
 * 256 MiB of freed payloads for the next ones (keep_payload_memory in util.hpp). The first
 * quiet tick after a burst, of frames or of payload bytes, shrinks the tables that are mostly
 * empty and hands free pages back (malloc_trim: a few ms on a heap of a few hundred MB); under
 * steady load no tick is quiet and nothing is spent. */
void BrokerCore::release_memory() {
  frames_since_trim_ += frames_this_tick_;
  bytes_since_trim_ += bytes_this_tick_;
  const bool quiet = frames_this_tick_ < kQuietTickFrames && bytes_this_tick_ < kQuietTickBytes;
  frames_this_tick_ = bytes_this_tick_ = 0;
  if (!quiet || (frames_since_trim_ < kBurstFrames && bytes_since_trim_ < kBurstBytes)) return;
  frames_since_trim_ = bytes_since_trim_ = 0;
  ledger_.compact();
  for (auto& [h, c] : clients_) {
    shrink_if_sparse(c.live);
    shrink_if_sparse(c.finished);
  }
  for (auto& [h, job] : jobs_) shrink_if_sparse(job.live);
  release_free_memory();
}

void BrokerCore::flush() {
  // One write (and one fdatasync if tasks were accepted) per turn, before any ACCEPT leaves.
  if (journal_) journal_->commit();
  if (!held_clients_.empty()) release_held();
  for (auto h : dirty_clients_) {
    if (auto* c = clients_.find(h)) {
      c->dirty = false;
      flush_client(*c);
    }
  }
  dirty_clients_.clear();
}

void BrokerCore::publish_stats() {
  BrokerStats s = counters_;
  s.workers = workers_.size();
  s.clients = clients_.size();
  s.tasks = ledger_.size();
  s.queued = ledger_.queued_total();
  s.dropped = drops_.total();
  for (FunctionId f = 0; f < ledger_.function_count(); ++f) {
    if (ledger_.queued(f) > 0 || ledger_.needs(f).empty())
      s.functions[ledger_.function_name(f)].queued += ledger_.queued(f);
  }
  for (auto& [h, w] : workers_) {
    for (auto f : w.functions) ++s.functions[ledger_.function_name(f)].workers;
  }
  std::lock_guard lock(stats_mutex_);
  published_ = std::move(s);
}

BrokerStats BrokerCore::stats() const {
  std::lock_guard lock(stats_mutex_);
  return published_;
}

}  // namespace dpool::detail

namespace dpool {

Broker::Broker(BrokerConfig config, bool insecure)
    : core_(std::make_unique<detail::BrokerCore>(std::move(config), insecure)) {}
Broker::~Broker() = default;
std::string Broker::endpoint() const { return core_->endpoint(); }
void Broker::run() { core_->run(); }
void Broker::stop() noexcept { core_->stop(); }
BrokerStats Broker::stats() const { return core_->stats(); }

}  // namespace dpool
