/* The supervisor of a worker host: one DEALER connection to the broker, N child processes.
 *
 * Leases from the broker wait in a local backlog and are handed to children, at most 1 +
 * prefetch each, or more while tasks are short (pacing.hpp: the credit and the depth follow how
 * long tasks run). A child left idle with the backlog empty takes over tasks queued behind a
 * busy sibling's running one (take_over). Outcomes from children go back to the broker in
 * batches. Children are forked by the zygote (zygote.hpp), never by this multi-threaded
 * process. A child that dies is reported at once: the task it was running is reported kLost
 * (the broker retries it or, past the attempt limit, fails it), the tasks it had not started go
 * back to the backlog, and a new child is started, with a growing delay when children keep
 * dying young.
 *
 * The supervisor's heartbeat carries the highest TASK sequence it received and every task it
 * holds, which lets the broker requeue a lease that was lost on the way. When the broker's
 * instance id changes (it restarted) or it says DISCONNECT, the supervisor registers again.
 *
 * Limits (children.cpp): a call running past its lease's time limit has its child killed and
 * is reported kTimeout; a child whose resident memory passes max_memory_per_child is replaced
 * once its running task is done. Both read what a child is doing from memory shared with it
 * (slots.hpp), so a child busy in user code needs to answer nothing.
 *
 * Drain (drain.cpp): the first SIGTERM or SIGINT makes the host say so in its heartbeats,
 * hand back every lease it has not started (kReturned), let the running tasks finish for up to
 * drain_timeout, and leave with DISCONNECT; a second signal stops at once.
 *
 * Children: each talks to the supervisor over a link of its own (link.hpp), an AF_UNIX stream
 * socket the loop polls beside the broker's socket and reads and writes itself, never blocking
 * on it. A child that breaks its link (a message over the caps, garbage) is killed: it runs
 * user code, and nothing it writes may take the host down or make it allocate without bound.
 *
 * The sources: supervisor.cpp (the loop, the broker), children.cpp (children's life and
 * limits), child_links.cpp (the links), drain.cpp (the drain).
 */
#pragma once

#include <sys/types.h>

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <zmq.hpp>

#include "dpool/codec.hpp"
#include "dpool/config.hpp"
#include "dpool/util.hpp"
#include "dpool/worker.hpp"
#include "link.hpp"
#include "pacing.hpp"
#include "proc_stats.hpp"
#include "slots.hpp"
#include "zygote.hpp"

namespace dpool::detail {

class Supervisor {
 public:
  Supervisor(WorkerConfig config, WorkerHooks hooks);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  int run();
  /* Each async-signal-safe: they only set a flag and wake the loop. */
  void stop() noexcept;       // leave now: the broker runs what is held here elsewhere
  void drain() noexcept;      // finish the running tasks, hand back the rest, then leave
  void on_signal() noexcept;  // SIGTERM, SIGINT: the first drains, a later one stops

 private:
  struct Item {
    wire::Lease lease;
    zmq::message_t payload;
    bool recalled = false;  // the child was asked to skip it; its "cancelled" answer confirms
    std::uint32_t index = 0;  // the child's count of tasks sent before it (slots.hpp: `skip`)
  };
  struct Child {
    std::size_t slot = 0;
    pid_t pid = -1;  // -1: none, 0: asked of the zygote
    std::unique_ptr<Link> link;  // null once it ended or broke (or with no child)
    Clock::time_point link_lost;  // when it ended, while the child lives on
    std::string broken;           // why the child was killed for its link
    std::deque<Item> assigned;   // in the order the child runs them
    std::uint64_t assigned_total = 0;  // given to it to run (max_tasks_per_child)
    std::uint32_t sent = 0;            // tasks sent since it started, taken over or not
    std::uint32_t skip_from = 0;       // the range of them it was last told to skip
    std::uint32_t skip_to = 0;
    // Keys of tasks taken from it that it has yet to answer for. It answers "cancelled" for
    // each, which must not be taken for the outcome of the same task given back to it since.
    std::unordered_multiset<std::uint64_t> given_away;
    std::uint64_t done = 0;
    bool ready = false;     // it said READY: connected, initializer done
    bool retiring = false;  // told to exit (DISCONNECT)
    std::string retire_reason;  // set: replace it once its running task is done
    bool killed = false;        // this supervisor sent it SIGKILL: its death is no crash
    std::uint64_t timed_out = 0;  // the task it was killed for running past its time limit
    std::string timeout_message;
    unsigned quick_deaths = 0;
    Clock::time_point started;
    Clock::time_point restart_at;
  };
  /* A call a child is running now under a time limit. */
  struct TimedCall {
    std::uint64_t task = 0;
    Clock::time_point started;
    Clock::time_point deadline;
    const wire::Lease* lease = nullptr;
    std::uint32_t item = 0;
  };

  // supervisor.cpp
  void turn();
  [[nodiscard]] std::chrono::milliseconds poll_timeout() const;
  void send_ready();
  void send_heartbeat();
  [[nodiscard]] bool idle() const;  // no task held, in the backlog or in a child
  [[nodiscard]] std::chrono::milliseconds heartbeat_gap(Clock::time_point now);
  [[nodiscard]] bool reconnected();
  void announce_credit(Clock::time_point now);
  void on_broker_message(Message& m);
  void on_tasks(Message& m);
  void on_cancel(Message& m);
  void forget_unstarted();
  void report(const wire::Lease& lease, Status status, std::string type, std::string message,
              pid_t pid, std::string stderr_tail = {});
  void report_cancelled(const wire::Lease& lease, pid_t pid);
  void assign();
  [[nodiscard]] bool takes_tasks(const Child& c) const;
  void take_over(std::vector<wire::TaskBatch>& batches,
                 std::vector<std::vector<zmq::message_t>>& payloads);
  [[nodiscard]] std::deque<Item> take_queued(Child& c);
  [[nodiscard]] bool runs_after_skipped(const Child& c, std::uint64_t running) const;
  [[nodiscard]] Clock::time_point takeable_from(const Child& c, Clock::time_point now) const;
  [[nodiscard]] bool has_idle_child() const;
  [[nodiscard]] std::chrono::microseconds outcome_hold() const;
  void send_outcomes(Clock::time_point now);  // unless they may wait (outcome_hold)
  void flush_outcomes();
  [[nodiscard]] std::size_t held() const;

  // children.cpp
  void spawn(Child& c);
  void reset_for_spawn(Child& c);
  void respawn_children(Clock::time_point now);
  void on_zygote_events();
  void on_child_message(Child& c, Message& m);
  void on_child_outcomes(Child& c, Message& m);
  void on_child_exit(Child& c, int status, std::string stderr_tail);
  [[nodiscard]] std::pair<std::string, std::string> describe_loss(const Child& c, int status);
  void check_memory(Child& c);
  [[nodiscard]] std::deque<Item> recall_unstarted(Child& c);
  void maybe_retire(Child& c);
  [[nodiscard]] std::optional<TimedCall> timed_call(const Child& c) const;
  void enforce_time_limits(Clock::time_point now);
  void kill_child(Child& c);
  void shutdown_children();

  // child_links.cpp
  /* Queues a message for `c` and writes what its socket takes now, never blocking. Returns
   * false when `c` has no link (any more). */
  template <class T>
  bool tell(Child& c, Command command, const T& body, std::vector<zmq::message_t> payloads = {}) {
    if (!c.link) return false;
    c.link->send(command, body, std::move(payloads));
    return write_link(c);
  }
  [[nodiscard]] std::vector<std::size_t> poll_links(std::vector<zmq::pollitem_t>& items) const;
  void serve_links(const std::vector<zmq::pollitem_t>& items, std::size_t first,
                   const std::vector<std::size_t>& polled);
  void read_link(Child& c);
  bool write_link(Child& c);
  void close_link(Child& c);
  void on_link_broken(Child& c, const std::string& why);
  void check_links(Clock::time_point now);
  [[nodiscard]] Clock::time_point link_deadline(const Child& c) const;

  // drain.cpp
  void begin_drain();
  void return_backlog();
  void drain_turn(Clock::time_point now);
  void log_stop();

  // Order matters: the shared slots and the zygote exist before any thread (ZeroMQ's) does.
  WorkerConfig config_;
  WorkerHooks hooks_;
  SharedSlots running_;
  Zygote zygote_;
  zmq::context_t context_;
  zmq::socket_t broker_;
  zmq::socket_t handshakes_;  // ZeroMQ's monitor of broker_: one event per completed handshake
  std::string identity_;
  std::string host_;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> drain_requested_{false};
  std::atomic<unsigned> signals_{0};

  std::deque<Item> backlog_;
  std::unordered_set<std::uint64_t> cancelled_;  // keys whose child was killed to cancel them
  std::vector<Child> children_;
  std::uint64_t broker_instance_ = 0;
  std::uint64_t last_seq_ = 0;
  Clock::time_point last_heard_;
  Clock::time_point next_heartbeat_;
  bool broker_silent_logged_ = false;
  bool worked_since_trim_ = false;  // tasks came since free memory was last handed back
  bool idle_at_heartbeat_ = false;  // nothing held when the last heartbeat left
  // Heartbeats to a silent broker are spaced out up to this (heartbeat_gap).
  static constexpr std::chrono::milliseconds kSilentHeartbeatGap{10000};
  std::chrono::milliseconds silent_gap_{0};
  bool zygote_lost_ = false;
  int exit_code_ = 0;
  OomKills oom_kills_;
  Pacing pacing_;
  std::uint32_t announced_credit_ = 0;
  Clock::time_point credit_announced_at_;
  wire::DoneBatch outcomes_;
  std::vector<zmq::message_t> results_;
  Clock::time_point outcomes_due_;  // held outcomes go by then (zero: none held)
  DropCounters drops_;

  bool draining_ = false;
  bool drained_ = false;  // every running task finished: leave cleanly
  Clock::time_point drain_started_;
  Clock::time_point drain_deadline_;
};

}  // namespace dpool::detail
