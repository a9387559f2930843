/* The untyped side of dpool::Pool: the embedded cluster, the pool's task bookkeeping, and the
 * conversions from task results to values and failures (see pool.hpp). */
#include "dpool/pool.hpp"

#include "embedded.hpp"


#include <thread>

#include "dpool/log.hpp"
#include "dpool/util.hpp"
#include "dpool/worker.hpp"

namespace dpool::detail {


PoolCore::PoolCore(Options options) : options_(std::move(options)) {
  ClientConfig config;
  const auto broker = resolve_client_config(options_.broker, config);
  if (broker.empty()) {
    EmbeddedOptions embedded;
    embedded.processes = options_.processes;
    embedded.initializer = options_.initializer;
    embedded.max_tasks_per_child = options_.max_tasks_per_child;
    cluster_ = std::make_unique<EmbeddedCluster>(embedded);
    config.broker = cluster_->endpoint();
    config.curve = {};  // the embedded broker listens on loopback, without CURVE
  } else {
    // These shape the worker processes an embedded cluster starts; remote workers are started
    // by their own hosts (dpool-worker flags, or a worker program's own initialisation).
    if (options_.initializer || options_.processes || options_.max_tasks_per_child) {
      throw Error(Errc::kUsage,
                  "initializer, processes and max_tasks_per_child apply to the embedded "
                  "cluster only; on " +
                      broker +
                      " set them where the workers start "
                      "(dpool-worker --processes, --max-tasks-per-child, or your worker program)");
    }
    config.broker = broker;
    if (!options_.broker_key.empty()) config.curve.broker_key = options_.broker_key;
    if (!options_.curve_key.empty()) config.curve.secret_key = options_.curve_key;
  }
  config.connect_timeout = options_.connect_timeout;
  config.window = options_.window;
  if (options_.on_full) config.on_full = *options_.on_full;
  client_ = std::make_unique<Client>(config);
}

PoolCore::~PoolCore() {
  client_.reset();   // completes anything left as cancelled, before the cluster goes
  cluster_.reset();
}

std::uint64_t PoolCore::submit(std::string function, std::string args, std::uint32_t items,
                               Completion done, std::string queue, const TaskPolicy* policy) {
  std::lock_guard lock(mutex_);
  if (closed_) throw Error(Errc::kUsage, "the pool is closed: no new tasks");
  // A plain pointer, not a shared one: completions run on the client's I/O thread, and the
  // last reference to this core must never be dropped there (its destructor joins that very
  // thread). The core outlives every completion: its destructor first destroys the client,
  // which runs what is left and joins the I/O thread.
  const auto id = client_->submit(
      std::move(function), std::move(args),
      [done = std::move(done), this](TaskResult&& r) {
        const auto task = r.meta.id;
        done(std::move(r));
        std::lock_guard l(mutex_);
        outstanding_.erase(task);
        if (outstanding_.empty()) idle_.notify_all();
      },
      [&] {
        TaskOptions o;
        static_cast<TaskPolicy&>(o) = policy ? *policy : options_.task;
        o.items = items;
        o.queue = std::move(queue);
        return o;
      }());
  // Under mutex_, so the completion (which takes it too) cannot erase the id before this.
  outstanding_.insert(id);
  return id;
}

void PoolCore::cancel(std::uint64_t task_id) { client_->cancel({task_id}); }

std::shared_future<void> PoolCore::join_queue(std::string queue) {
  return client_->join_queue(std::move(queue));
}

void PoolCore::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

void PoolCore::join() {
  std::unique_lock lock(mutex_);
  if (!closed_)
    throw Error(Errc::kUsage, "join() on an open pool: close() or terminate() it first");
  idle_.wait(lock, [&] { return outstanding_.empty(); });
}

void PoolCore::terminate() {
  std::vector<std::uint64_t> ids;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    ids.assign(outstanding_.begin(), outstanding_.end());
  }
  client_->cancel(std::move(ids));
  join();
}

std::size_t PoolCore::workers() {
  if (cluster_) return cluster_->processes();
  if (client_->worker_processes() == 0) client_->wait_connected(options_.connect_timeout);
  return std::max<std::size_t>(1, client_->worker_processes());
}

std::string name_of(const void* function) {
  for (const auto& name : task_names()) {
    const TaskInfo* info = find_task(name);
    if (info && info->address == function) return name;
  }
  throw Error(Errc::kUsage, "this function is not registered as a task: add DPOOL_TASK(function) "
                            "beside its definition, or call it by name");
}

void check_arguments(const std::string& function, std::string_view packed_args) {
  const TaskInfo* info = find_task(function);
  if (!info || !info->check) return;  // only the workers know it: they will check
  auto handle = unpack_in_place(packed_args.data(), packed_args.size());
  info->check(handle.get());
}

std::exception_ptr failure_of(const TaskResult& r, const std::string& function) {
  if (r.ok()) return nullptr;
  try {
    r.throw_if_failed(function);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

std::exception_ptr item_failure(const TaskResult& r, const msgpack::object& item,
                                const std::string& function) {
  if (item.type != msgpack::type::ARRAY || item.via.array.size < 2) {
    return std::make_exception_ptr(
        Error(Errc::kInternal, function + ": a chunk item is malformed"));
  }
  if (item.via.array.ptr[0].as<int>() == 0) return nullptr;
  RemoteError::Info info;
  info.type = item.via.array.size > 1 ? item.via.array.ptr[1].as<std::string>() : "unknown";
  info.message = item.via.array.size > 2 ? item.via.array.ptr[2].as<std::string>() : "";
  info.function = function;
  info.host = r.meta.host;
  info.pid = r.meta.pid;
  info.attempts = r.meta.attempts;
  return std::make_exception_ptr(RemoteError(Errc::kRemote, std::move(info)));
}

}  // namespace dpool::detail
