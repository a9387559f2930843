/* Results that arrive later: AsyncResult (multiprocessing's), Future (concurrent.futures'),
 * and as_completed / wait over a group of futures.
 *
 * Both are handles to one shared state that the client's I/O thread completes exactly once,
 * with a value or with the failure the task met (dpool::RemoteError for a failure on a worker,
 * dpool::Error for a cancelled, rejected or unreachable task). get() rethrows that failure, as
 * Python's get() and result() re-raise. Copies of a handle share the state.
 */
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <variant>
#include <vector>

#include "dpool/error.hpp"

namespace dpool {

namespace detail {

/* void results are stored as monostate so that one template serves both. */
template <class R>
using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

/* How get() waits. Blocking on a condition variable costs a wake-up when the result comes,
 * and on a virtual machine a wake-up of an idle CPU is slow: one task at a time (W2 in
 * bench/), p50 was about 420 us against 300 us when the caller spun until its result came.
 * Spinning only pays when the result comes before the spin ends, and it takes a core from
 * the workers meanwhile, so it adapts: get() spins up to twice as long as recent gets waited
 * (an average over every thread's), never past kMaxSpin, and not at all while they wait
 * longer than that (10 ms tasks, say). A short spin that fails is worse than none: it pays
 * both the CPU and the wake-up. The spin yields rather than pauses, so that the threads that
 * carry the result can still run on this CPU: W2's p99 was 1.3-1.5 ms with a pause, 0.4-0.6
 * with a yield. */
class WaitPolicy {
 public:
  static constexpr std::chrono::microseconds kMaxSpin{1000};
  /* How long to spin before blocking (zero: block at once). */
  static std::chrono::microseconds spin() {
    const auto recent = recent_us().load(std::memory_order_relaxed);
    if (recent >= kMaxSpin.count()) return std::chrono::microseconds(0);
    return std::min(kMaxSpin, std::chrono::microseconds(4 * recent + 100));
  }
  /* Folds one wait's length into the average. */
  static void waited(std::chrono::steady_clock::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    const auto took = static_cast<std::uint32_t>(std::min<long long>(us, 1'000'000));
    auto& recent = recent_us();
    recent.store((3 * recent.load(std::memory_order_relaxed) + took) / 4,
                 std::memory_order_relaxed);
  }

 private:
  static std::atomic<std::uint32_t>& recent_us() {
    static std::atomic<std::uint32_t> value{0};
    return value;
  }
};

/* What a state needs from its pool to cancel its task. */
class Canceller {
 public:
  virtual ~Canceller() = default;
  virtual void cancel(std::uint64_t task_id) = 0;
};

template <class R>
class State {
 public:
  void set_value(Stored<R> v) { finish([&] { value_ = std::move(v); }); }
  void set_error(std::exception_ptr e, bool cancelled) {
    finish([&] {
      error_ = std::move(e);
      cancelled_ = cancelled;
    });
  }

  bool wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    return cv_.wait_until(lock, deadline, [&] { return done_.load(); });
  }
  void wait() {
    if (done_.load(std::memory_order_acquire)) return;
    const auto start = std::chrono::steady_clock::now();
    const auto spin_until = start + WaitPolicy::spin();
    while (std::chrono::steady_clock::now() < spin_until) {
      if (done_.load(std::memory_order_acquire)) {
        WaitPolicy::waited(std::chrono::steady_clock::now() - start);
        return;
      }
      std::this_thread::yield();
    }
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return done_.load(); });
    WaitPolicy::waited(std::chrono::steady_clock::now() - start);
  }
  bool done() const { return done_.load(std::memory_order_acquire); }
  bool cancelled() const {
    std::lock_guard lock(mutex_);
    return cancelled_;
  }
  std::exception_ptr error() const {
    std::lock_guard lock(mutex_);
    return error_;
  }
  Stored<R> value() const {
    std::lock_guard lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }
  /* The value, moved out when the caller holds the only handle (`sole`) and no on_done callback
   * can read it after; else a copy. */
  Stored<R> take(bool sole) {
    std::lock_guard lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    if (sole && !watched_) return std::move(*value_);
    return *value_;
  }

  /* Runs `f` once the state is done: now (on this thread) if it already is. */
  void on_done(std::function<void()> f) {
    {
      std::lock_guard lock(mutex_);
      watched_ = true;
      if (!done_) {
        callbacks_.push_back(std::move(f));
        return;
      }
    }
    f();
  }

  void bind(std::weak_ptr<Canceller> pool, std::uint64_t task_id) {
    pool_ = std::move(pool);
    task_id_ = task_id;
  }
  void request_cancel() {
    if (auto p = pool_.lock()) p->cancel(task_id_);
  }

 private:
  template <class F>
  void finish(F&& set) {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard lock(mutex_);
      if (done_) return;
      set();
      done_.store(true, std::memory_order_release);
      callbacks.swap(callbacks_);
    }
    cv_.notify_all();
    for (auto& f : callbacks) f();
  }

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  // Written under mutex_ (with the value, before the callbacks are taken); atomic so that
  // get()'s spin can read it without the lock.
  std::atomic<bool> done_{false};
  bool cancelled_ = false;
  bool watched_ = false;  // an on_done callback may read the value
  std::optional<Stored<R>> value_;
  std::exception_ptr error_;
  std::vector<std::function<void()>> callbacks_;
  std::weak_ptr<Canceller> pool_;
  std::uint64_t task_id_ = 0;
};

}  // namespace detail

/* multiprocessing's AsyncResult. */
template <class R>
class [[nodiscard]] AsyncResult {
 public:
  AsyncResult() = default;
  explicit AsyncResult(std::shared_ptr<detail::State<R>> state) : state_(std::move(state)) {}

  /* The result; rethrows the task's failure. Blocks until it is there. */
  R get() const& {
    state_->wait();
    if constexpr (std::is_void_v<R>) {
      (void)state_->value();
    } else {
      return state_->value();
    }
  }
  /* The same on a handle about to go (`pool.apply_async(f, x).get()`, `std::move(r).get()`):
   * when no other handle shares the result, it is moved out instead of copied, which matters
   * for large values. A handle left behind by std::move holds an unspecified value after. */
  R get() && {
    state_->wait();
    if constexpr (std::is_void_v<R>) {
      (void)state_->value();
    } else {
      return state_->take(state_.use_count() == 1);
    }
  }
  /* The same, but throws dpool::Error(kTimeout) if it is not there within `timeout`. */
  template <class Rep, class Period>
  R get(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait(timeout)) throw Error(Errc::kTimeout, "the result did not arrive in time");
    return get();
  }
  /* Waits for the result; false if `timeout` passed first. */
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return state_->wait_until(
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }
  void wait() const { state_->wait(); }
  [[nodiscard]] bool ready() const { return state_->done(); }
  /* Whether the task succeeded; dpool::Error(kUsage) if it is not ready (Python: ValueError). */
  [[nodiscard]] bool successful() const {
    if (!ready()) throw Error(Errc::kUsage, "successful() asked before the result is ready");
    return !state_->error();
  }
  [[nodiscard]] bool valid() const { return state_ != nullptr; }

 protected:
  std::shared_ptr<detail::State<R>> state_;
  template <class> friend class Future;
  template <class T> friend std::shared_ptr<detail::State<T>> state_of(const AsyncResult<T>&);
};

template <class T>
std::shared_ptr<detail::State<T>> state_of(const AsyncResult<T>& r) {
  return r.state_;
}

/* concurrent.futures' Future. */
template <class R>
class [[nodiscard]] Future : public AsyncResult<R> {
 public:
  using AsyncResult<R>::AsyncResult;

  [[nodiscard]] bool done() const { return this->state_->done(); }
  [[nodiscard]] bool cancelled() const { return this->state_->cancelled(); }
  /* Asks for the task to be stopped (queued or running) and waits up to `timeout` for it to
   * end. Returns true if it ended cancelled, false if it finished (or failed) first. */
  template <class Rep = long, class Period = std::milli>
  bool cancel(std::chrono::duration<Rep, Period> timeout = std::chrono::seconds(10)) {
    if (done()) return cancelled();
    this->state_->request_cancel();
    this->wait(timeout);
    return cancelled();
  }
  /* The result (rethrowing the failure); dpool::Error(kTimeout) after `timeout`. */
  template <class Rep, class Period>
  R result(std::chrono::duration<Rep, Period> timeout) const {
    return this->get(timeout);
  }
  R result() const { return this->get(); }
  /* The failure, or nullptr if the task succeeded. */
  [[nodiscard]] std::exception_ptr exception() const {
    this->wait();
    return this->state_->error();
  }
  template <class Rep, class Period>
  [[nodiscard]] std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    if (!this->wait(timeout)) throw Error(Errc::kTimeout, "the result did not arrive in time");
    return this->state_->error();
  }
  /* Calls `f(*this)` when the future is done (at once if it is). Runs on the thread that
   * completes it: keep it short. */
  void add_done_callback(std::function<void(const Future<R>&)> f) const {
    Future<R> self = *this;
    this->state_->on_done([f = std::move(f), self] { f(self); });
  }
};

enum class ReturnWhen { kFirstCompleted, kFirstException, kAllCompleted };

template <class R>
struct WaitResult {
  std::vector<Future<R>> done;
  std::vector<Future<R>> not_done;
};

/* concurrent.futures.wait: blocks until the condition holds or `timeout` passes. */
template <class R>
WaitResult<R> wait(const std::vector<Future<R>>& futures,
                   ReturnWhen when = ReturnWhen::kAllCompleted,
                   std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t done = 0;
    bool failed = false;
  };
  auto shared = std::make_shared<Shared>();
  for (const auto& f : futures) {
    f.add_done_callback([shared](const Future<R>& g) {
      const bool failed = g.exception() != nullptr;
      {
        std::lock_guard lock(shared->mutex);
        ++shared->done;
        shared->failed = shared->failed || failed;
      }
      shared->cv.notify_all();
    });
  }
  auto satisfied = [&] {
    if (shared->done == futures.size()) return true;
    if (when == ReturnWhen::kFirstCompleted) return shared->done > 0;
    if (when == ReturnWhen::kFirstException) return shared->failed;
    return false;
  };
  {
    std::unique_lock lock(shared->mutex);
    if (timeout) shared->cv.wait_for(lock, *timeout, satisfied);
    else shared->cv.wait(lock, satisfied);
  }
  WaitResult<R> out;
  for (const auto& f : futures) (f.done() ? out.done : out.not_done).push_back(f);
  return out;
}

/* concurrent.futures.as_completed: the futures in the order they finish. Iterating blocks for
 * the next one; with a timeout, dpool::Error(kTimeout) when the next is not done in time. */
template <class R>
class AsCompleted {
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::size_t> finished;
  };

 public:
  AsCompleted(std::vector<Future<R>> futures, std::optional<std::chrono::milliseconds> timeout)
      : futures_(std::move(futures)),
        shared_(std::make_shared<Shared>()),
        deadline_(timeout ? std::optional(std::chrono::steady_clock::now() + *timeout)
                          : std::nullopt) {
    for (std::size_t i = 0; i < futures_.size(); ++i) {
      futures_[i].add_done_callback([s = shared_, i](const Future<R>&) {
        {
          std::lock_guard lock(s->mutex);
          s->finished.push_back(i);
        }
        s->cv.notify_all();
      });
    }
  }

  class iterator {
   public:
    using value_type = Future<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompleted* owner) : owner_(owner) { advance(); }
    const Future<R>& operator*() const { return current_; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    bool operator==(std::default_sentinel_t) const { return owner_ == nullptr; }

   private:
    void advance() {
      if (!owner_ || owner_->taken_ == owner_->futures_.size()) {
        owner_ = nullptr;
        return;
      }
      auto& s = *owner_->shared_;
      std::unique_lock lock(s.mutex);
      auto ready = [&] { return !s.finished.empty(); };
      if (owner_->deadline_) {
        if (!s.cv.wait_until(lock, *owner_->deadline_, ready)) {
          throw Error(Errc::kTimeout, "as_completed: not every future finished in time");
        }
      } else {
        s.cv.wait(lock, ready);
      }
      current_ = owner_->futures_[s.finished.front()];
      s.finished.pop_front();
      ++owner_->taken_;
    }
    AsCompleted* owner_ = nullptr;
    Future<R> current_;
  };

  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::vector<Future<R>> futures_;
  std::shared_ptr<Shared> shared_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::size_t taken_ = 0;
};

template <class R>
AsCompleted<R> as_completed(std::vector<Future<R>> futures,
                            std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
  return AsCompleted<R>(std::move(futures), timeout);
}

}  // namespace dpool
