/* The Client's insides, shared by client.cpp (tasks) and requests.cpp (JOB, FETCH, STATUS).
 *
 * Every task is in one of three states on this side: waiting (not sent, or to be sent again),
 * sent (the broker has not ACCEPTed it yet) or accepted. Only sent and accepted tasks count
 * against the window, and against the broker's limits for this client (backpressure.cpp),
 * which the window is capped by. A task leaves the table when its completion runs. Requests
 * are kept until answered and sent again after each heartbeat expiry, like JOINs.
 */
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dpool/client.hpp"
#include "dpool/codec.hpp"
#include "dpool/quota.hpp"
#include "dpool/util.hpp"
#include "linger.hpp"

namespace dpool {
namespace detail {

constexpr std::size_t kMaxTasksPerSubmit = 1000;
constexpr auto kAckDelay = std::chrono::milliseconds(20);  // longest an ACK waits (send_acks)

enum class Stage : std::uint8_t { kWaiting, kSent, kAccepted };

/* Whether the next waiting task may go to the broker now (backpressure.cpp). */
enum class Room : std::uint8_t { kFits, kWait, kFailed };

struct Pending {
  wire::TaskSpec spec;
  zmq::message_t payload;
  Completion done;
  Stage stage = Stage::kWaiting;
  bool cancel_requested = false;  // never resubmit it: a new broker would run it
  Clock::time_point submitted;
  Clock::time_point sent_at;
};

struct NewTask {
  wire::TaskSpec spec;
  std::string args;
  Completion done;
};

/* A request awaiting the broker's answer. The closures know its types: `send` (re)sends it,
 * `answer` decodes the reply and fulfils the caller's future (false: undecodable, keep
 * waiting), `fail` ends it with an error. */
struct PendingRequest {
  std::function<void(zmq::socket_ref)> send;
  std::function<bool(Message&)> answer;
  std::function<void(std::exception_ptr)> fail;
  Clock::time_point created;
  Clock::time_point sent_at;
};

}  // namespace detail

struct Client::Impl {
  explicit Impl(ClientConfig c);
  ~Impl();
  void loop();
  void take_new_tasks();
  void on_message(Message& m);
  void on_results(Message& m);
  void on_broker_instance(std::uint64_t instance);
  void resubmit_all();
  void send_again(std::vector<std::uint64_t> ids);
  void send_waiting();
  void send_acks();
  void on_tick(Clock::time_point now);
  void fail_unreachable(Clock::time_point now);
  void complete(std::uint64_t id, TaskResult&& result);
  void complete_locally(detail::Pending& p, Status status, std::string type, std::string message);
  // backpressure.cpp: the broker's limits for this client
  void take_limits(const wire::Heartbeat& hb);
  /* Whether `p` fits under the limits beside what is out; kFailed: it was completed here. */
  detail::Room room_for(detail::Pending& p);
  /* Counts `p` as out (sent) or back (waiting, completed). */
  void count_out(const detail::Pending& p);
  void count_back(const detail::Pending& p);
  /* Handles a RESULT refusing a task for the broker's limits; false when it is the task's
   * outcome (on_full: error, a job's task) and is to complete it as usual. */
  bool refused(const wire::Result& r);
  // requests.cpp
  /* Queues a request whose answer decodes as Answer and reaches the caller as make(answer, m). */
  template <class Answer, class Result, class Body>
  std::future<Result> add_request(Command command, Body body, Result (*make)(Answer&&, Message&));
  void take_new_requests();
  void on_reply(Message& m);
  void resend_requests(Clock::time_point now, bool all);
  void fail_requests(Clock::time_point now, Clock::time_point heard,
                     std::chrono::milliseconds limit, const std::string& why);
  void cancel_requests();
  /* Wakes the I/O thread unless a wake-up is already on its way; call with inbox_mutex held,
   * then notify() after unlocking if it returned true. */
  [[nodiscard]] bool wake_locked() {
    news.store(true, std::memory_order_release);
    return !std::exchange(wake_pending, true);
  }
  /* Lingers (linger.hpp) until news from the caller or the budget ends. */
  void linger(std::chrono::microseconds budget);
  void notify();

  ClientConfig config;
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::dealer};
  std::string identity = make_peer_id('c');
  int wake_fd = -1;
  std::atomic<bool> stopping{false};
  std::atomic<bool> heard_ever{false};
  std::atomic<std::uint32_t> worker_processes{0};
  std::atomic<std::size_t> pending_count{0};

  std::mutex inbox_mutex;
  std::vector<detail::NewTask> inbox;
  std::vector<std::uint64_t> cancels;
  std::vector<std::pair<wire::Join, std::shared_ptr<std::promise<void>>>> new_joins;
  std::uint64_t next_join = 1;  // guarded by inbox_mutex
  std::uint64_t next_id = 1;  // guarded by inbox_mutex
  std::vector<std::pair<std::uint64_t, detail::PendingRequest>>
      new_requests;                // guarded by inbox_mutex
  std::uint64_t next_request = 1;  // guarded by inbox_mutex
  // Guarded by inbox_mutex: the I/O thread has been woken and not yet taken the inbox, so
  // another submit need not wake it again (one eventfd write per burst, not per task).
  bool wake_pending = false;
  std::atomic<bool> news{false};  // the inbox has something: what a lingering thread waits for

  // I/O thread only:
  std::unordered_map<std::uint64_t, detail::Pending> tasks;
  std::deque<std::uint64_t> waiting;  // ids to send, oldest first (may hold stale ids)
  std::unordered_map<std::uint64_t, std::pair<wire::Join, std::shared_ptr<std::promise<void>>>>
      joins;
  std::unordered_map<std::uint64_t, detail::PendingRequest> requests;
  detail::Linger lingering;
  std::size_t outstanding = 0;        // sent or accepted
  std::uint64_t outstanding_bytes = 0;  // their payloads (not a job's: the job holds those)
  Quota quota;                        // this client's limits, from the broker's HEARTBEAT
  bool held_back = false;             // the broker refused a task for its limits: wait for room
  std::vector<std::uint64_t> acks;    // results to ACK, sent together (send_acks)
  Clock::time_point acks_due;         // when the first of them must go
  std::uint64_t broker_instance = 0;
  Clock::time_point last_heard;
  Clock::time_point started = Clock::now();
  Clock::time_point next_join_resend = Clock::now();
  DropCounters drops;
  std::thread thread;
};

}  // namespace dpool
