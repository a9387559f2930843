/* A worker child process: the only place user code runs.
 *
 * Before running a task the child stores its key in a word of memory shared with the
 * supervisor, and clears it after; when a child dies, that word names the one task that was
 * running, so only that task is charged an attempt and the others it held are simply given to
 * another child. Beside it the child stores when the current call began (each item of a
 * chunk is a call of its own): the supervisor enforces the lease's time limit from it, as the
 * child cannot interrupt user code itself. A child the supervisor holds (slots.hpp) starts no
 * more tasks and reports the ones it skips as cancelled; so does a child whose queued task the
 * supervisor gave to an idle sibling.
 *
 * An item of a chunk that throws is run again in place, up to the lease's `retries`, pausing
 * `retry_delay_ms` and twice that each time after; the pause is not counted against the time
 * limit.
 *
 * A result is packed into a buffer the size of that function's last result. msgpack's buffer
 * grows by doubling, so a 16 MiB result asked for 32 MiB: past glibc's largest mmap threshold,
 * a fresh mapping every task, faulted in page by page and unmapped after. Sized from the last
 * one, it comes from the heap that keep_payload_memory() keeps (util.hpp), already in memory.
 *
 * Outcomes are batched while more short tasks are waiting (up to 64, or 2 ms), and sent
 * before a task that is not known to be short and whenever the child runs out of work, so a
 * lone task sees no batching delay and no outcome waits behind a long task.
 *
 * The child reads and writes its link itself (link.hpp), between tasks: it runs no thread and
 * no ZeroMQ context, so a task may fork, and a message costs one read. An idle child blocks in
 * poll(); it writes with blocking sends, as the supervisor always reads. When the link ends
 * (the supervisor is gone, or closed it) there is nobody to report to: the child exits.
 */
#include "executor.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <new>
#include <optional>
#include <thread>
#include <unordered_map>

#include "dpool/codec.hpp"
#include "dpool/log.hpp"
#include "dpool/task.hpp"
#include "dpool/util.hpp"
#include "link.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kMaxBatch = 64;
constexpr auto kMaxBatchDelay = std::chrono::milliseconds(2);
// An idle child hands back its free memory after this long without a task (wait_readable).
constexpr auto kTrimAfter = std::chrono::milliseconds(1000);
// A task expected to take longer than this is not kept waiting behind: outcomes are sent first.
constexpr double kShortTaskMicros = 200;
// Error texts are cut here so that an outcome always fits the supervisor's decode limits.
constexpr std::size_t kMaxErrorText = 64u << 10;
// A result buffer is at least msgpack's own first size, and a little over the last result, but
// a hint never reserves more than this up front (past it the buffer doubles as it must).
constexpr std::size_t kMinResultBuffer = MSGPACK_SBUFFER_INIT_SIZE;
constexpr std::size_t kMaxResultHint = 256u << 20;
// Doubling retry pauses stop growing here.
constexpr auto kMaxRetryDelay = std::chrono::hours(1);

std::string clip(std::string text) {
  if (text.size() > kMaxErrorText) {
    text.resize(kMaxErrorText);
    text += "... [cut]";
  }
  return text;
}

struct Item {
  wire::Lease lease;
  zmq::message_t payload;
  std::uint32_t index = 0;  // how many tasks came before it (slots.hpp: `skip`)
};

zmq::message_t to_message(msgpack::sbuffer& buffer) {
  const auto size = buffer.size();
  char* data = buffer.release();
  return zmq::message_t(data, size, [](void* p, void*) { std::free(p); }, nullptr);
}

/* Why a call threw, as an item outcome says it. */
struct Failure {
  std::string type;
  std::string message;
};

/* One call of a chunk's item; a failure is returned, not thrown. Under a time limit (`timed`)
 * the call is timed from its own start in the slot. Without one, nobody reads the slot's start
 * time, and reading the clock twice a call was 40 % of a child's time on a chunk of squares
 * (perf, bench W1 with the default chunksize). */
std::optional<Failure> call_item(const TaskInfo& task, const msgpack::object& args,
                                 std::uint32_t index, msgpack::sbuffer& value, SlotState& slot,
                                 bool timed) {
  value.clear();
  if (timed) slot.begin_call(index);
  std::optional<Failure> failure;
  try {
    task.call(args, value);
  } catch (const std::exception& e) {
    failure = Failure{clip(type_name(typeid(e))), clip(e.what())};
  } catch (...) {
    failure = Failure{"unknown", "a non-standard exception was thrown"};
  }
  if (timed) slot.end_call();
  return failure;
}

/* Runs a chunk: `args` is an array of argument arrays. Each item's outcome is packed on its
 * own, [0, value] or [1, error type, message], so one failing item costs only itself. */
void run_chunk(const TaskInfo& task, const msgpack::object& args, const wire::Lease& lease,
               msgpack::sbuffer& out, SlotState& slot) {
  const std::uint32_t items = lease.items;
  if (args.type != msgpack::type::ARRAY || args.via.array.size != items) {
    throw ArgumentError(task.name + ": a chunk of " + std::to_string(items) +
                        " calls needs as many argument arrays");
  }
  msgpack::packer<msgpack::sbuffer> packer(out);
  packer.pack_array(items);
  msgpack::sbuffer value;
  const bool timed = lease.timeout_ms != 0;
  for (std::uint32_t i = 0; i < items; ++i) {
    auto failure = call_item(task, args.via.array.ptr[i], i, value, slot, timed);
    std::chrono::milliseconds delay(lease.retry_delay_ms);
    for (std::uint32_t retry = 0; failure && retry < lease.retries; ++retry) {
      std::this_thread::sleep_for(delay);
      delay = std::min<std::chrono::milliseconds>(delay * 2, kMaxRetryDelay);
      failure = call_item(task, args.via.array.ptr[i], i, value, slot, timed);
    }
    if (failure) {
      packer.pack_array(3);
      packer.pack(1);
      packer.pack(failure->type);
      packer.pack(failure->message);
    } else {
      packer.pack_array(2);
      packer.pack(0);
      out.write(value.data(), value.size());
    }
  }
}

/* A buffer to pack a result into, sized from the function's last result. The size is only a
 * guess: where the process cannot have that much (a memory limit), it starts small instead,
 * and the task fails only if its real result does not fit. */
msgpack::sbuffer result_buffer(std::size_t last_result) {
  try {
    return msgpack::sbuffer(
        std::clamp(last_result + last_result / 16, kMinResultBuffer, kMaxResultHint));
  } catch (const std::bad_alloc&) {
    return msgpack::sbuffer();
  }
}

/* `result_size`: the octets of the function's last result, as the size to pack into. */
wire::Outcome run_one(Item& item, zmq::message_t& result, SlotState& slot,
                      std::size_t result_size) {
  wire::Outcome o;
  o.task = item.lease.task;
  o.attempt = item.lease.attempt;
  o.pid = static_cast<std::uint32_t>(::getpid());
  const TaskInfo* task = find_task(item.lease.function);
  try {
    if (!task)
      throw Error(Errc::kUsage, "no task named '" + item.lease.function + "' on this worker");
    msgpack::object_handle args;
    if (!detail::unpack_body(item.payload, args, kArgumentLimits)) {
      throw ArgumentError(item.lease.function +
                          ": the arguments are not valid msgpack, or nest deeper than " +
                          std::to_string(kArgumentLimits.max_depth) +
                          " levels (the list of arguments counts as one)");
    }
    msgpack::sbuffer out = result_buffer(result_size);
    if (item.lease.items > 0) run_chunk(*task, args.get(), item.lease, out, slot);
    else task->call(args.get(), out);
    result = to_message(out);
    o.status = Status::kOk;
  } catch (const std::exception& e) {
    o.status = Status::kError;
    o.error_type = clip(type_name(typeid(e)));
    o.error_message = clip(e.what());
  } catch (...) {
    o.status = Status::kError;
    o.error_type = "unknown";
    o.error_message = "a non-standard exception was thrown";
  }
  return o;
}

extern "C" void ignore_signal(int) {}

class Executor {
 public:
  explicit Executor(const ExecutorSetup& setup)
      : setup_(setup), link_(Fd(setup.link), kFromSupervisor) {}

  /* Tells the supervisor this child is connected and initialised: it may now get tasks. */
  void announce() {
    wire::Ready ready;
    ready.pid = static_cast<std::uint32_t>(::getpid());
    link_.send(Command::kReady, ready);
    write_out();
  }

  [[noreturn]] void run() {
    for (;;) {
      const bool idle = queue_.empty();
      if (idle) {
        flush();
        wait_readable();
      }
      read_in();
      if (queue_.empty()) continue;
      Item next = std::move(queue_.front());
      queue_.pop_front();
      // Outcomes wait for company only in front of a task known to be short.
      auto& recent = recent_[next.lease.function];
      auto& expected = recent.micros;
      if (expected == 0 || expected > kShortTaskMicros) flush();
      const auto start = Clock::now();
      // The start time first: whoever sees this key sees when it began (slots.hpp).
      setup_.slot->begin_call(0, start);
      setup_.slot->task.store(next.lease.task);
      if (setup_.slot->hold.load()) {
        skip_all(std::move(next));
        continue;
      }
      if (setup_.slot->skips(next.index)) {  // an idle process took it over (slots.hpp)
        setup_.slot->end_task();
        report_skipped(next.lease, "not started: given to an idle worker process");
        continue;
      }
      zmq::message_t result;
      auto outcome = run_one(next, result, *setup_.slot, recent.result_size);
      if (outcome.status == Status::kOk) recent.result_size = result.size();
      setup_.slot->end_task();
      const auto end = Clock::now();
      const double took = std::chrono::duration<double, std::micro>(end - start).count();
      expected = expected == 0 ? took : 0.8 * expected + 0.2 * took;
      outcome.micros = static_cast<std::uint32_t>(std::clamp(took, 1.0, 4e9));
      if (done_.outcomes.empty()) first_unsent_ = end;
      done_.outcomes.push_back(std::move(outcome));
      results_.push_back(std::move(result));
      if (done_.outcomes.size() >= kMaxBatch || end - first_unsent_ >= kMaxBatchDelay) flush();
    }
  }

 private:
  /* Blocks until the supervisor sends something. A child idle for kTrimAfter hands back the
   * free memory it kept for payloads (keep_payload_memory in util.hpp), once per idle spell. */
  void wait_readable() {
    pollfd p{link_.fd(), POLLIN, 0};
    int ready = 0;
    while ((ready = ::poll(&p, 1, static_cast<int>(kTrimAfter.count()))) < 0 && errno == EINTR) {
    }
    if (ready != 0) return;
    release_free_memory();
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
  }

  /* Takes every message that has arrived; the link's end means the supervisor is gone. */
  void read_in() {
    std::vector<Message> messages;
    if (link_.receive(messages) != Link::State::kOpen) std::_Exit(0);
    for (auto& m : messages) take(m);
  }

  void write_out() {
    if (!link_.flush(true)) std::_Exit(0);  // nobody to report to
  }

  void take(Message& m) {
    if (m.command == Command::kDisconnect) {
      flush();
      std::_Exit(0);
    }
    if (m.command == Command::kCancel) {
      cancel(m);
      return;
    }
    if (m.command != Command::kTask) return;
    auto batch = decode<wire::TaskBatch>(m, drops_, "supervisor");
    if (!batch || batch->leases.size() != m.payloads.size()) return;
    for (std::size_t i = 0; i < batch->leases.size(); ++i) {
      queue_.push_back(Item{std::move(batch->leases[i]), std::move(m.payloads[i]), received_++});
    }
  }

  /* Drops cancelled tasks that have not started and reports them cancelled. */
  void cancel(Message& m) {
    auto cancel = decode<wire::Cancel>(m, drops_, "supervisor");
    if (!cancel) return;
    for (auto key : cancel->ids) {
      auto it = std::find_if(queue_.begin(), queue_.end(),
                             [key](const Item& i) { return i.lease.task == key; });
      if (it == queue_.end()) continue;
      report_skipped(it->lease, "cancelled before it started");
      queue_.erase(it);
    }
  }

  /* The supervisor holds this child (slots.hpp): `next` and the rest of the queue are not
   * started; each is reported cancelled, which tells the supervisor it may run it elsewhere. */
  void skip_all(Item next) {
    setup_.slot->end_task();
    report_skipped(next.lease, "not started: this worker process stops");
    for (const auto& item : queue_)
      report_skipped(item.lease, "not started: this worker process stops");
    queue_.clear();
    flush();
  }

  void report_skipped(const wire::Lease& lease, const char* why) {
    wire::Outcome o;
    o.task = lease.task;
    o.attempt = lease.attempt;
    o.status = Status::kCancelled;
    o.error_type = "Cancelled";
    o.error_message = why;
    o.pid = static_cast<std::uint32_t>(::getpid());
    if (done_.outcomes.empty()) first_unsent_ = Clock::now();
    done_.outcomes.push_back(std::move(o));
    results_.emplace_back();
  }

  void flush() {
    if (done_.outcomes.empty()) return;
    link_.send(Command::kDone, done_, std::move(results_));
    done_.outcomes.clear();
    results_.clear();
    write_out();
  }

  const ExecutorSetup& setup_;
  Link link_;
  DropCounters drops_;
  std::deque<Item> queue_;
  std::uint32_t received_ = 0;  // tasks received since this process started
  wire::DoneBatch done_;
  std::vector<zmq::message_t> results_;
  Clock::time_point first_unsent_;
  struct Recent {
    double micros = 0;            // duration, moving mean
    std::size_t result_size = 0;  // the last result's octets
  };
  std::unordered_map<std::string, Recent> recent_;  // per function
};

}  // namespace

void run_executor(const ExecutorSetup& setup) {
  // Die with the supervisor: a child must never outlive the host that answers for its task.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != setup.parent) std::_Exit(0);  // it died before prctl took effect
  // A process group of its own: the supervisor can then kill this child together with every
  // command a task started (exec), and Ctrl-C at a terminal reaches only the supervisor.
  ::setpgid(0, 0);
  ::signal(SIGINT, SIG_IGN);
  // A SIGTERM for the whole process group or cgroup (systemd stopping the service) is the
  // supervisor's cue to drain: this process must outlive it to finish its task. Caught, not
  // ignored: exec resets a handler, so commands a task starts still get the default.
  struct sigaction term {};
  term.sa_handler = ignore_signal;
  term.sa_flags = SA_RESTART;
  sigemptyset(&term.sa_mask);
  ::sigaction(SIGTERM, &term, nullptr);
  ::signal(SIGCHLD, SIG_DFL);
  try {
    log::init("worker-child");
    Executor executor(setup);
    if (setup.initializer) setup.initializer();
    executor.announce();
    executor.run();
  } catch (const std::exception& e) {
    log::error("worker child failed: {}", e.what());
  }
  std::_Exit(70);
}

}  // namespace dpool::detail
