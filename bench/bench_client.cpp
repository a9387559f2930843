/* dpool-bench-client: the dpool side of every workload, against a broker and workers that
 * run.sh started as separate processes (dpool-broker, dpool-bench-worker).
 *
 *   dpool-bench-client client  --broker ADDR [--count N] [--window W]     W1, dpool::Client
 *   dpool-bench-client map     --broker ADDR [--count N] [--chunksize C]  W1, Pool.map
 *   dpool-bench-client latency --broker ADDR [--count N]                  W2, Pool.apply
 *   dpool-bench-client cpu     --broker ADDR [--count N]                  W3, Pool.map of spin_10ms
 *   dpool-bench-client fill    --broker ADDR --broker-pid PID [--count N] W5, no worker
 *   dpool-bench-client payload --broker ADDR [--count N] [--mib M]        W6, Pool.apply_async
 *
 * Each mode waits for the workers it needs, runs a warm-up that is not measured (connections,
 * page faults, the workers' first tasks), then measures and prints one RESULT line. The Pool
 * modes use dpool::Pool with its defaults, as a user would write them; only the Client mode
 * sets a window (1000, the raw baseline's), since it stands for the library's bare path. CPU
 * is this process plus the process trees named by --watch (the broker and the worker host),
 * counted over the measured part only.
 */
#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <future>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <dpool/dpool.hpp>

#include "common.hpp"

namespace {

struct Common {
  std::string broker, id = "dpool", watch;
  std::uint64_t count = 0, warmup = 0;
  std::size_t workers = 1;
};

void wait_for_workers(const std::string& broker, std::size_t n) {
  dpool::ClientConfig config;
  config.broker = broker;
  dpool::Client client(config);
  const auto deadline = bench::Clock::now() + std::chrono::seconds(15);
  while (client.worker_processes() < n) {
    if (bench::Clock::now() > deadline)
      throw std::runtime_error("workers did not connect within 15 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<std::int64_t> iota(std::uint64_t n) {
  std::vector<std::int64_t> xs(n);
  std::iota(xs.begin(), xs.end(), 0);
  return xs;
}

void check_squares(const std::vector<std::int64_t>& ys) {
  for (std::size_t i = 0; i < ys.size(); ++i) {
    const auto x = static_cast<std::int64_t>(i);
    if (ys[i] != x * x) throw std::runtime_error("wrong result at " + std::to_string(i));
  }
}

// ---- W1: dpool::Client ---------------------------------------------------------------------

/* Results put back in task order, as a caller consuming them in order sees them. Completions
 * all run on the Client's I/O thread, so only the end needs synchronising. */
class InOrder {
 public:
  explicit InOrder(std::uint64_t n) : filled_(n, 0) {}
  void put(std::uint64_t i, dpool::TaskResult&& r) {
    try {
      const auto x = static_cast<std::int64_t>(i);
      if (r.as<std::int64_t>("square") != x * x) throw std::runtime_error("wrong result");
      filled_[i] = 1;
      while (cursor_ < filled_.size() && filled_[cursor_]) ++cursor_;
      if (cursor_ == filled_.size()) done_.set_value();
    } catch (...) {
      if (!failed_) done_.set_exception(std::current_exception());
      failed_ = true;
    }
  }
  void wait() { done_.get_future().get(); }

 private:
  std::vector<char> filled_;
  std::size_t cursor_ = 0;
  bool failed_ = false;
  std::promise<void> done_;
};

double client_round(dpool::Client& client, std::uint64_t count) {
  InOrder sink(count);
  const auto start = bench::Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    client.submit("square", dpool::pack_args(static_cast<std::int64_t>(i)),
                  [&sink, i](dpool::TaskResult&& r) { sink.put(i, std::move(r)); });
  }
  sink.wait();
  return bench::seconds_since(start);
}

int run_client(const Common& o, std::uint32_t window) {
  wait_for_workers(o.broker, o.workers);
  dpool::ClientConfig config;
  config.broker = o.broker;
  config.window = window;
  dpool::Client client(config);
  if (o.warmup) (void)client_round(client, o.warmup);
  bench::CpuMeter cpu(bench::parse_pids(o.watch));
  cpu.start();
  const double seconds = client_round(client, o.count);
  bench::report(o.id, {{"tasks", static_cast<double>(o.count)},
                       {"seconds", seconds},
                       {"rate", static_cast<double>(o.count) / seconds},
                       {"cpu", cpu.elapsed()},
                       {"switches", cpu.switches()}});
  return 0;
}

// ---- W1: Pool.map, W3: Pool.map of a CPU-bound task ----------------------------------------

dpool::Pool remote_pool(const std::string& broker) {
  return dpool::Pool(dpool::Options{.broker = broker});
}

int run_map(const Common& o, const std::string& function, std::size_t chunksize) {
  wait_for_workers(o.broker, o.workers);
  auto pool = remote_pool(o.broker);
  if (o.warmup) (void)pool.map<std::int64_t>(function, iota(o.warmup), chunksize);
  const auto xs = iota(o.count);
  bench::CpuMeter cpu(bench::parse_pids(o.watch));
  cpu.start();
  const auto start = bench::Clock::now();
  const auto ys = pool.map<std::int64_t>(function, xs, chunksize);
  const double seconds = bench::seconds_since(start);
  const double cpu_seconds = cpu.elapsed();
  const double switches = cpu.switches();
  if (function == "square") check_squares(ys);
  else if (ys != xs) throw std::runtime_error(function + ": wrong results");
  bench::report(o.id, {{"tasks", static_cast<double>(o.count)},
                       {"chunksize", static_cast<double>(chunksize)},
                       {"seconds", seconds},
                       {"rate", static_cast<double>(o.count) / seconds},
                       {"cpu", cpu_seconds},
                       {"switches", switches}});
  return 0;
}

// ---- W2: Pool.apply, one at a time ---------------------------------------------------------

int run_latency(const Common& o) {
  wait_for_workers(o.broker, o.workers);
  auto pool = remote_pool(o.broker);
  for (std::uint64_t i = 0; i < o.warmup; ++i)
    (void)pool.apply<std::int64_t>("square", static_cast<std::int64_t>(i));
  std::vector<double> us;
  us.reserve(o.count);
  for (std::uint64_t i = 0; i < o.count; ++i) {
    const auto x = static_cast<std::int64_t>(i);
    const auto start = bench::Clock::now();
    const auto y = pool.apply<std::int64_t>("square", x);
    us.push_back(bench::seconds_since(start) * 1e6);
    if (y != x * x) throw std::runtime_error("wrong result");
  }
  bench::report(o.id, {{"tasks", static_cast<double>(o.count)},
                       {"p50", bench::percentile(us, 50)},
                       {"p99", bench::percentile(us, 99)},
                       {"max", bench::percentile(us, 100)}});
  return 0;
}

// ---- W5: the broker's memory per queued task -----------------------------------------------

int run_fill(const Common& o, pid_t broker_pid, std::size_t bytes) {
  if (broker_pid <= 0) throw std::invalid_argument("fill needs --broker-pid");
  dpool::ClientConfig config;
  config.broker = o.broker;
  // Every task goes to the broker at once: the window is what would otherwise hold them back.
  config.window = static_cast<std::uint32_t>(o.count + 1);
  dpool::Client client(config);
  if (!client.wait_connected(std::chrono::seconds(10))) throw std::runtime_error("no broker");
  const long long before =
      bench::wait_until_idle(broker_pid, std::chrono::milliseconds(500), std::chrono::seconds(10));
  const std::string args = dpool::pack_args(std::vector<char>(bytes, 'x'));
  for (std::uint64_t i = 0; i < o.count; ++i)
    client.submit("echo_bytes", args, [](dpool::TaskResult&&) {});
  // The client library gives no count of accepted tasks: the broker has them all once it has
  // stopped working and growing.
  const long long after = bench::wait_until_idle(broker_pid, std::chrono::milliseconds(1500),
                                                 std::chrono::seconds(120));
  if (before < 0 || after < 0)
    throw std::runtime_error("could not read the broker's memory, or it never settled");
  bench::report_memory(o.id, o.count, before, after, static_cast<double>(args.size()));
  return 0;
}

// ---- W6: large payloads in and out ---------------------------------------------------------

/* `count` echo_bytes calls with at most `in_flight` outstanding, results taken in order. */
double payload_round(dpool::Pool& pool, const std::vector<char>& data, std::uint64_t count,
                     std::size_t in_flight) {
  std::deque<dpool::AsyncResult<std::vector<char>>> out;
  auto take = [&] {
    // Taken from a handle that is then dropped, as `pool.apply_async(...).get()` is: moved out.
    if (std::move(out.front()).get().size() != data.size())
      throw std::runtime_error("echo_bytes: wrong size");
    out.pop_front();
  };
  const auto start = bench::Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    if (out.size() >= in_flight) take();
    out.push_back(pool.apply_async<std::vector<char>>("echo_bytes", data));
  }
  while (!out.empty()) take();
  return bench::seconds_since(start);
}

int run_payload(const Common& o, std::size_t mib, std::size_t in_flight) {
  wait_for_workers(o.broker, o.workers);
  auto pool = remote_pool(o.broker);
  const std::vector<char> data(mib << 20, 'x');
  if (o.warmup) (void)payload_round(pool, data, o.warmup, in_flight);
  bench::CpuMeter cpu(bench::parse_pids(o.watch));
  cpu.start();
  const double seconds = payload_round(pool, data, o.count, in_flight);
  const double moved = 2.0 * static_cast<double>(o.count) * static_cast<double>(data.size());
  bench::report(o.id, {{"tasks", static_cast<double>(o.count)},
                       {"seconds", seconds},
                       {"gbps", moved / seconds / 1e9},
                       {"cpu", cpu.elapsed()},
                       {"switches", cpu.switches()}});
  return 0;
}

void add_common(CLI::App* cmd, Common& o, std::uint64_t count, std::uint64_t warmup) {
  o.count = count;
  o.warmup = warmup;
  cmd->add_option("--broker", o.broker, "the broker's address")->required();
  cmd->add_option("--id", o.id, "the id of the RESULT line");
  cmd->add_option("--count", o.count, "tasks measured")->capture_default_str();
  cmd->add_option("--warmup", o.warmup, "tasks run first, not measured")->capture_default_str();
  cmd->add_option("--workers", o.workers, "worker processes to wait for")->capture_default_str();
  cmd->add_option("--watch", o.watch, "pids whose process trees' CPU is counted, comma-separated");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dpool-bench-client: dpool's side of the benchmark workloads"};
  app.require_subcommand(1);
  Common client_o, map_o, latency_o, cpu_o, fill_o, payload_o;
  std::uint32_t window = 1000;
  std::size_t chunksize = 0, bytes = 97, mib = 16, in_flight = 4;
  pid_t broker_pid = 0;

  auto* client = app.add_subcommand("client", "W1: squares through dpool::Client, in order");
  add_common(client, client_o, 100000, 1000);
  client->add_option("--window", window, "tasks held by the broker at once")->capture_default_str();
  auto* map = app.add_subcommand("map", "W1: squares through Pool.map");
  add_common(map, map_o, 100000, 1000);
  map->add_option("--chunksize", chunksize, "0: Pool.map's default")->capture_default_str();
  auto* latency = app.add_subcommand("latency", "W2: one Pool.apply at a time");
  add_common(latency, latency_o, 2000, 100);
  auto* cpu = app.add_subcommand("cpu", "W3: Pool.map of 10 ms CPU-bound tasks, chunksize 1");
  add_common(cpu, cpu_o, 200, 4);
  auto* fill = app.add_subcommand("fill", "W5: queue tasks with no worker, read the broker's RSS");
  add_common(fill, fill_o, 1000000, 0);
  fill->add_option("--broker-pid", broker_pid, "the broker process")->required();
  fill->add_option("--bytes", bytes, "octets of each task's argument (the payload is 3 more)")
      ->capture_default_str();
  auto* payload = app.add_subcommand("payload", "W6: echo_bytes of large payloads");
  add_common(payload, payload_o, 100, 2);
  payload->add_option("--mib", mib, "MiB each way per task")->capture_default_str();
  payload->add_option("--in-flight", in_flight, "tasks outstanding at once")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (client->parsed()) return run_client(client_o, window);
    if (map->parsed()) return run_map(map_o, "square", chunksize);
    if (latency->parsed()) return run_latency(latency_o);
    if (cpu->parsed()) return run_map(cpu_o, "spin_10ms", 1);
    if (fill->parsed()) return run_fill(fill_o, broker_pid, bytes);
    return run_payload(payload_o, mib, in_flight);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool-bench-client: %s\n", e.what());
    return 1;
  }
}
