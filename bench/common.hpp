/* What every bench program shares: clocks, CPU and memory readings from /proc, percentiles,
 * the CPU-bound spin, and the one output format run.sh parses.
 *
 * Deliberately free of dpool: the raw ZeroMQ baseline links this too, and a ceiling measured
 * with any of dpool's code in its path would not be a ceiling. CPU is read from /proc rather
 * than from a timing tool so that run.sh needs nothing beyond what dpool's setup installs, and
 * so that one reading covers a whole process tree (a worker host is a supervisor, a zygote and
 * its children).
 *
 * Output: one line per measurement,
 *   RESULT id=<run.sh's id> key=value key=value ...
 * on stdout, numbers only as values, so that run.sh reads it with nothing but bash.
 */
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;

[[nodiscard]] double seconds_since(Clock::time_point start);

/* User + system CPU seconds of this process (all threads) and of its reaped children. */
[[nodiscard]] double self_cpu_seconds();

/* User + system CPU seconds of each root process and of all its descendants, live ones read
 * directly and reaped ones through their parents' cutime/cstime. A pid that is gone counts 0. */
[[nodiscard]] double tree_cpu_seconds(const std::vector<pid_t>& roots);

/* Context switches (voluntary and not) of every thread of each root process and of its live
 * descendants. Unlike CPU time it hardly depends on what else the machine runs, so it shows
 * the structure of a message path even on a busy machine. */
[[nodiscard]] double tree_context_switches(const std::vector<pid_t>& roots);

/* The same for this process. */
[[nodiscard]] double self_context_switches();

/* The resident set size of a process in bytes (VmRSS), or -1 if it cannot be read. */
[[nodiscard]] long long rss_bytes(pid_t pid);

/* Waits until `pid` is idle: neither its RSS nor its CPU time moved for `quiet`. Returns its
 * RSS then, or -1 if `timeout` passed first. How W5 knows a broker has taken in every task
 * when the client library gives no count of them. */
[[nodiscard]] long long wait_until_idle(pid_t pid, std::chrono::milliseconds quiet,
                                        std::chrono::milliseconds timeout);

/* The p-th percentile (0..100) by nearest rank; 0 for an empty sample. */
[[nodiscard]] double percentile(std::vector<double> sample, double p);

/* Burns `cpu` of this thread's CPU time (not wall time), so that a task costs the same work
 * on a busy machine as on an idle one. */
void spin_cpu(std::chrono::microseconds cpu);

/* "1234,5678" -> {1234, 5678}; empty -> {}. */
[[nodiscard]] std::vector<pid_t> parse_pids(const std::string& list);

/* Prints `RESULT id=<id> k=v ...` and flushes, so that run.sh sees it even if we are killed. */
void report(const std::string& id, const std::vector<std::pair<std::string, double>>& values);

/* W5's line: the broker's RSS before and after `tasks` queued tasks of `payload` bytes each,
 * per task and beyond the payload. */
void report_memory(const std::string& id, std::uint64_t tasks, long long before, long long after,
                   double payload);

/* The CPU seconds and context switches of the watched processes plus this one, between two
 * points in time. */
class CpuMeter {
 public:
  explicit CpuMeter(std::vector<pid_t> watched) : watched_(std::move(watched)) {}
  void start() {
    cpu_ = cpu_now();
    switches_ = switches_now();
  }
  [[nodiscard]] double elapsed() const { return cpu_now() - cpu_; }
  [[nodiscard]] double switches() const { return switches_now() - switches_; }

 private:
  [[nodiscard]] double cpu_now() const { return self_cpu_seconds() + tree_cpu_seconds(watched_); }
  [[nodiscard]] double switches_now() const {
    return self_context_switches() + tree_context_switches(watched_);
  }
  std::vector<pid_t> watched_;
  double cpu_ = 0, switches_ = 0;
};

}  // namespace bench
