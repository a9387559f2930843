/* Test support: hand-written DEALER peers that speak the dpool wire protocol to a broker, so a
 * test can play a client or a worker host message by message (docs/protocol.md).
 *
 * A FakePeer owns one DEALER socket and a background thread. The thread reads every message
 * from the broker into an inbox and, once enabled, sends a HEARTBEAT every interval, like a
 * real peer does. The socket is shared between the test thread (sends) and the background
 * thread under one mutex, which gives ZeroMQ the full memory barrier it asks for when a socket
 * moves between threads.
 *
 * expect<Body>(command, timeout) takes the oldest inbox message with that command (others stay
 * where they are, so an ACCEPT waiting behind a RESULT is not lost) and decodes its body;
 * HEARTBEATs are only returned when asked for by command.
 *
 * FakeWorker keeps what a supervisor would report in its heartbeats: the highest TASK seq
 * received (last_seq) and the task keys it holds (added when a TASK arrives, removed when the
 * test sends their DONE, or on purpose with forget()).
 */
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "dpool/codec.hpp"
#include "dpool/protocol.hpp"

namespace dpool::test {

/* A decoded message from the broker: its body and its payload frames as bytes. */
template <class T>
struct Received {
  T body;
  std::vector<std::string> payloads;
};

class FakePeer {
 public:
  using Clock = std::chrono::steady_clock;

  /* `receive_queue` 0 lets ZeroMQ read ahead without bound; a small one, with a small kernel
   * buffer, makes a peer that stops reading (set_reading) push back on the broker at once. */
  FakePeer(zmq::context_t& context, const std::string& endpoint, std::string identity,
           std::chrono::milliseconds heartbeat_interval, bool track_leases = false,
           int receive_queue = 0)
      : identity_(std::move(identity)),
        interval_(heartbeat_interval),
        track_leases_(track_leases),
        socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::routing_id, identity_);
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::sndhwm, 0);
    socket_.set(zmq::sockopt::rcvhwm, receive_queue);
    if (receive_queue > 0) socket_.set(zmq::sockopt::rcvbuf, 4096);
    socket_.connect(endpoint);
    thread_ = std::thread([this] { loop(); });
  }
  ~FakePeer() {
    stopping_.store(true);
    thread_.join();
    socket_.close();
  }
  FakePeer(const FakePeer&) = delete;
  FakePeer& operator=(const FakePeer&) = delete;

  [[nodiscard]] const std::string& identity() const { return identity_; }

  /* Sends one well-framed message; payloads become one frame each. */
  template <class T>
  bool send(Command command, const T& body, const std::vector<std::string>& payloads = {}) {
    std::vector<zmq::message_t> frames;
    frames.reserve(payloads.size());
    for (const auto& p : payloads) frames.emplace_back(p.data(), p.size());
    std::lock_guard lock(mutex_);
    last_sent_ = Clock::now();
    return send_message(socket_, {}, command, body, std::move(frames));
  }

  /* Sends arbitrary frames as one multipart message (the broker adds the routing id). */
  void send_raw(const std::vector<std::string>& frames) {
    std::lock_guard lock(mutex_);
    last_sent_ = Clock::now();
    for (std::size_t i = 0; i < frames.size(); ++i) {
      socket_.send(zmq::buffer(frames[i]),
                   i + 1 == frames.size() ? zmq::send_flags::none : zmq::send_flags::sndmore);
    }
  }

  /* A HEARTBEAT with the given worker fields, now (auto heartbeats go on independently). */
  void heartbeat(std::uint64_t last_seq = 0, std::vector<std::uint64_t> held = {}) {
    send(Command::kHeartbeat, wire::Heartbeat{0, last_seq, std::move(held)});
  }

  /* Turns the background HEARTBEAT every interval on or off. */
  void set_auto_heartbeat(bool on) {
    std::lock_guard lock(mutex_);
    auto_heartbeat_ = on;
    next_heartbeat_ = Clock::now() + interval_;
  }

  /* Stops or resumes reading from the socket (heartbeats go on): a frozen peer's inbox. */
  void set_reading(bool on) { reading_.store(on); }

  /* When this peer last sent anything (the latest moment the broker can have heard it). */
  [[nodiscard]] Clock::time_point last_sent() {
    std::lock_guard lock(mutex_);
    return last_sent_;
  }

  /* Waits for the oldest message with `command` and decodes it as T. */
  template <class T>
  std::optional<Received<T>> expect(Command command,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
    auto m = take(command, timeout);
    if (!m) return std::nullopt;
    DropCounters drops;
    auto body = decode<T>(*m, drops, "broker");
    if (!body) {
      ADD_FAILURE() << identity_ << ": undecodable " << to_string(command) << " from the broker";
      return std::nullopt;
    }
    Received<T> out{std::move(*body), {}};
    for (const auto& p : m->payloads) out.payloads.emplace_back(view(p));
    return out;
  }

  /* How many messages with `command` are waiting in the inbox now. */
  [[nodiscard]] std::size_t waiting(Command command) {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(
        std::count_if(inbox_.begin(), inbox_.end(),
                      [command](const Message& m) { return m.command == command; }));
  }

  /* Forgets every waiting message with `command`. */
  void discard(Command command) {
    std::lock_guard lock(mutex_);
    std::erase_if(inbox_, [command](const Message& m) { return m.command == command; });
  }

  /* HEARTBEATs received from the broker so far, and its instance id (0 until one arrived). */
  [[nodiscard]] std::uint64_t heartbeats_received() const { return heartbeats_.load(); }
  [[nodiscard]] std::uint64_t broker_instance() const { return instance_.load(); }

  /* Waits until `n` more broker HEARTBEATs have arrived: the broker sends one per tick, so this
   * waits for n ticks of its loop, each of which flushes everything of the turns before. */
  bool wait_ticks(std::uint64_t n, std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
    const auto target = heartbeats_.load() + n;
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return heartbeats_.load() >= target; });
  }

  /* Messages from the broker this peer could not read (it should speak well-formed). */
  [[nodiscard]] std::uint64_t malformed_from_broker() const { return drops_.total(); }

 protected:
  /* Worker bookkeeping; call with mutex_ held. */
  void release_locked(std::uint64_t key) { held_.erase(key); }
  std::mutex mutex_;
  std::uint64_t last_seq_ = 0;
  std::set<std::uint64_t> held_;
  zmq::socket_t& socket() { return socket_; }
  void touch_locked() { last_sent_ = Clock::now(); }

 private:
  std::optional<Message> take(Command command, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    std::optional<Message> out;
    cv_.wait_for(lock, timeout, [&] {
      auto it = std::find_if(inbox_.begin(), inbox_.end(),
                             [command](const Message& m) { return m.command == command; });
      if (it == inbox_.end()) return false;
      out = std::move(*it);
      inbox_.erase(it);
      return true;
    });
    return out;
  }

  void loop() {
    while (!stopping_.load()) {
      bool got_any = false;
      {
        std::lock_guard lock(mutex_);
        for (int i = 0; i < 1000 && reading_.load(); ++i) {
          bool got = false;
          auto m = read_message(socket_, false, drops_, &got);
          if (!got) break;
          got_any = true;
          if (m) on_message(std::move(*m));
        }
        const auto now = Clock::now();
        if (auto_heartbeat_ && now >= next_heartbeat_) {
          wire::Heartbeat hb;
          if (track_leases_) {
            hb.last_seq = last_seq_;
            hb.held.assign(held_.begin(), held_.end());
          }
          hb.draining = draining_.load();
          hb.credit = credit_.load();
          send_message(socket_, {}, Command::kHeartbeat, hb);
          last_sent_ = now;
          next_heartbeat_ = now + interval_;
        }
      }
      if (got_any) cv_.notify_all();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  void on_message(Message m) {
    if (m.command == Command::kHeartbeat) {
      DropCounters ignore;
      if (auto hb = decode<wire::Heartbeat>(m, ignore, "broker")) instance_.store(hb->instance);
      heartbeats_.fetch_add(1);
      // Keep only recent HEARTBEATs: nobody waits for an old one.
      if (std::count_if(inbox_.begin(), inbox_.end(),
                        [](const Message& x) { return x.command == Command::kHeartbeat; }) > 64) {
        inbox_.erase(std::find_if(inbox_.begin(), inbox_.end(), [](const Message& x) {
          return x.command == Command::kHeartbeat;
        }));
      }
    } else if (m.command == Command::kTask && track_leases_) {
      DropCounters ignore;
      if (auto batch = decode<wire::TaskBatch>(m, ignore, "broker")) {
        last_seq_ = std::max(last_seq_, batch->seq);
        for (const auto& lease : batch->leases) held_.insert(lease.task);
      }
    }
    inbox_.push_back(std::move(m));
  }

  const std::string identity_;
  const std::chrono::milliseconds interval_;
  const bool track_leases_;
  zmq::socket_t socket_;
  std::condition_variable cv_;
  std::deque<Message> inbox_;
  bool auto_heartbeat_ = false;
  Clock::time_point next_heartbeat_{};
  Clock::time_point last_sent_{};
  DropCounters drops_;
  std::atomic<std::uint64_t> heartbeats_{0};
 protected:
  std::atomic<bool> draining_{false};  // sent in every heartbeat
  std::atomic<std::uint32_t> credit_{0};  // sent in every heartbeat (0: as READY said)
 private:
  std::atomic<std::uint64_t> instance_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> reading_{true};
  std::thread thread_;
};

/* A worker host: READY, TASK in, DONE out, heartbeats with last_seq and held. */
class FakeWorker : public FakePeer {
 public:
  FakeWorker(zmq::context_t& context, const std::string& endpoint, const std::string& name,
             std::chrono::milliseconds heartbeat_interval)
      : FakePeer(context, endpoint, "w-" + name, heartbeat_interval, true), host_("host-" + name) {}

  [[nodiscard]] const std::string& host() const { return host_; }

  /* Registers with `credit` and `functions`, then heartbeats every interval. */
  void ready(std::uint32_t credit, std::vector<std::string> functions,
             std::map<std::string, std::string> tags = {}) {
    wire::Ready r;
    r.host = host_;
    r.pid = 4242;
    r.credit = credit;
    r.functions = std::move(functions);
    r.tags = std::move(tags);
    send(Command::kReady, r);
    set_auto_heartbeat(true);
  }

  std::optional<Received<wire::TaskBatch>> expect_task(
      std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
    return expect<wire::TaskBatch>(Command::kTask, timeout);
  }

  /* Collects leases (with their payloads) from TASKs until `n` arrived. */
  std::vector<std::pair<wire::Lease, std::string>> expect_leases(
      std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
    std::vector<std::pair<wire::Lease, std::string>> out;
    const auto deadline = Clock::now() + timeout;
    while (out.size() < n) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      auto batch = expect_task(left);
      if (!batch) break;
      EXPECT_EQ(batch->body.leases.size(), batch->payloads.size());
      for (std::size_t i = 0; i < batch->body.leases.size() && i < batch->payloads.size(); ++i) {
        out.emplace_back(batch->body.leases[i], batch->payloads[i]);
      }
    }
    return out;
  }

  /* Sends one DONE with these outcomes and payloads; the tasks are no longer held. */
  void done(const std::vector<wire::Outcome>& outcomes, const std::vector<std::string>& payloads) {
    std::vector<zmq::message_t> frames;
    for (const auto& p : payloads) frames.emplace_back(p.data(), p.size());
    std::lock_guard lock(mutex_);
    touch_locked();
    send_message(socket(), {}, Command::kDone, wire::DoneBatch{outcomes}, std::move(frames));
    // After the DONE, in the same critical section: no heartbeat can claim the task as
    // missing before its outcome is on the wire.
    for (const auto& o : outcomes) release_locked(o.task);
  }

  /* An ok outcome of `lease`, as this host's (fake) process 777 reports it. */
  static wire::Outcome outcome_of(const wire::Lease& lease) {
    wire::Outcome o;
    o.task = lease.task;
    o.attempt = lease.attempt;
    o.pid = 777;
    return o;
  }

  /* One outcome for `lease`. */
  void finish(const wire::Lease& lease, const std::string& result, Status status = Status::kOk,
              std::string error_type = {}) {
    auto o = outcome_of(lease);
    o.status = status;
    o.error_type = std::move(error_type);
    done({o}, {result});
  }

  /* An ok outcome for `lease` that leaves `held` alone: for outcomes the broker must refuse
   * (wrong attempt, unknown task) while this worker still holds the real lease. */
  void send_stale(const wire::Lease& lease, const std::string& result) {
    send(Command::kDone, wire::DoneBatch{{outcome_of(lease)}}, {result});
  }

  /* Says in every heartbeat from now on that it is draining (and sends one at once). */
  void drain() {
    draining_.store(true);
    wire::Heartbeat hb;
    hb.draining = true;
    hb.last_seq = last_seq();
    {
      std::lock_guard lock(mutex_);
      hb.held.assign(held_.begin(), held_.end());
    }
    send(Command::kHeartbeat, hb);
  }

  /* Asks for `credit` leases from now on, in a heartbeat sent at once and in every later one
   * (as a worker host does when its tasks turn out short or long). */
  void set_credit(std::uint32_t credit) {
    credit_.store(credit);
    wire::Heartbeat hb;
    hb.credit = credit;
    hb.draining = draining_.load();
    hb.last_seq = last_seq();
    {
      std::lock_guard lock(mutex_);
      hb.held.assign(held_.begin(), held_.end());
    }
    send(Command::kHeartbeat, hb);
  }

  /* Drops a task from `held` without an outcome (as if its DONE was lost on a cut link). */
  void forget(std::uint64_t key) {
    std::lock_guard lock(mutex_);
    release_locked(key);
  }

  [[nodiscard]] std::uint64_t last_seq() {
    std::lock_guard lock(mutex_);
    return last_seq_;
  }

 private:
  std::string host_;
};

/* A client session: HELLO, SUBMIT, ACCEPT in, RESULT in, ACK out. */
class FakeClient : public FakePeer {
 public:
  FakeClient(zmq::context_t& context, const std::string& endpoint, const std::string& name,
             std::chrono::milliseconds heartbeat_interval, int receive_queue = 0)
      : FakePeer(context, endpoint, "c-" + name, heartbeat_interval, false, receive_queue) {}

  /* Opens the session, then heartbeats every interval. */
  void hello() {
    send(Command::kHello, wire::Hello{"test-host", 1234, "fake"});
    set_auto_heartbeat(true);
  }

  void submit(const std::vector<wire::TaskSpec>& tasks, const std::vector<std::string>& payloads) {
    send(Command::kSubmit, wire::Submit{tasks}, payloads);
  }
  void submit(std::uint64_t id, const std::string& function, const std::string& payload,
              std::uint32_t max_attempts = 0) {
    submit({wire::TaskSpec{id, function, max_attempts}}, {payload});
  }

  void ack(std::vector<std::uint64_t> ids) { send(Command::kAck, wire::Ack{std::move(ids)}); }

  /* Waits for ACCEPTs until every id in `ids` was listed; returns the ids seen, in order. */
  std::vector<std::uint64_t> expect_accepted(
      const std::set<std::uint64_t>& ids,
      std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
    std::vector<std::uint64_t> seen;
    std::set<std::uint64_t> missing = ids;
    const auto deadline = Clock::now() + timeout;
    while (!missing.empty()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      auto a = expect<wire::Accept>(Command::kAccept, left);
      if (!a) break;
      for (auto id : a->body.ids) {
        seen.push_back(id);
        missing.erase(id);
      }
    }
    return seen;
  }

  struct Outcome {
    wire::Result meta;
    std::string payload;
  };

  /* Waits for RESULTs until one for each id in `ids` arrived (the first copy of each is kept;
   * `extra` counts results for other ids and repeated copies). */
  std::map<std::uint64_t, Outcome> expect_results(
      const std::set<std::uint64_t>& ids,
      std::chrono::milliseconds timeout = std::chrono::seconds(2), std::size_t* extra = nullptr) {
    std::map<std::uint64_t, Outcome> out;
    const auto deadline = Clock::now() + timeout;
    while (out.size() < ids.size()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      auto r = expect<wire::ResultBatch>(Command::kResult, left);
      if (!r) break;
      EXPECT_EQ(r->body.results.size(), r->payloads.size());
      for (std::size_t i = 0; i < r->body.results.size() && i < r->payloads.size(); ++i) {
        const auto& meta = r->body.results[i];
        if (!ids.contains(meta.id) || out.contains(meta.id)) {
          if (extra) ++*extra;
          continue;
        }
        out[meta.id] = Outcome{meta, r->payloads[i]};
      }
    }
    return out;
  }
};

}  // namespace dpool::test
