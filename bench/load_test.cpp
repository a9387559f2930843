/* dpool-bench-load: one broker under many peers (issue 7, item 4). Connects --workers simulated
 * worker hosts (load_workers.hpp) and --clients real dpool::Client objects to a dpool-broker
 * that load.sh started, runs --tasks `square` tasks through it, makes one worker die mid-run
 * while it holds leases, and prints RESULT lines: throughput, the broker's CPU and peak memory
 * (from /proc, hence --broker-pid), how long the broker took to notice the dead worker, and the
 * check that every task's result arrived exactly once and was right.
 *
 * Why one process for all peers: the clients, the workers and the death they must time share
 * one clock and need no coordination protocol of their own; the broker, the one thing being
 * measured, is the separate process. Why real clients: the client library is what users put
 * in front of the broker (its window, ACKs and resends are part of the load). Why the check
 * is here and not in a test: at this scale a result lost or run twice is exactly the bug a
 * load test exists to find, so a run that loses one fails (exit 1), whatever its speed.
 */
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <dpool/dpool.hpp>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "load_check.hpp"
#include "load_workers.hpp"

namespace {

using bench::Clock;
using namespace std::chrono_literals;

struct Options {
  std::string broker, id = "load";
  pid_t broker_pid = 0;
  std::size_t workers = 1000, clients = 50, threads = 2;
  std::uint64_t tasks = 1'000'000;
  std::uint32_t credit = 10, window = 10000, liveness = 3;
  long long heartbeat_ms = 1000;
  double kill_at = 0.3;  // fraction of results in when a worker dies; 0: none dies
  double timeout_s = 900;
};

/* The sockets of a thousand peers need file descriptors beyond a soft limit of 1024. */
void raise_open_file_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= r.rlim_max) return;
  r.rlim_cur = r.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &r);
}

/* A field of /proc/PID/status in bytes (VmHWM, VmRSS), or -1. */
long long proc_status_bytes(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == field + ":") {
      long long kib = -1;
      in >> kib;
      return kib < 0 ? -1 : kib * 1024;
    }
    in.ignore(1 << 16, '\n');
  }
  return -1;
}

void waits_until(Clock::time_point deadline, const char* what) {
  if (Clock::now() > deadline)
    throw std::runtime_error(std::string("timed out waiting for ") + what);
}

/* Until the broker reports `n` worker processes (one per simulated host). */
double wait_for_workers(dpool::Client& probe, std::size_t n, Clock::time_point deadline) {
  const auto start = Clock::now();
  while (probe.worker_processes() < n) {
    waits_until(deadline, "the workers to register");
    std::this_thread::sleep_for(20ms);
  }
  return bench::seconds_since(start);
}

std::vector<std::unique_ptr<dpool::Client>> make_clients(const Options& o,
                                                         Clock::time_point deadline) {
  std::vector<std::unique_ptr<dpool::Client>> clients;
  dpool::ClientConfig config;
  config.broker = o.broker;
  config.window = o.window;
  for (std::size_t c = 0; c < o.clients; ++c)
    clients.push_back(std::make_unique<dpool::Client>(config));
  for (auto& c : clients) {
    while (!c->wait_connected(100ms)) waits_until(deadline, "the clients to connect");
  }
  return clients;
}

/* Keeps every client's queue topped up (its window plus a little) until all tasks are
 * submitted and answered, makes a worker die when `kill_at` of the results are in, and prints
 * progress every 5 s. Returns the seconds from the first submission to the last result. */
double drive(const Options& o, std::vector<std::unique_ptr<dpool::Client>>& clients,
             bench::load::Checker& check, bench::load::DeathWatch& watch,
             Clock::time_point deadline) {
  const std::size_t n = clients.size();
  std::vector<std::uint64_t> next(n), end(n);
  for (std::size_t c = 0; c < n; ++c) {
    next[c] = o.tasks * c / n;
    end[c] = o.tasks * (c + 1) / n;
  }
  const std::size_t backlog = o.window + 1000;
  // Longer than any wait the dead worker can cause (its expiry, a few times over).
  const auto stall = std::max(60s, std::chrono::seconds(o.heartbeat_ms * o.liveness / 100));
  const auto start = Clock::now();
  auto report_at = start + 5s;
  const auto kill_after = static_cast<std::uint64_t>(o.kill_at * static_cast<double>(o.tasks));
  std::uint64_t seen = 0;
  auto progressed = start;
  while (check.done() < o.tasks) {
    waits_until(deadline, "every result");
    if (check.done() != seen) {
      seen = check.done();
      progressed = Clock::now();
    } else if (Clock::now() - progressed > stall) {
      throw std::runtime_error("no result for " + std::to_string(stall.count()) + " s");
    }
    bool submitted = false;
    for (std::size_t c = 0; c < n; ++c) {
      auto& client = *clients[c];
      while (next[c] < end[c] && client.pending() < backlog) {
        const std::uint64_t i = next[c]++;
        client.submit("square", dpool::pack_args(static_cast<std::int64_t>(i)),
                      [&check, i](dpool::TaskResult&& r) { check.take(i, std::move(r)); });
        submitted = true;
      }
    }
    if (o.kill_at > 0 && check.done() >= kill_after) watch.start();
    if (Clock::now() >= report_at) {
      std::fprintf(stderr, "  %llu / %llu results, %.0f tasks/s\n",
                   static_cast<unsigned long long>(check.done()),
                   static_cast<unsigned long long>(o.tasks),
                   static_cast<double>(check.done()) / bench::seconds_since(start));
      report_at += 5s;
    }
    if (!submitted) std::this_thread::sleep_for(1ms);
  }
  return bench::seconds_since(start);
}

/* The broker's figures from /proc: memory at the moments that explain it, CPU over the run. */
struct BrokerReadings {
  long long rss_idle = -1, rss_connected = -1, rss_end = -1, hwm = -1;
  double cpu = 0, driver_cpu = 0;  // seconds during the run: the broker's, and this process's
};

void report_run(const Options& o, double seconds, double connect_s, std::uint64_t done,
                const BrokerReadings& b) {
  const auto per_task = [&](double x) {
    return x / static_cast<double>(std::max<std::uint64_t>(o.tasks, 1));
  };
  bench::report(o.id + ".run", {{"workers", static_cast<double>(o.workers)},
                                {"clients", static_cast<double>(o.clients)},
                                {"tasks", static_cast<double>(o.tasks)},
                                {"seconds", seconds},
                                {"rate", seconds > 0 ? static_cast<double>(done) / seconds : 0},
                                {"connect_seconds", connect_s},
                                {"broker_cpu", b.cpu},
                                {"broker_cpu_us_per_task", per_task(b.cpu) * 1e6},
                                {"driver_cpu", b.driver_cpu},
                                {"broker_hwm", static_cast<double>(b.hwm)},
                                {"broker_rss_end", static_cast<double>(b.rss_end)},
                                {"broker_rss_idle", static_cast<double>(b.rss_idle)},
                                {"broker_rss_connected", static_cast<double>(b.rss_connected)}});
}

/* Runs the tasks and takes the broker's readings around them; a failure to finish is recorded
 * in `check`, not thrown, so that everything measured so far is still reported. */
double measured_run(const Options& o, std::vector<std::unique_ptr<dpool::Client>>& clients,
                    bench::load::Checker& check, bench::load::DeathWatch& watch,
                    Clock::time_point deadline, BrokerReadings& b) {
  const double cpu_before = bench::tree_cpu_seconds({o.broker_pid});
  const double own_before = bench::self_cpu_seconds();
  std::fprintf(stderr, "running %llu tasks\n", static_cast<unsigned long long>(o.tasks));
  double seconds = 0;
  try {
    seconds = drive(o, clients, check, watch, deadline);
  } catch (const std::exception& e) {
    check.problem(e.what());
  }
  b.cpu = bench::tree_cpu_seconds({o.broker_pid}) - cpu_before;
  b.driver_cpu = bench::self_cpu_seconds() - own_before;
  b.hwm = proc_status_bytes(o.broker_pid, "VmHWM");
  b.rss_end = proc_status_bytes(o.broker_pid, "VmRSS");
  return seconds;
}

int run(const Options& o) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(o.timeout_s));
  BrokerReadings b;
  b.rss_idle = proc_status_bytes(o.broker_pid, "VmRSS");
  dpool::ClientConfig probe_config;
  probe_config.broker = o.broker;
  dpool::Client probe(probe_config);

  std::fprintf(stderr, "connecting %zu simulated workers\n", o.workers);
  const auto heartbeat = std::chrono::milliseconds(o.heartbeat_ms);
  bench::load::SimWorkers sims({o.broker, o.workers, o.threads, o.credit, heartbeat});
  const double connect_s = wait_for_workers(probe, o.workers, deadline);
  std::fprintf(stderr, "%zu workers registered in %.2f s; connecting %zu clients\n", o.workers,
               connect_s, o.clients);
  auto clients = make_clients(o, deadline);
  std::this_thread::sleep_for(heartbeat);  // a tick, so the connections have settled
  b.rss_connected = proc_status_bytes(o.broker_pid, "VmRSS");

  bench::load::Checker check(o.tasks);
  bench::load::DeathWatch watch(sims, probe, deadline);
  const double seconds = measured_run(o, clients, check, watch, deadline, b);
  watch.finish();
  const auto final_report = bench::load::final_status(probe);
  check.close();
  clients.clear();  // joins their I/O threads: nothing writes to the checker after this

  report_run(o, seconds, connect_s, check.done(), b);
  watch.report(o.id + ".dead", heartbeat, heartbeat * o.liveness, o.kill_at > 0, check);
  check.report(o.id + ".check", sims.counters(), final_report);
  return check.verdict();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dpool-bench-load: many workers and clients on one broker, every result checked"};
  Options o;
  app.add_option("--broker", o.broker, "the broker's address")->required();
  app.add_option("--broker-pid", o.broker_pid, "the broker process, for its CPU and memory")
      ->required();
  app.add_option("--workers", o.workers, "simulated worker hosts")->capture_default_str();
  app.add_option("--clients", o.clients, "dpool::Client objects")->capture_default_str();
  app.add_option("--tasks", o.tasks, "tasks in all")->capture_default_str();
  app.add_option("--credit", o.credit, "leases each worker takes at once")->capture_default_str();
  app.add_option("--window", o.window, "each client's window")->capture_default_str();
  app.add_option("--threads", o.threads, "threads running the simulated workers")
      ->capture_default_str();
  app.add_option("--heartbeat-ms", o.heartbeat_ms,
                 "the broker's heartbeat interval (the workers use it too)")
      ->capture_default_str();
  app.add_option("--liveness", o.liveness, "the broker's heartbeat liveness (for the report)")
      ->capture_default_str();
  app.add_option("--kill-at", o.kill_at, "fraction of results in when one worker dies; 0: none")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "seconds before the run gives up and fails")
      ->capture_default_str();
  app.add_option("--id", o.id, "prefix of the RESULT ids")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  raise_open_file_limit();
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool-bench-load: FAILED: %s\n", e.what());
    return 1;
  }
}
