/* dpool::Pool: multiprocessing.Pool for a cluster.
 *
 *   dpool::Pool pool(4);                                   // embedded: a broker and 4 worker
 *   auto ys = pool.map(square, xs);                        //   processes forked from this program
 *   dpool::Pool remote(dpool::Options{.broker = "tcp://head:5555"});   // the same on a cluster
 *
 * Functions are named by pointer (they must be registered with DPOOL_TASK in this program) or
 * by name (`pool.map<int>("square", xs)`) for functions that only the workers link. Arguments
 * and results are anything msgpack-c encodes.
 *
 * Work travels in chunks: map() cuts its input into chunks as Python does (about four per
 * worker process), and each chunk is one task whose items succeed or fail one by one, so one
 * failing item never loses the others. imap() and imap_unordered() read their input lazily,
 * keeping at most `Options::imap_window` items in flight: an endless range runs in constant
 * memory, and the consumer's pace sets the producer's.
 *
 * Failures: a task that threw on a worker comes back as dpool::RemoteError (its type, message,
 * function, host, pid and attempts); a crash of the worker process costs the task one attempt,
 * never the pool. map() rethrows the failure of the first failing item, after all items ended.
 *
 * Lifetime: the destructor is close() then join(): it waits for every task submitted through
 * this pool to finish (nothing is dropped), then stops an embedded cluster. terminate() first
 * if you want outstanding work cancelled instead. All methods may be called from any thread.
 *
 * The embedded cluster forks this program, as multiprocessing does on Linux: construct the
 * Pool before starting threads of your own, since fork() copies only the calling thread.
 */
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <msgpack.hpp>

#include "dpool/client.hpp"
#include "dpool/futures.hpp"
#include "dpool/task.hpp"
#include "dpool/util.hpp"

namespace dpool {

struct Options {
  std::string broker;                           // empty: an embedded cluster (see pool_core)
  // CURVE (docs/security.md): the broker's public key and this client's secret key, each a
  // file (broker.pub, PREFIX.key from `dpool keygen --out PREFIX`) or a Z85 key. Empty: the
  // config file's curve section, $DPOOL_BROKER_KEY, $DPOOL_CURVE_KEY, else no CURVE.
  std::string broker_key;
  std::string curve_key;
  std::size_t processes = 0;                    // embedded: worker processes; 0: one per core
  std::function<void()> initializer;            // embedded: runs once in each worker process
  std::uint32_t max_tasks_per_child = 0;        // embedded: replace a process after N tasks
  TaskPolicy task;                              // every task's priority, time limit, retries...
  std::chrono::milliseconds connect_timeout{5000};
  std::uint32_t window = 10000;                 // tasks held by the broker at once
  // A task past the broker's limits for this client: wait for room, or fail at once
  // (Error kRejected, "queue full: ..."). Unset: the config file's on_full, else wait.
  std::optional<ClientConfig::OnFull> on_full;
  std::size_t imap_window = 4096;               // imap items in flight at once
};

/* Callbacks for apply_async, as in Python: called on the result thread, keep them short. */
template <class R>
struct Callbacks {
  std::function<void(const detail::Stored<R>&)> callback;
  std::function<void(const std::exception_ptr&)> error_callback;
};

namespace detail {

class EmbeddedCluster;

/* The untyped part of a pool: its cluster, its client, and the tasks it has out. */
class PoolCore : public Canceller, public std::enable_shared_from_this<PoolCore> {
 public:
  explicit PoolCore(Options options);
  ~PoolCore() override;

  /* Submits a task with `policy` (nullptr: the pool's Options::task); `done` runs once on the
   * client's I/O thread. Throws Error(kUsage) after close(). */
  std::uint64_t submit(std::string function, std::string args, std::uint32_t items, Completion done,
                       std::string queue = {}, const TaskPolicy* policy = nullptr);
  std::shared_future<void> join_queue(std::string queue);
  void cancel(std::uint64_t task_id) override;
  void close();
  void join();
  void terminate();
  /* Worker processes to size chunks for (at least 1). */
  [[nodiscard]] std::size_t workers();
  [[nodiscard]] const Options& options() const { return options_; }

 private:
  Options options_;
  std::unique_ptr<EmbeddedCluster> cluster_;
  std::unique_ptr<Client> client_;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::unordered_set<std::uint64_t> outstanding_;
  bool closed_ = false;
};

/* The registered name of a task function (DPOOL_TASK); Error(kUsage) if it has none. */
std::string name_of(const void* function);

/* Checks packed arguments against `function`'s signature where this process knows it (the
 * function is registered here); throws ArgumentError before anything is sent. */
void check_arguments(const std::string& function, std::string_view packed_args);

template <class R, class... A>
const void* address_of(R (*fn)(A...)) {
  return reinterpret_cast<const void*>(fn);
}

/* Turns a task's result into a value or the failure it carries. */
template <class R>
Stored<R> decode_value(const msgpack::object& o, const std::string& function) {
  if constexpr (std::is_void_v<R>) {
    return {};
  } else {
    try {
      return o.as<R>();
    } catch (const std::exception& e) {
      throw Error(Errc::kUsage,
                  function + " returned a value that is not the type asked for (" + e.what() + ")");
    }
  }
}

std::exception_ptr failure_of(const TaskResult& r, const std::string& function);
std::exception_ptr item_failure(const TaskResult& r, const msgpack::object& item,
                                const std::string& function);

/* Packs one call's arguments: map passes each element as the only argument, starmap unpacks
 * tuples into the argument list. */
struct AsArgument {
  template <class Packer, class T>
  static void pack(Packer& p, const T& x) {
    p.pack_array(1);
    p.pack(x);
  }
};
struct AsArguments {
  template <class Packer, class Tuple>
  static void pack(Packer& p, const Tuple& t) {
    p.pack_array(static_cast<std::uint32_t>(std::tuple_size_v<Tuple>));
    std::apply([&](const auto&... v) { (p.pack(v), ...); }, t);
  }
};

/* Completes a State<R> from one task's result. */
template <class R>
Completion complete_state(std::shared_ptr<State<R>> state, std::string function) {
  return [state = std::move(state), function = std::move(function)](TaskResult&& r) {
    if (auto failure = failure_of(r, function)) {
      state->set_error(failure, r.meta.status == Status::kCancelled);
      return;
    }
    try {
      auto handle = unpack_in_place(r.value);
      state->set_value(decode_value<R>(handle.get(), function));
    } catch (...) {
      state->set_error(std::current_exception(), false);
    }
  };
}

/* A map in progress: chunk results land here; the last one completes the caller's state. */
template <class R>
struct MapJob {
  std::mutex mutex;
  std::vector<std::optional<Stored<R>>> values;
  std::vector<std::exception_ptr> errors;
  std::size_t remaining = 0;
  bool cancelled = false;
  std::shared_ptr<State<std::vector<R>>> state = std::make_shared<State<std::vector<R>>>();
};

/* One item of a chunk: its value or its failure. */
template <class R>
using ItemResult = std::variant<Stored<R>, std::exception_ptr>;

/* Splits a chunk's result into its `count` items; a failure of the whole chunk (a lost worker,
 * a cancellation) becomes every item's failure. */
template <class R>
std::vector<ItemResult<R>> decode_chunk(const TaskResult& r, std::size_t count,
                                        const std::string& function) {
  std::vector<ItemResult<R>> items;
  items.reserve(count);
  if (auto failure = failure_of(r, function)) {
    items.assign(count, failure);
    return items;
  }
  try {
    auto handle = unpack_in_place(r.value);
    const auto& arr = handle.get();
    if (arr.type != msgpack::type::ARRAY || arr.via.array.size != count) {
      throw Error(Errc::kInternal, function + ": a chunk came back with the wrong number of items");
    }
    for (std::size_t i = 0; i < count; ++i) {
      const auto& item = arr.via.array.ptr[i];
      if (auto item_error = item_failure(r, item, function)) {
        items.emplace_back(item_error);
        continue;
      }
      try {
        items.emplace_back(decode_value<R>(item.via.array.ptr[1], function));
      } catch (...) {
        items.emplace_back(std::current_exception());
      }
    }
  } catch (...) {
    while (items.size() < count) items.emplace_back(std::current_exception());
  }
  return items;
}

template <class R>
void finish_chunk(MapJob<R>& job, std::size_t first, std::size_t count, TaskResult& r,
                  const std::string& function) {
  auto items = decode_chunk<R>(r, count, function);
  bool last = false;
  {
    std::lock_guard lock(job.mutex);
    for (std::size_t i = 0; i < count; ++i) {
      if (items[i].index() == 0) job.values[first + i] = std::move(std::get<0>(items[i]));
      else job.errors[first + i] = std::get<1>(items[i]);
    }
    job.cancelled = job.cancelled || r.meta.status == Status::kCancelled;
    last = --job.remaining == 0;
  }
  if (!last) return;
  for (auto& e : job.errors) {
    if (e) {
      job.state->set_error(e, job.cancelled);
      return;
    }
  }
  std::vector<R> values;
  if constexpr (!std::is_void_v<R>) {
    values.reserve(job.values.size());
    for (auto& v : job.values) values.push_back(std::move(*v));
  }
  job.state->set_value(std::move(values));
}

/* Python's default chunk size: about four chunks per worker process. */
inline std::size_t default_chunksize(std::size_t n, std::size_t workers) {
  if (n == 0) return 1;
  const std::size_t per = workers * 4;
  return n / per + (n % per ? 1 : 0);
}

template <class R, class Pack, class Range>
AsyncResult<std::vector<R>> map_async(const std::shared_ptr<PoolCore>& core,
                                      const std::string& function, const Range& xs,
                                      std::size_t chunksize, const TaskPolicy* policy) {
  auto job = std::make_shared<MapJob<R>>();
  const auto n = static_cast<std::size_t>(std::ranges::distance(xs));
  job->values.resize(n);
  job->errors.resize(n);
  if (n == 0) {
    job->state->set_value({});
    return AsyncResult<std::vector<R>>(job->state);
  }
  if (chunksize == 0) chunksize = default_chunksize(n, core->workers());
  job->remaining = (n + chunksize - 1) / chunksize;
  auto it = std::ranges::begin(xs);
  for (std::size_t first = 0; first < n; first += chunksize) {
    const std::size_t count = std::min(chunksize, n - first);
    // Packed straight into the payload string: an sbuffer would cost an 8 KiB allocation and a
    // copy a chunk, which at chunksize 1 was the caller's largest cost a task (perf, W1).
    std::string payload;
    StringSink sink{payload};
    msgpack::packer<StringSink> packer(sink);
    packer.pack_array(static_cast<std::uint32_t>(count));
    for (std::size_t i = 0; i < count; ++i, ++it) Pack::pack(packer, *it);
    if (first == 0) {
      // The first item stands for all (one element type): check it against the signature.
      std::string one;
      StringSink one_sink{one};
      msgpack::packer<StringSink> p1(one_sink);
      Pack::pack(p1, *std::ranges::begin(xs));
      check_arguments(function, one);
    }
    core->submit(
        function, std::move(payload), static_cast<std::uint32_t>(count),
        [job, first, count, function](TaskResult&& r) {
          finish_chunk(*job, first, count, r, function);
        },
        {}, policy);
  }
  return AsyncResult<std::vector<R>>(job->state);
}

}  // namespace detail
}  // namespace dpool

#include "dpool/imap.hpp"

namespace dpool {

template <class R>
class JoinableQueue;

class Pool {
 public:
  /* An embedded cluster with `processes` worker processes (0: one per core). */
  explicit Pool(std::size_t processes = 0) : Pool(with_processes(processes)) {}
  /* A pool on `options.broker`, or an embedded cluster when that is empty and neither
   * DPOOL_BROKER nor the DPOOL_CONFIG file names a broker. */
  explicit Pool(Options options) : core_(std::make_shared<detail::PoolCore>(std::move(options))) {}
  /* close() and join(): waits for the pool's tasks, then stops an embedded cluster. A view
   * (with()) waits for nothing: the pool it came from does. */
  ~Pool() {
    if (!owner_) return;
    try {
      core_->close();
      core_->join();
    } catch (...) {
    }
  }

  /* The same pool, submitting with `policy` instead of Options::task: priority, time limit,
   * retries, required tags, deadline.
   *   auto urgent = pool.with({.priority = 9, .timeout = 2s, .retries = 2});
   *   auto ys = urgent.map(square, xs);
   * A view shares everything else with its pool (close, join and terminate act on the whole
   * pool) and must not outlive it. */
  [[nodiscard]] Pool with(TaskPolicy policy) const {
    return Pool(core_, std::make_shared<const TaskPolicy>(std::move(policy)));
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // --- map family -------------------------------------------------------------------------
  template <class R, class... A, class Range>
  [[nodiscard]] std::vector<R> map(R (*fn)(A...), const Range& xs, std::size_t chunksize = 0) {
    return map_async(fn, xs, chunksize).get();
  }
  template <class R, class Range>
  [[nodiscard]] std::vector<R> map(const std::string& function, const Range& xs,
                                   std::size_t chunksize = 0) {
    return map_async<R>(function, xs, chunksize).get();
  }
  template <class R, class... A, class Range>
  AsyncResult<std::vector<R>> map_async(R (*fn)(A...), const Range& xs, std::size_t chunksize = 0) {
    return detail::map_async<R, detail::AsArgument>(core_, detail::name_of(detail::address_of(fn)),
                                                    xs, chunksize, policy_.get());
  }
  template <class R, class Range>
  AsyncResult<std::vector<R>> map_async(const std::string& function, const Range& xs,
                                        std::size_t chunksize = 0) {
    return detail::map_async<R, detail::AsArgument>(core_, function, xs, chunksize, policy_.get());
  }
  template <class R, class... A, class Range>
  [[nodiscard]] std::vector<R> starmap(R (*fn)(A...), const Range& tuples,
                                       std::size_t chunksize = 0) {
    return starmap_async(fn, tuples, chunksize).get();
  }
  template <class R, class Range>
  [[nodiscard]] std::vector<R> starmap(const std::string& function, const Range& tuples,
                                       std::size_t chunksize = 0) {
    return starmap_async<R>(function, tuples, chunksize).get();
  }
  template <class R, class... A, class Range>
  AsyncResult<std::vector<R>> starmap_async(R (*fn)(A...), const Range& tuples,
                                            std::size_t chunksize = 0) {
    return detail::map_async<R, detail::AsArguments>(core_, detail::name_of(detail::address_of(fn)),
                                                     tuples, chunksize, policy_.get());
  }
  template <class R, class Range>
  AsyncResult<std::vector<R>> starmap_async(const std::string& function, const Range& tuples,
                                            std::size_t chunksize = 0) {
    return detail::map_async<R, detail::AsArguments>(core_, function, tuples, chunksize,
                                                     policy_.get());
  }

  /* Lazily: results in input order, each as soon as it and those before it are in. */
  template <class R, class... A, class Range>
  [[nodiscard]] Imap<R> imap(R (*fn)(A...), Range&& xs, std::size_t chunksize = 1) {
    return Imap<R>(core_, detail::name_of(detail::address_of(fn)), std::forward<Range>(xs),
                   chunksize, true, policy_);
  }
  template <class R, class Range>
  [[nodiscard]] Imap<R> imap(const std::string& function, Range&& xs, std::size_t chunksize = 1) {
    return Imap<R>(core_, function, std::forward<Range>(xs), chunksize, true, policy_);
  }
  /* Lazily: results as they finish. */
  template <class R, class... A, class Range>
  [[nodiscard]] Imap<R> imap_unordered(R (*fn)(A...), Range&& xs, std::size_t chunksize = 1) {
    return Imap<R>(core_, detail::name_of(detail::address_of(fn)), std::forward<Range>(xs),
                   chunksize, false, policy_);
  }
  template <class R, class Range>
  [[nodiscard]] Imap<R> imap_unordered(const std::string& function, Range&& xs,
                                       std::size_t chunksize = 1) {
    return Imap<R>(core_, function, std::forward<Range>(xs), chunksize, false, policy_);
  }

  // --- single calls -----------------------------------------------------------------------
  template <class R, class... A, class... Args>
  R apply(R (*fn)(A...), Args&&... args) {
    return apply_async(fn, std::forward<Args>(args)...).get();
  }
  template <class R, class... Args>
  R apply(const std::string& function, Args&&... args) {
    return apply_async<R>(function, std::forward<Args>(args)...).get();
  }
  template <class R, class... A, class... Args>
  AsyncResult<R> apply_async(R (*fn)(A...), Args&&... args) {
    static_assert(sizeof...(A) == sizeof...(Args), "wrong number of arguments for this function");
    return call<R>(detail::name_of(detail::address_of(fn)), {},
                   static_cast<A>(std::forward<Args>(args))...);
  }
  template <class R, class... Args>
  AsyncResult<R> apply_async(const std::string& function, Args&&... args) {
    return call<R>(function, {}, std::forward<Args>(args)...);
  }
  template <class R, class... A, class... Args>
  AsyncResult<R> apply_async(Callbacks<R> callbacks, R (*fn)(A...), Args&&... args) {
    static_assert(sizeof...(A) == sizeof...(Args), "wrong number of arguments for this function");
    return call<R>(detail::name_of(detail::address_of(fn)), std::move(callbacks),
                   static_cast<A>(std::forward<Args>(args))...);
  }
  template <class R, class... Args>
  AsyncResult<R> apply_async(Callbacks<R> callbacks, const std::string& function, Args&&... args) {
    return call<R>(function, std::move(callbacks), std::forward<Args>(args)...);
  }
  /* concurrent.futures' submit. */
  template <class R, class... A, class... Args>
  Future<R> submit(R (*fn)(A...), Args&&... args) {
    return Future<R>(state_of(apply_async(fn, std::forward<Args>(args)...)));
  }
  template <class R, class... Args>
  Future<R> submit(const std::string& function, Args&&... args) {
    return Future<R>(state_of(apply_async<R>(function, std::forward<Args>(args)...)));
  }

  // --- lifetime -----------------------------------------------------------------------------
  /* No more tasks: later calls throw dpool::Error(kUsage). Tasks out keep running. */
  void close() { core_->close(); }
  /* Cancels every task of this pool, queued or running, waits for them to end, and closes. */
  void terminate() { core_->terminate(); }
  /* Waits until every task submitted through this pool has ended; close() first (as in
   * Python, joining an open pool is a usage error). */
  void join() { core_->join(); }

 private:
  template <class> friend class JoinableQueue;

  Pool(std::shared_ptr<detail::PoolCore> core, std::shared_ptr<const TaskPolicy> policy)
      : core_(std::move(core)), policy_(std::move(policy)), owner_(false) {}

  static Options with_processes(std::size_t processes) {
    Options o;
    o.processes = processes;
    return o;
  }

  template <class R, class... Args>
  AsyncResult<R> call(const std::string& function, Callbacks<R> callbacks, Args&&... args) {
    auto state = std::make_shared<detail::State<R>>();
    if (callbacks.callback || callbacks.error_callback) {
      state->on_done([state_ptr = std::weak_ptr(state), cb = std::move(callbacks)] {
        auto s = state_ptr.lock();
        if (!s) return;
        if (auto e = s->error()) {
          if (cb.error_callback) cb.error_callback(e);
        } else if (cb.callback) {
          cb.callback(s->value());
        }
      });
    }
    auto packed = pack_args(args...);
    detail::check_arguments(function, packed);
    const auto id = core_->submit(function, std::move(packed), 0,
                                  detail::complete_state<R>(state, function), {}, policy_.get());
    state->bind(core_, id);
    return AsyncResult<R>(state);
  }

  std::shared_ptr<detail::PoolCore> core_;
  std::shared_ptr<const TaskPolicy> policy_;  // null: the pool's own
  bool owner_ = true;
};

}  // namespace dpool

#include "dpool/queue.hpp"
