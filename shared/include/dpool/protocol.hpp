/* The dpool wire protocol: every command, every message body, the protocol version.
 *
 * This header is to dpool what mdp.h is to Majordomo: the one place that names what travels
 * between clients, the broker and workers. Every role includes it; docs/protocol.md is its
 * prose twin and must change with it.
 *
 * A message is a ZeroMQ multipart message (after the ROUTER's routing-id frame):
 *   frame 0  header   4 bytes: 'D' 'P' version command
 *   frame 1  body     one msgpack array, the command's struct below (MSGPACK_DEFINE order)
 *   frame 2… payloads opaque bytes, one per task or result that the body lists, in order
 * Payloads travel as frames of their own so that the broker can hold and forward them without
 * decoding or copying them (zmq_msg_copy shares the buffer).
 *
 * Bodies are msgpack arrays so that a later version may append fields: a reader ignores
 * trailing fields it does not know and fills missing trailing fields with defaults.
 */
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

namespace dpool {

inline constexpr std::uint8_t kProtocolVersion = 1;
inline constexpr char kSignature[2] = {'D', 'P'};

/* Who may send what is fixed per command; a command arriving from the wrong role is dropped
 * and counted like any other malformed message. */
enum class Command : std::uint8_t {
  kHello = 1,       // client -> broker   a client session starts (or resumes)
  kReady = 2,       // worker -> broker   a worker host registers its functions and credit
                    // (also child -> supervisor: connected and initialised)
  kSubmit = 3,      // client -> broker   a batch of tasks, one payload each
  kAccept = 4,      // broker -> client   these tasks are now held by the broker
  kTask = 5,        // broker -> worker   a batch of leases, one payload each
  kDone = 6,        // worker -> broker   outcomes of leases, one payload each
  kResult = 7,      // broker -> client   outcomes of tasks, one payload each
  kAck = 8,         // client -> broker   these results arrived; forget them
  kHeartbeat = 9,   // both ways          liveness; the broker's carries its instance id
  kDisconnect = 10, // both ways          a worker leaves, or the broker disowns a peer
  kCancel = 11,     // client -> broker, broker -> worker: stop these tasks
  kJoin = 12,       // client -> broker   tell me when this named queue has nothing left
  kJoined = 13,     // broker -> client   the named queue has nothing left
  kJob = 14,        // client -> broker   about a detached job: progress, seal, cancel, forget
  kJobInfo = 15,    // broker -> client   a job's progress (the answer to JOB)
  kFetch = 16,      // client -> broker   a page of a detached job's results, in order
  kFetched = 17,    // broker -> client   that page, one payload per result
  kStatus = 18,     // client -> broker   what are you doing?
  kReport = 19,     // broker -> client   workers, queues, jobs, rates (the answer to STATUS)
};
inline constexpr std::uint8_t kMaxCommand = 19;

/* How a task ended. kLost is a worker's report that the process running the task died; the
 * broker turns it into a requeue or, past the attempt limit, a final kLost for the client. */
enum class Status : std::uint8_t {
  kOk = 0,
  kError = 1,        // the task threw: error_type and error_message say what
  kLost = 2,         // the worker process died under the task (on every allowed attempt)
  kTimeout = 3,      // past its hard time limit (killed), or not started by its deadline
  kCancelled = 4,    // cancelled by its caller (or its client closed before it finished)
  kRejected = 5,     // the broker refused the task (an invalid function name)
  kUnreachable = 6,  // client side only: no broker answered in time
  kReturned = 7,     // worker -> broker only: handed back unstarted (draining); not charged
};

/* Ranges of TaskSpec's policy fields, checked alike by the client library (before sending)
 * and by the broker (which refuses what is outside them). */
inline constexpr std::uint8_t kMaxPriority = 9;
inline constexpr std::uint8_t kDefaultPriority = 5;
inline constexpr double kMinRetryBackoff = 1.0;
inline constexpr double kMaxRetryBackoff = 100.0;

enum class JobOp : std::uint8_t {
  kInfo = 0,    // progress only
  kSeal = 1,    // every task is submitted: `total` of them; the job is done when they are
  kCancel = 2,  // cancel the queued and running tasks, seal the job
  kForget = 3,  // drop the job and its results now
};

[[nodiscard]] std::string_view to_string(Command c) noexcept;
[[nodiscard]] std::string_view to_string(Status s) noexcept;
[[nodiscard]] bool is_known_command(std::uint8_t raw) noexcept;

}  // namespace dpool

MSGPACK_ADD_ENUM(dpool::Status);
MSGPACK_ADD_ENUM(dpool::JobOp);

namespace dpool::wire {

struct Hello {
  std::string host;
  std::uint32_t pid = 0;
  std::string name;  // free text for `dpool status`
  MSGPACK_DEFINE(host, pid, name)
};

struct Ready {
  std::string host;
  std::uint32_t pid = 0;
  std::uint32_t credit = 0;            // leases the broker may hold out to this worker at once
  std::vector<std::string> functions;  // names this worker runs
  std::map<std::string, std::string> tags;
  std::uint32_t processes = 0;         // processes running tasks (for chunk sizes; 0: unknown)
  MSGPACK_DEFINE(host, pid, credit, functions, tags, processes)
};

struct TaskSpec {
  std::uint64_t id = 0;  // the client's own id, unique within its session
  std::string function;
  std::uint32_t max_attempts = 0;  // 0: the broker's default
  // 0: the payload is one call's argument array. N > 0: a chunk, the payload is an array of N
  // argument arrays and the result an array of N item outcomes (docs/protocol.md, "Chunks").
  std::uint32_t items = 0;
  std::string queue;  // a JoinableQueue's name: JOIN waits for every task put with it
  // A detached job's id (docs/protocol.md, "Detached jobs"): the broker keeps the result for
  // the job instead of sending it to this client, at position `index` of the job.
  std::string job;
  std::uint64_t index = 0;
  // Scheduling and failure budgets (docs/protocol.md, "Priorities, routing and retries").
  std::uint8_t priority = kDefaultPriority;  // 0..kMaxPriority, higher first
  std::uint64_t timeout_ms = 0;  // hard time limit of one attempt (per item in a chunk); 0: none
  std::uint32_t retries = 0;           // attempts after one that threw
  std::uint32_t timeout_retries = 0;   // attempts after one that hit its time limit
  std::uint64_t retry_delay_ms = 0;    // wait before the first retry ...
  double retry_backoff = 2.0;          // ... and this factor more before each later one
  std::map<std::string, std::string> needs;  // tags a worker must have to run it
  std::uint64_t expires_ms = 0;        // not started this long after acceptance: fails; 0: never
  MSGPACK_DEFINE(id, function, max_attempts, items, queue, job, index, priority, timeout_ms,
                 retries, timeout_retries, retry_delay_ms, retry_backoff, needs, expires_ms)
};

struct Submit {
  std::vector<TaskSpec> tasks;  // payload i is tasks[i]'s arguments
  MSGPACK_DEFINE(tasks)
};

struct Accept {
  std::vector<std::uint64_t> ids;
  MSGPACK_DEFINE(ids)
};

struct Lease {
  std::uint64_t task = 0;      // the broker's key for the task
  std::uint32_t attempt = 0;   // 1 for the first lease, +1 for each later one
  std::string function;
  std::uint32_t items = 0;     // as in TaskSpec
  std::uint64_t timeout_ms = 0;      // as in TaskSpec: the worker kills the process past it
  std::uint32_t retries = 0;         // chunks: a failing item is run again in place this often
  std::uint64_t retry_delay_ms = 0;  // ... after this pause
  MSGPACK_DEFINE(task, attempt, function, items, timeout_ms, retries, retry_delay_ms)
};

struct TaskBatch {
  std::uint64_t seq = 0;  // broker-wide batch number, growing, from 1 per broker instance
  std::vector<Lease> leases;
  MSGPACK_DEFINE(seq, leases)
};

struct Outcome {
  std::uint64_t task = 0;
  std::uint32_t attempt = 0;
  Status status = Status::kOk;
  std::string error_type;
  std::string error_message;
  std::uint32_t pid = 0;  // the process that ran (or died running) the task
  std::string stderr_tail;  // kLost, kTimeout: the last lines the process wrote to stderr
  std::uint32_t micros = 0;  // how long the call ran in its process, µs (0: not measured)
  MSGPACK_DEFINE(task, attempt, status, error_type, error_message, pid, stderr_tail, micros)
};

struct DoneBatch {
  std::vector<Outcome> outcomes;  // payload i is outcomes[i]'s result (empty unless kOk)
  MSGPACK_DEFINE(outcomes)
};

/* One failed attempt of a task, kept by the broker for the task's final record. */
struct Attempt {
  std::uint32_t attempt = 0;
  Status status = Status::kOk;
  std::string error_type;
  std::string error_message;  // for kLost: the exit signal or code
  std::string host;
  std::uint32_t pid = 0;
  std::string stderr_tail;
  MSGPACK_DEFINE(attempt, status, error_type, error_message, host, pid, stderr_tail)
};

struct Result {
  std::uint64_t id = 0;  // the client's id from TaskSpec
  Status status = Status::kOk;
  std::uint32_t attempts = 0;
  std::string error_type;
  std::string error_message;
  std::string host;
  std::uint32_t pid = 0;
  std::vector<Attempt> history;  // failed attempts before this outcome (retried ones included)
  MSGPACK_DEFINE(id, status, attempts, error_type, error_message, host, pid, history)
};

struct ResultBatch {
  std::vector<Result> results;  // payload i is results[i]'s value (empty unless kOk)
  MSGPACK_DEFINE(results)
};

struct Ack {
  std::vector<std::uint64_t> ids;
  MSGPACK_DEFINE(ids)
};

struct Heartbeat {
  std::uint64_t instance = 0;         // broker: random per broker start; peers send 0
  std::uint64_t last_seq = 0;         // worker: highest TaskBatch seq received
  std::vector<std::uint64_t> held;    // worker: tasks it holds (queued locally or running)
  std::uint32_t processes = 0;        // broker to clients: worker processes connected now
  bool draining = false;              // worker: finishing its running tasks; send no more
  std::uint32_t credit = 0;           // worker: leases it takes now (0: as its READY said)
  // Broker to clients: this client's limits (docs/protocol.md, "Per-client limits"); 0: none.
  std::uint64_t max_tasks = 0;        // tasks held for it + results not yet ACKed
  std::uint64_t max_bytes = 0;        // payload bytes of those
  std::uint64_t max_message = 0;      // the largest frame the broker takes (ZMQ_MAXMSGSIZE)
  MSGPACK_DEFINE(instance, last_seq, held, processes, draining, credit, max_tasks, max_bytes,
                 max_message)
};

/* Client -> broker: the client's task ids. Broker -> worker: the broker's task keys. */
struct Cancel {
  std::vector<std::uint64_t> ids;
  MSGPACK_DEFINE(ids)
};

struct Join {
  std::uint64_t request = 0;  // the client's id for this JOIN, echoed in JOINED
  std::string queue;
  MSGPACK_DEFINE(request, queue)
};

struct Joined {
  std::uint64_t request = 0;
  MSGPACK_DEFINE(request)
};

/* Requests that wait for an answer (JOB, FETCH, STATUS) carry the client's request number,
 * echoed first in the answer; they change nothing when repeated, so a client resends them
 * until answered. */
struct JobRequest {
  std::uint64_t request = 0;
  std::string job;
  JobOp op = JobOp::kInfo;
  std::uint64_t total = 0;  // kSeal: tasks the submitter sent
  MSGPACK_DEFINE(request, job, op, total)
};

struct JobInfo {
  std::uint64_t request = 0;
  std::string job;
  bool found = false;
  bool sealed = false;         // every task is known; done when none is left running or queued
  std::uint64_t total = 0;     // tasks in the job (so far, while not sealed)
  std::uint64_t finished = 0;  // tasks with a result
  std::uint64_t failed = 0;    // of which did not succeed
  std::uint64_t cancelled = 0; // of which were cancelled
  std::uint64_t running = 0;   // leased to a worker now
  std::uint64_t age_ms = 0;    // since the first task arrived
  std::uint64_t expires_in_ms = 0;  // finished jobs: until the broker forgets it
  std::string note;            // why a job ended early (its submitter left, it was cancelled)
  std::string function;        // of its first task (a job's tasks usually share one)
  MSGPACK_DEFINE(request, job, found, sealed, total, finished, failed, cancelled, running, age_ms,
                 expires_in_ms, note, function)
};

struct Fetch {
  std::uint64_t request = 0;
  std::string job;
  std::uint64_t from = 0;  // the first index wanted
  std::uint32_t max = 0;   // results at most (the broker may send fewer)
  MSGPACK_DEFINE(request, job, from, max)
};

struct JobResult {
  std::uint64_t index = 0;
  Result meta;             // meta.id is the position again
  std::uint32_t items = 0; // as in TaskSpec: > 0 for a chunk's array of item outcomes
  MSGPACK_DEFINE(index, meta, items)
};

struct Fetched {
  std::uint64_t request = 0;
  bool found = false;
  std::vector<JobResult> results;  // in index order; payload i is results[i]'s value
  std::uint64_t next = 0;          // the index to fetch from next
  MSGPACK_DEFINE(request, found, results, next)
};

struct StatusRequest {
  std::uint64_t request = 0;
  MSGPACK_DEFINE(request)
};

struct WorkerStatus {
  std::string host;
  std::uint32_t pid = 0;
  std::uint32_t processes = 0;
  std::uint32_t credit = 0;
  std::vector<std::string> functions;
  std::map<std::string, std::string> tags;
  std::uint64_t in_flight = 0;
  std::uint64_t done = 0;
  std::uint64_t failed = 0;
  std::uint64_t heard_ms_ago = 0;  // the last message from it
  bool draining = false;
  MSGPACK_DEFINE(host, pid, processes, credit, functions, tags, in_flight, done, failed,
                 heard_ms_ago, draining)
};

struct FunctionStatus {
  std::string name;
  std::uint64_t queued = 0;
  std::uint64_t running = 0;
  std::uint32_t workers = 0;  // connected workers that offer it (and have `needs`)
  std::map<std::string, std::string> needs;  // one entry per set of required tags
  std::uint64_t delayed = 0;  // waiting for a retry's delay to pass
  std::uint64_t oldest_ms = 0;  // how long its longest-waiting priority level has gone unserved
  std::string waiting;          // why its queued tasks cannot start now ("" when they can)
  MSGPACK_DEFINE(name, queued, running, workers, needs, delayed, oldest_ms, waiting)
};

/* A client session and what the broker holds for it, against its limits. */
struct ClientStatus {
  std::string host;            // from its HELLO ("" if it sent none)
  std::uint32_t pid = 0;
  std::string name;
  std::uint64_t tasks = 0;     // held for it (queued, running) + results not yet ACKed
  std::uint64_t bytes = 0;     // payload bytes of those
  std::uint64_t refused = 0;   // its tasks refused for its limits
  std::uint64_t heard_ms_ago = 0;
  MSGPACK_DEFINE(host, pid, name, tasks, bytes, refused, heard_ms_ago)
};

/* A task that failed for good, as `dpool status` shows it. */
struct FailureRecord {
  std::string function;
  std::string job;  // empty for a client's own task
  std::uint64_t age_ms = 0;
  Result result;
  MSGPACK_DEFINE(function, job, age_ms, result)
};

struct Report {
  std::uint64_t request = 0;
  std::string version;
  std::uint64_t instance = 0;
  std::uint64_t uptime_ms = 0;
  std::vector<WorkerStatus> workers;
  std::vector<FunctionStatus> functions;
  std::vector<JobInfo> jobs;
  std::uint32_t clients = 0;
  double rate = 0;                 // results per second over the last minute
  std::uint64_t completed = 0;     // results since the broker started
  std::uint64_t failed = 0;
  std::uint64_t requeued = 0;
  std::uint64_t dropped = 0;       // malformed or stale messages
  std::uint64_t retried = 0;       // retries after an exception or a time-out
  std::uint64_t expired = 0;       // tasks that were not started by their deadline
  std::vector<FailureRecord> failures;  // the latest tasks that failed, newest last
  // Per-client limits (0: none) and use: the sessions holding the most first, at most 1000.
  std::uint64_t max_tasks_per_client = 0;
  std::uint64_t max_bytes_per_client = 0;
  std::uint64_t max_message_size = 0;
  std::uint64_t limited = 0;           // tasks refused for their client's limits, since start
  std::vector<ClientStatus> sessions;
  std::uint64_t unsent = 0;  // messages not sent to peers that did not read them, since start
  MSGPACK_DEFINE(request, version, instance, uptime_ms, workers, functions, jobs, clients, rate,
                 completed, failed, requeued, dropped, retried, expired, failures,
                 max_tasks_per_client, max_bytes_per_client, max_message_size, limited, sessions,
                 unsent)
};

struct Disconnect {
  std::string reason;
  MSGPACK_DEFINE(reason)
};

}  // namespace dpool::wire
