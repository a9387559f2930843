/* Imap: the lazy results of Pool::imap and Pool::imap_unordered (included by pool.hpp).
 *
 * The input is read only by the thread that iterates, and only as far as the window allows:
 * each step of the iteration first tops the window up with new chunks, then waits for the
 * next result (the next in input order for imap, any for imap_unordered). So an endless input
 * runs in constant memory, and a consumer that stops iterating stops the submission too.
 * Dereferencing an item that failed throws its failure; iterating past it goes on.
 */
#pragma once

#include <condition_variable>
#include <deque>
#include <iterator>
#include <map>
#include <mutex>
#include <ranges>
#include <variant>

namespace dpool {

template <class R>
class Imap {
  using Item = detail::ItemResult<R>;

  struct Shared {
    std::mutex mutex;
    std::condition_variable arrived;
    std::map<std::size_t, Item> ready;  // by input index
    std::deque<std::size_t> order;      // arrival order (imap_unordered)
  };

 public:
  template <class Range>
  Imap(std::shared_ptr<detail::PoolCore> core, std::string function, Range&& xs,
       std::size_t chunksize, bool ordered, std::shared_ptr<const TaskPolicy> policy = nullptr)
      : core_(std::move(core)),
        function_(std::move(function)),
        chunksize_(std::max<std::size_t>(1, chunksize)),
        ordered_(ordered),
        shared_(std::make_shared<Shared>()),
        policy_(std::move(policy)) {
    auto view = std::make_shared<decltype(std::views::all(std::forward<Range>(xs)))>(
        std::views::all(std::forward<Range>(xs)));
    auto it = std::make_shared<std::ranges::iterator_t<decltype(*view)>>(std::ranges::begin(*view));
    next_ = [view, it](msgpack::packer<detail::StringSink>& p) {
      if (*it == std::ranges::end(*view)) return false;
      detail::AsArgument::pack(p, **it);
      ++*it;
      return true;
    };
  }

  class iterator {
   public:
    using value_type = detail::Stored<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Imap* owner) : owner_(owner) { advance(); }
    /* The result; throws the item's failure. */
    value_type operator*() const {
      if (current_.index() == 1) std::rethrow_exception(std::get<1>(current_));
      return std::get<0>(current_);
    }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    bool operator==(std::default_sentinel_t) const { return owner_ == nullptr; }

   private:
    void advance() {
      if (owner_ && !owner_->next(current_)) owner_ = nullptr;
    }
    Imap* owner_ = nullptr;
    Item current_;
  };

  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  /* Tops the window up, then takes the next result; false when there are no more. */
  bool next(Item& out) {
    fill();
    std::unique_lock lock(shared_->mutex);
    if (taken_ == submitted_ && exhausted_) return false;
    if (ordered_) {
      shared_->arrived.wait(lock, [&] { return shared_->ready.contains(taken_); });
      auto node = shared_->ready.extract(taken_);
      out = std::move(node.mapped());
    } else {
      shared_->arrived.wait(lock, [&] { return !shared_->order.empty(); });
      const auto index = shared_->order.front();
      shared_->order.pop_front();
      auto node = shared_->ready.extract(index);
      out = std::move(node.mapped());
    }
    ++taken_;
    return true;
  }

  void fill() {
    const auto window = std::max(core_->options().imap_window, chunksize_);
    while (!exhausted_ && submitted_ - taken_ + chunksize_ <= window) {
      // The item count heads the chunk, so the items are packed first and copied in after it.
      std::size_t count = 0;
      std::string body;
      detail::StringSink body_sink{body};
      msgpack::packer<detail::StringSink> bp(body_sink);
      while (count < chunksize_ && next_(bp)) ++count;
      if (count == 0) {
        exhausted_ = true;
        break;
      }
      if (submitted_ == 0) check_first(body, count);
      std::string payload;
      detail::StringSink sink{payload};
      msgpack::packer<detail::StringSink>(sink).pack_array(static_cast<std::uint32_t>(count));
      payload += body;
      submit_chunk(std::move(payload), submitted_, count);
      submitted_ += count;
      if (count < chunksize_) exhausted_ = true;
    }
  }

  void check_first(const std::string& body, std::size_t) {
    // The first item's arguments are the first msgpack object of `body`.
    std::size_t offset = 0;
    auto handle = msgpack::unpack(body.data(), body.size(), offset);
    detail::check_arguments(function_, std::string_view(body.data(), offset));
  }

  void submit_chunk(std::string payload, std::size_t first, std::size_t count) {
    auto shared = shared_;
    auto function = function_;
    core_->submit(function_, std::move(payload), static_cast<std::uint32_t>(count),
                  [shared, function, first, count, ordered = ordered_](TaskResult&& r) {
                    auto items = detail::decode_chunk<R>(r, count, function);
                    {
                      std::lock_guard lock(shared->mutex);
                      for (std::size_t i = 0; i < count; ++i) {
                        shared->ready.emplace(first + i, std::move(items[i]));
                        if (!ordered) shared->order.push_back(first + i);
                      }
                    }
                    shared->arrived.notify_all();
                  },
                  {}, policy_.get());
  }

  std::shared_ptr<detail::PoolCore> core_;
  std::string function_;
  std::size_t chunksize_;
  bool ordered_;
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<const TaskPolicy> policy_;
  std::function<bool(msgpack::packer<detail::StringSink>&)> next_;
  std::size_t submitted_ = 0;  // items
  std::size_t taken_ = 0;
  bool exhausted_ = false;
};

}  // namespace dpool
