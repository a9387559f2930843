/* The broker's state and handlers. The loop is in core.cpp, client handlers in clients.cpp,
 * worker handlers and dispatch in workers.cpp; each handler is one command's whole effect. */
#pragma once

#include <array>
#include <atomic>
#include <cerrno>
#include <deque>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <zmq.hpp>

#include "dpool/broker.hpp"
#include "dpool/codec.hpp"
#include "dpool/config.hpp"
#include "dpool/log.hpp"
#include "dpool/quota.hpp"
#include "dpool/util.hpp"
#include "jobs.hpp"
#include "journal.hpp"
#include "ledger.hpp"
#include "peers.hpp"
#include "security.hpp"

namespace dpool::detail {

/* Results per second over the last minute, for `dpool status`: 60 one-second buckets. */
class RateWindow {
 public:
  void add(Clock::time_point now);
  [[nodiscard]] double per_second(Clock::time_point now, Clock::time_point since);

 private:
  void advance(std::int64_t second);
  std::array<std::uint64_t, 60> buckets_{};
  std::int64_t second_ = 0;  // the bucket that `add` fills now
};

/* A duration as whole milliseconds, 0 when negative (for status fields). */
[[nodiscard]] inline std::uint64_t millis(Clock::duration d) {
  const auto n = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return n > 0 ? static_cast<std::uint64_t>(n) : 0;
}

/* The result a worker's outcome makes (status, error, where it ran); its text is moved. */
[[nodiscard]] wire::Result result_of(wire::Outcome& o, const WorkerRecord& w);

/* A kCancelled result with this message. */
[[nodiscard]] wire::Result cancelled_result(std::string message);

class BrokerCore {
 public:
  BrokerCore(BrokerConfig config, bool insecure);
  ~BrokerCore();
  void run();
  void stop() noexcept;
  [[nodiscard]] std::string endpoint() const { return endpoint_; }
  [[nodiscard]] BrokerStats stats() const;

 private:
  // core.cpp: the loop and its timers
  void handle(Message& m);
  /* CURVE: the role that may send `command` (nullopt: either), and whether `m` came from a key
   * of that role; a message that does not is dropped and counted (`role`). */
  std::optional<Role> required_role(Command command);
  bool role_fits(const Message& m);
  void on_heartbeat(Message& m);
  void on_tick(Clock::time_point now);
  void publish_stats();
  void release_memory();
  void flush();
  /* Every message the broker sends goes through here and never blocks. False when nothing was
   * sent: the peer is gone, or kSendQueue messages to it wait unread (counted as `unsent`).
   * Each command copes with that (docs/protocol.md, section 4.11): RESULTs stay unACKed and
   * are sent again, a TASK's leases go back to the queue, an unanswered SUBMIT, JOIN or
   * request is sent again by its client, and a lost HEARTBEAT or CANCEL is only late news. */
  template <class T>
  bool send(std::string_view identity, Command command, const T& body,
            std::vector<zmq::message_t> payloads = {}) {
    if (send_message(socket_, identity, command, body, std::move(payloads), true)) return true;
    if (zmq_errno() == EAGAIN) not_sent(identity, command);
    return false;
  }
  void not_sent(std::string_view identity, Command command);
  /* A HEARTBEAT; one to a client also carries its limits and `processes`. */
  bool send_heartbeat(const std::string& identity, std::uint32_t processes = 0,
                      bool to_client = false);
  void disown(const std::string& identity, std::string_view reason);

  // clients.cpp
  ClientSession& client_session(const std::string& identity);
  void on_hello(Message& m, ClientSession& c);
  void on_submit(Message& m, ClientSession& c);
  void on_ack(Message& m, ClientSession& c);
  void on_cancel(Message& m, ClientSession& c);
  void on_join(Message& m, ClientSession& c);
  /* Ledger::apply, plus the named queues' accounting when the task leaves the ledger. */
  Transition apply(Task& task, TaskEvent event, std::int64_t delay_ms = 0);
  void join_named_queue(Task& task, const std::string& name);
  void queue_left(std::uint32_t queue);
  void finish_cancelled(Task& task);
  void finish(Task& task, wire::Result meta, zmq::message_t payload);
  /* A task's outcome to its owner: the client session, or the detached job. */
  void report(PeerHandle owner, std::uint64_t id, wire::Result meta, zmq::message_t payload,
              std::uint32_t items);
  void count_result(const wire::Result& meta);
  void deliver(ClientSession& c, std::uint64_t client_id, wire::Result meta,
               zmq::message_t payload);
  /* Lists `c` for this turn's flush, once however many results and accepts it gets. */
  void mark_dirty(ClientSession& c);
  void flush_client(ClientSession& c);
  /* Whether c's outgoing batch waits this turn; lists it in held_clients_ if so. */
  bool hold(ClientSession& c);
  static Clock::time_point held_until(const ClientSession& c);
  void release_held();
  void flush_accepts(ClientSession& c);
  void flush_results(ClientSession& c);
  void resend_unacked(ClientSession& c, Clock::time_point now);
  void purge_client(ClientSession& c);

  // limits.cpp: per-client limits (quota.hpp)
  [[nodiscard]] QuotaUse use_of(const ClientSession& c) const;
  [[nodiscard]] static QuotaUse use_of(const Job& job);
  /* Payload bytes an owner's tasks (a session or a job) gained or lost in the ledger. */
  void charge(PeerHandle owner, std::int64_t bytes);
  /* A refusal of this SUBMIT's task when it does not fit under c's limits, counted. */
  std::optional<QuotaRefusal> over_limit(ClientSession& c, std::uint64_t size);
  std::optional<QuotaRefusal> over_limit(Job& job, std::uint64_t size);
  /* Answers a task refused for its limits: a RESULT, but neither ACCEPTed nor kept (so a
   * client that never ACKs cannot grow the session past its limits with refusals). */
  void refuse(ClientSession& c, std::uint64_t id, QuotaRefusal why);
  void flush_refusals(ClientSession& c);
  void report_sessions(wire::Report& r);
  /* The broker's decoding limits, used for every body it reads. */
  template <class T>
  std::optional<T> body(const Message& m) {
    return decode<T>(m, drops_, who_, decode_limits_);
  }

  // jobs.cpp
  /* A job task from SUBMIT: nullopt when held (or already known), else the refusal. */
  std::optional<wire::Result> add_job_task(ClientSession& c, wire::TaskSpec& spec,
                                           zmq::message_t& payload, std::uint32_t attempts);
  void job_result(Job& job, std::uint64_t index, wire::Result meta, zmq::message_t payload,
                  std::uint32_t items);
  void job_done(Job& job);
  void submitter_left(PeerHandle session);
  void expire_jobs(Clock::time_point now);
  void on_job(Message& m, ClientSession& c);
  void seal_job(Job& job, std::uint64_t total);
  void cancel_job(Job& job);
  wire::JobInfo job_info(const Job& job);
  [[nodiscard]] wire::JobInfo job_info_without_running(const Job& job, Clock::time_point now) const;
  void on_fetch(Message& m, ClientSession& c);

  // status.cpp
  void on_status(Message& m, ClientSession& c);

  // recovery.cpp: the state a --data-dir journal carried over a restart
  void restore(JournalState state);
  void restore_session(const std::string& identity, JournalState::Owner& saved);
  void restore_job(const std::string& id, JournalState::Owner& saved);

  // policy.cpp
  /* The refusal of a task whose options are out of range, or nullopt. */
  std::optional<wire::Result> check_policy(const wire::TaskSpec& spec);
  /* Queues a checked task for `owner` (a session or a job) and returns its key. */
  TaskKey admit(PeerHandle owner, std::uint64_t id, wire::TaskSpec& spec, zmq::message_t payload,
                std::uint32_t attempts);
  void add_routes();
  void refresh_routes(WorkerRecord& w, FunctionId from);
  void record_attempt(Task& task, const wire::Outcome& o, const WorkerRecord* w);
  void failed_attempt(Task& task, wire::Outcome& o, const WorkerRecord& w);
  void expire_tasks(Clock::time_point now);
  /* Why tasks of `route` cannot start now ("" when some worker could run them). */
  std::string waiting_reason(FunctionId route);
  void remember_failure(FunctionId route, PeerHandle owner, const wire::Result& r);
  static std::int64_t now_ms(Clock::time_point now = Clock::now());

  // workers.cpp
  void on_ready(Message& m);
  void on_done(Message& m, WorkerRecord& w);
  void on_worker_heartbeat(const wire::Heartbeat& hb, WorkerRecord& w);
  /* The worker running `task` died (charge) or the lease never arrived (not charged). `o`
   * is the worker's report of the death, when there was one. */
  void worker_lost(Task& task, const std::string& why, bool charge,
                   const wire::Outcome* o = nullptr, const WorkerRecord* w = nullptr);
  void remove_worker(WorkerRecord& w, std::string_view why, bool charge = true);
  void dispatch();
  void dispatch_to(WorkerRecord& w);

  BrokerConfig config_;
  const Quota quota_;                 // per client, from config_
  const DecodeLimits decode_limits_;  // ... and for every body, from config_
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::unique_ptr<Gatekeeper> gate_;  // CURVE's ZAP handler; null without CURVE
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::string endpoint_;
  const std::uint64_t instance_;

  Ledger ledger_;
  std::unique_ptr<Journal> journal_;  // null without --data-dir (and while restoring)
  WorkerRegistry workers_;
  PeerTable<ClientSession> clients_;
  JobTable jobs_;
  PeerHandle next_handle_ = 1;
  // TASK batch numbers, broker-wide so that they only grow for a worker that registers again.
  std::uint64_t next_seq_ = 1;
  std::vector<PeerHandle> dirty_clients_;  // sessions with outgoing batches
  std::vector<PeerHandle> held_clients_;  // sessions whose ACCEPTs or RESULTs wait (hold)
  Clock::time_point next_held_due_;       // the first of their waits to end, zero when none
  Clock::time_point turn_;  // when this loop turn began (per-result bookkeeping reads it)
  std::uint64_t frames_this_tick_ = 0;     // frames read since the last heartbeat tick
  std::uint64_t frames_since_trim_ = 0;    // ... and since memory was last handed back
  std::uint64_t bytes_this_tick_ = 0;      // payload bytes read, likewise
  std::uint64_t bytes_since_trim_ = 0;
  DropCounters drops_;
  std::string who_;  // the peer of the message being handled, for drop logs

  // Named queues (JoinableQueue): tasks still held per name, and the JOINs waiting on them.
  struct NamedQueue {
    std::string name;
    std::size_t outstanding = 0;
    std::vector<std::pair<std::string, std::uint64_t>> waiters;  // routing id, request
  };
  std::vector<NamedQueue> queues_{NamedQueue{}};  // [0] is "no queue"
  std::unordered_map<std::string, std::uint32_t> queue_ids_;
  std::vector<std::uint32_t> free_queues_;

  FunctionId routes_known_ = 0;  // routes the workers' route lists already cover
  std::deque<std::pair<wire::FailureRecord, Clock::time_point>> failures_;  // the latest
  BrokerStats counters_;
  RateWindow rate_;
  const Clock::time_point started_ = Clock::now();
  mutable std::mutex stats_mutex_;
  BrokerStats published_;
  Clock::time_point next_tick_;
  Clock::time_point next_idle_warning_;
  // Workers arriving, leaving or draining: a peer can do each as fast as it sends (workers.cpp).
  log::Budget worker_lines_{20};
  Clock::time_point next_limit_log_;  // refusals for limits are logged at most every 10 s
  Clock::time_point next_unsent_log_;  // ... and messages to peers that do not read
};

}  // namespace dpool::detail
