/* The supervisor of a worker host: one DEALER connection to the broker, N child processes.
 *
 * Leases from the broker wait in a local backlog and are handed to children, at most
 * 1 + prefetch each. Outcomes from children go back to the broker in batches. Children are
 * forked by the zygote (zygote.hpp), never by this multi-threaded process. A child that dies
 * is reported at once: the task it was running is reported kLost (the broker retries it
 * or, past the attempt limit, fails it), the tasks it had not started go back to the backlog,
 * and a new child is started, with a growing delay when children keep dying young.
 *
 * The supervisor's heartbeat carries the highest TASK sequence it received and every task it
 * holds, which lets the broker requeue a lease that was lost on the way. When the broker's
 * instance id changes (it restarted) or it says DISCONNECT, the supervisor registers again.
 */
#pragma once

#include <sys/types.h>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <zmq.hpp>

#include "dpool/codec.hpp"
#include "dpool/config.hpp"
#include "dpool/util.hpp"
#include "dpool/worker.hpp"
#include "zygote.hpp"

namespace dpool::detail {

class Supervisor {
 public:
  Supervisor(WorkerConfig config, WorkerHooks hooks);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  int run();
  void stop() noexcept;

 private:
  struct Item {
    wire::Lease lease;
    zmq::message_t payload;
  };
  /* One word per child slot in memory shared with the children: the task each is running. */
  class SharedSlots {
   public:
    explicit SharedSlots(std::size_t n);
    ~SharedSlots();
    SharedSlots(const SharedSlots&) = delete;
    SharedSlots& operator=(const SharedSlots&) = delete;
    std::atomic<std::uint64_t>& operator[](std::size_t i) { return words_[i]; }

   private:
    std::atomic<std::uint64_t>* words_ = nullptr;
    std::size_t n_ = 0;
  };
  struct Child {
    std::size_t slot = 0;
    pid_t pid = -1;  // -1: none, 0: asked of the zygote
    std::unique_ptr<zmq::socket_t> pair;
    std::deque<Item> assigned;   // in the order the child runs them
    std::uint64_t assigned_total = 0;
    std::uint64_t done = 0;
    bool ready = false;     // it said READY: connected, initializer done
    bool retiring = false;
    unsigned quick_deaths = 0;
    Clock::time_point started;
    Clock::time_point restart_at;
  };

  void send_ready();
  void send_heartbeat();
  void on_broker_message(Message& m);
  void on_child_message(Child& c, Message& m);
  void on_cancel(Message& m);
  void report_cancelled(const wire::Lease& lease, pid_t pid);
  void spawn(Child& c);
  void on_zygote_events();
  void on_child_exit(Child& c, int status);
  void assign();
  void flush_outcomes();
  void shutdown_children();

  // Order matters: the shared slots and the zygote exist before any thread (ZeroMQ's) does.
  WorkerConfig config_;
  WorkerHooks hooks_;
  SharedSlots running_;
  Zygote zygote_;
  zmq::context_t context_;
  zmq::socket_t broker_;
  std::string identity_;
  std::string host_;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::uint64_t generation_ = 0;

  std::deque<Item> backlog_;
  std::unordered_set<std::uint64_t> cancelled_;  // keys whose child was killed to cancel them
  std::vector<Child> children_;
  std::uint64_t broker_instance_ = 0;
  std::uint64_t last_seq_ = 0;
  Clock::time_point last_heard_;
  bool broker_silent_logged_ = false;
  bool zygote_lost_ = false;
  int exit_code_ = 0;
  wire::DoneBatch outcomes_;
  std::vector<zmq::message_t> results_;
  DropCounters drops_;
};

}  // namespace dpool::detail
