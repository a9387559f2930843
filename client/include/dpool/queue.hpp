/* JoinableQueue: multiprocessing.JoinableQueue across a cluster (included by pool.hpp).
 *
 * put() sends a call of the queue's function to the pool's workers; the worker finishing it
 * is its task_done(). join() returns once every task put on the queue has been done: the ones
 * put here, and, because the queue is named on the broker, the ones that producers in other
 * processes or on other hosts put under the same name. get() hands back the results of this
 * producer's tasks as they finish, rethrowing a task's failure.
 */
#pragma once

#include <deque>

namespace dpool {

template <class R>
class JoinableQueue {
  using Item = std::variant<detail::Stored<R>, std::exception_ptr>;

 public:
  /* A queue of calls to `function` (registered with DPOOL_TASK) named `name` on the broker
   * (empty: a name of its own that no one else shares). */
  template <class... A>
  JoinableQueue(Pool& pool, R (*function)(A...), std::string name = {})
      : JoinableQueue(pool, detail::name_of(detail::address_of(function)), std::move(name)) {}
  JoinableQueue(Pool& pool, std::string function, std::string name = {})
      : core_(pool.core_),
        function_(std::move(function)),
        name_(name.empty() ? make_peer_id('q') : std::move(name)),
        shared_(std::make_shared<Shared>()) {}

  /* Puts one call; thread-safe. ArgumentError if the arguments do not fit (where known). */
  template <class... Args>
  void put(Args&&... args) {
    auto packed = pack_args(args...);
    detail::check_arguments(function_, packed);
    {
      std::lock_guard lock(shared_->mutex);
      ++shared_->unfinished;
    }
    auto shared = shared_;
    auto function = function_;
    try {
      core_->submit(function_, std::move(packed), 0,
                    [shared, function](TaskResult&& r) {
                      Item item;
                      if (auto failure = detail::failure_of(r, function)) {
                        item = failure;
                      } else {
                        try {
                          auto h = unpack_in_place(r.value);
                          item = detail::decode_value<R>(h.get(), function);
                        } catch (...) {
                          item = std::current_exception();
                        }
                      }
                      {
                        std::lock_guard lock(shared->mutex);
                        shared->results.push_back(std::move(item));
                        --shared->unfinished;
                      }
                      shared->changed.notify_all();
                    },
                    name_);
    } catch (...) {
      std::lock_guard lock(shared_->mutex);
      --shared_->unfinished;
      throw;
    }
  }

  /* The next result of a task put here, in the order they finish; blocks until one is in. */
  detail::Stored<R> get() {
    std::unique_lock lock(shared_->mutex);
    shared_->changed.wait(lock, [&] { return !shared_->results.empty(); });
    return take(lock);
  }
  /* The same, or nullopt if none is in within `timeout` (Python raises queue.Empty). */
  std::optional<detail::Stored<R>> get(std::chrono::milliseconds timeout) {
    std::unique_lock lock(shared_->mutex);
    if (!shared_->changed.wait_for(lock, timeout, [&] { return !shared_->results.empty(); }))
      return std::nullopt;
    return take(lock);
  }

  /* Waits until every task put on this queue, here or by any other producer, is done. */
  void join() {
    {
      std::unique_lock lock(shared_->mutex);
      shared_->changed.wait(lock, [&] { return shared_->unfinished == 0; });
    }
    core_->join_queue(name_).get();
  }

  /* Tasks put here and not done yet. */
  [[nodiscard]] std::size_t unfinished() const {
    std::lock_guard lock(shared_->mutex);
    return shared_->unfinished;
  }
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  struct Shared {
    mutable std::mutex mutex;
    std::condition_variable changed;
    std::deque<Item> results;
    std::size_t unfinished = 0;
  };

  detail::Stored<R> take(std::unique_lock<std::mutex>&) {
    Item item = std::move(shared_->results.front());
    shared_->results.pop_front();
    if (item.index() == 1) std::rethrow_exception(std::get<1>(item));
    return std::get<0>(std::move(item));
  }

  std::shared_ptr<detail::PoolCore> core_;
  std::string function_;
  std::string name_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace dpool
