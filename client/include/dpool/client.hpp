/* dpool::Client: the low-level client that the Pool API and the dpool command line build on.
 *
 * A Client owns one DEALER connection to the broker and one I/O thread. submit() may be called
 * from any thread; it queues the task and returns at once. The completion runs later on the
 * I/O thread, exactly once per task, whatever happens in between:
 *   - the broker ACCEPTs tasks; a task not accepted within the heartbeat expiry is sent again
 *     (the broker recognises the id and does not run it twice);
 *   - every RESULT is ACKed; a duplicate (a result sent again after a cut link) is ACKed and
 *     otherwise ignored;
 *   - when the broker restarts (its instance id changes) or disowns this client, every task
 *     without a result is submitted again;
 *   - when no broker answers for connect_timeout (never connected) or broker_timeout (after
 *     contact was lost), waiting tasks complete with Status::kUnreachable;
 *   - when the Client is destroyed, tasks still waiting complete with Status::kCancelled.
 * At most `window` tasks are held by the broker at once; the rest wait in the client, so a
 * caller can submit a million tasks without the broker holding them all.
 *
 * Completions must be quick (they run on the I/O thread); they may call submit().
 */
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>

#include "dpool/codec.hpp"
#include "dpool/config.hpp"
#include "dpool/error.hpp"
#include "dpool/protocol.hpp"

namespace dpool {

/* A finished task: its status and, when kOk, the msgpack-encoded return value. */
struct TaskResult {
  wire::Result meta;
  zmq::message_t value;
  [[nodiscard]] bool ok() const noexcept { return meta.status == Status::kOk; }
  [[nodiscard]] std::string_view bytes() const noexcept {
    return {static_cast<const char*>(value.data()), value.size()};
  }
  /* Decodes the value as T. Throws the task's failure as dpool::RemoteError (or Error for
   * kUnreachable, kCancelled, kRejected), and dpool::Error(kUsage) if the value is no T. */
  template <class T>
  [[nodiscard]] T as(const std::string& function) const;
  /* Throws the failure this result carries, if any. */
  void throw_if_failed(const std::string& function) const;
};

using Completion = std::function<void(TaskResult&&)>;

/* How a task is scheduled and how much failure it may absorb; each kind of failure has its
 * own budget (docs/protocol.md, "Priorities, routing and retries"). The same struct sets a
 * Pool's defaults (Options::task) and one call's (Pool::with). */
struct TaskPolicy {
  std::uint8_t priority = 5;                // 0..9, higher first; waiting lifts a level (broker)
  std::chrono::milliseconds timeout{0};     // hard time limit per call, process killed; 0: none
  std::uint32_t retries = 0;                // runs again after it threw, this many times at most
  std::uint32_t timeout_retries = 0;        // runs again after a time-out, this many times
  std::uint32_t max_attempts = 0;           // worker deaths under it that fail it; 0: broker's (3)
  std::chrono::milliseconds retry_delay{0}; // pause before the first retry ...
  double retry_backoff = 2.0;               // ... times this before each later one
  std::map<std::string, std::string> needs; // tags a worker must have (--tag KEY=VALUE)
  std::chrono::milliseconds expires{0};     // not started this long after submission: fails
};

struct TaskOptions : TaskPolicy {
  std::uint32_t items = 0;         // > 0: `args` is an array of that many argument arrays (a chunk)
  std::string queue;               // a named queue that join_queue() can wait on
  // A detached job's task, at position `index` of job `job`: the broker keeps its result for
  // the job (fetch() reads it), and the completion runs once the broker holds the task (kOk,
  // no value) or refused it.
  std::string job;
  std::uint64_t index = 0;
};

/* The wire form of a task's options (ids and payload aside). */
[[nodiscard]] wire::TaskSpec task_spec(std::uint64_t id, std::string function, TaskOptions options);

/* A page of a detached job's results: values[i] is meta.results[i]'s value. */
struct JobPage {
  wire::Fetched meta;
  std::vector<zmq::message_t> values;
};

class Client {
 public:
  /* Connects (in the background) to config.broker. Throws Error(kUsage) for a malformed
   * address. */
  explicit Client(ClientConfig config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /* Queues a task calling `function` with `args` (a msgpack array) and returns its id.
   * `done` runs once, on the I/O thread, with the outcome. Thread-safe. */
  std::uint64_t submit(std::string function, std::string args, Completion done,
                       TaskOptions options = {});

  /* Asks for these tasks to be stopped. A task not yet sent completes as kCancelled at once; a
   * queued or running one does once the broker (and its worker) confirm, unless it finished
   * first. Unknown or finished ids are ignored. Thread-safe; returns at once. */
  void cancel(std::vector<std::uint64_t> ids);

  /* Becomes ready once the broker holds no task put with `queue` (by any client). Tasks this
   * client has not had accepted yet are not counted: wait for your own first. */
  [[nodiscard]] std::shared_future<void> join_queue(std::string queue);

  /* Tasks submitted whose completion has not run yet. */
  [[nodiscard]] std::size_t pending() const;

  /* Requests answered by the broker. Each is sent again until answered (none changes anything
   * when repeated); the future fails with Error(kUnreachable) on the same terms as a task, and
   * with Error(kCancelled) when the Client is destroyed first. Thread-safe. */
  [[nodiscard]] std::future<wire::JobInfo> job(std::string job, JobOp op = JobOp::kInfo,
                                               std::uint64_t total = 0);
  [[nodiscard]] std::future<JobPage> fetch(std::string job, std::uint64_t from,
                                           std::uint32_t max = 1000);
  [[nodiscard]] std::future<wire::Report> status();

  /* Worker processes connected to the broker, as of its last heartbeat (0 before one). */
  [[nodiscard]] std::uint32_t worker_processes() const;

  /* Waits until the broker has answered; false if `timeout` passed first. */
  bool wait_connected(std::chrono::milliseconds timeout) const;

  /* True once the broker has answered (it may have gone silent since). */
  [[nodiscard]] bool connected() const;

  [[nodiscard]] const ClientConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

namespace detail {
/* A msgpack output stream that appends to a string: packing writes each byte once, where an
 * sbuffer would be copied into the string after. */
struct StringSink {
  std::string& out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};
}  // namespace detail

/* Packs arguments as the msgpack array a task function expects. */
template <class... A>
[[nodiscard]] std::string pack_args(const A&... args) {
  std::string out;
  detail::StringSink sink{out};
  msgpack::packer<detail::StringSink> packer(sink);
  packer.pack_array(sizeof...(A));
  (packer.pack(args), ...);
  return out;
}

/* Calls `function` and waits for its result (a convenience for tools and tests). */
template <class R, class... A>
R call(Client& client, const std::string& function, const A&... args);

}  // namespace dpool

#include "dpool/client_impl.hpp"
