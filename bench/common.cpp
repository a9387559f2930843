/* The /proc readers and helpers behind common.hpp. Everything here is Linux-only on purpose:
 * the benchmark runs where dpool's workers run, and /proc is the one source that sees every
 * process of a tree without a helper tool. */
#include "common.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace bench {
namespace {

struct ProcStat {
  pid_t ppid = 0;
  unsigned long long ticks = 0;  // utime + stime + cutime + cstime
};

/* Fields after the command name, which may itself hold spaces and parentheses. */
bool read_stat(pid_t pid, ProcStat& out) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  std::vector<std::string> f;  // f[0] is field 3 (state)
  while (f.size() < 15 && rest >> field) f.push_back(field);
  if (f.size() < 15) return false;
  out.ppid = static_cast<pid_t>(std::stol(f[1]));
  // utime, stime, cutime, cstime are fields 14-17, i.e. f[11..14].
  out.ticks = std::stoull(f[11]) + std::stoull(f[12]) + std::stoull(f[13]) + std::stoull(f[14]);
  return true;
}

/* A process's threads' context switches, from /proc/PID/task/TID/status. */
double thread_switches(pid_t pid) {
  double total = 0;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "status");
    std::string key;
    while (in >> key) {
      if (key == "voluntary_ctxt_switches:" || key == "nonvoluntary_ctxt_switches:") {
        double n = 0;
        in >> n;
        total += n;
      }
      in.ignore(1 << 16, '\n');
    }
  }
  return total;
}

std::map<pid_t, ProcStat> all_processes() {
  std::map<pid_t, ProcStat> procs;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    ProcStat s;
    if (read_stat(static_cast<pid_t>(std::stol(name)), s)) procs.emplace(std::stol(name), s);
  }
  return procs;
}

double to_seconds(timeval t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

}  // namespace

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double self_cpu_seconds() {
  rusage self{}, children{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &children);
  return to_seconds(self.ru_utime) + to_seconds(self.ru_stime) + to_seconds(children.ru_utime) +
         to_seconds(children.ru_stime);
}

namespace {

/* Each root and its live descendants. */
std::vector<pid_t> tree_of(const std::vector<pid_t>& roots,
                           const std::map<pid_t, ProcStat>& procs) {
  std::multimap<pid_t, pid_t> children;
  for (const auto& [pid, s] : procs) children.emplace(s.ppid, pid);
  std::vector<pid_t> tree, todo(roots.begin(), roots.end());
  while (!todo.empty()) {
    const pid_t pid = todo.back();
    todo.pop_back();
    if (procs.count(pid)) tree.push_back(pid);
    auto [first, last] = children.equal_range(pid);
    for (auto it = first; it != last; ++it) todo.push_back(it->second);
  }
  return tree;
}

}  // namespace

double tree_cpu_seconds(const std::vector<pid_t>& roots) {
  if (roots.empty()) return 0;
  const auto procs = all_processes();
  unsigned long long ticks = 0;
  for (const pid_t pid : tree_of(roots, procs)) ticks += procs.at(pid).ticks;
  return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double tree_context_switches(const std::vector<pid_t>& roots) {
  if (roots.empty()) return 0;
  double total = 0;
  for (const pid_t pid : tree_of(roots, all_processes())) total += thread_switches(pid);
  return total;
}

double self_context_switches() {
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  return static_cast<double>(self.ru_nvcsw + self.ru_nivcsw);
}

long long rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long long kib = -1;
      in >> kib;
      return kib < 0 ? -1 : kib * 1024;
    }
    in.ignore(1 << 16, '\n');
  }
  return -1;
}

long long wait_until_idle(pid_t pid, std::chrono::milliseconds quiet,
                          std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const auto step = std::chrono::milliseconds(100);
  long long rss = rss_bytes(pid);
  double cpu = tree_cpu_seconds({pid});
  auto quiet_since = Clock::now();
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(step);
    const long long r = rss_bytes(pid);
    const double c = tree_cpu_seconds({pid});
    if (r < 0) return -1;
    // Heartbeats cost a broker a tick now and then: up to 20 ms of CPU a second still is idle.
    const double allowed = 0.02 * std::max(1.0, std::chrono::duration<double>(step).count());
    if (r != rss || c - cpu > allowed) quiet_since = Clock::now();
    rss = r;
    cpu = c;
    if (Clock::now() - quiet_since >= quiet) return rss;
  }
  return -1;
}

double percentile(std::vector<double> sample, double p) {
  if (sample.empty()) return 0;
  std::sort(sample.begin(), sample.end());
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sample.size())));
  return sample[std::clamp<std::size_t>(rank, 1, sample.size()) - 1];
}

void spin_cpu(std::chrono::microseconds cpu) {
  auto thread_cpu = [] {
    timespec t{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
  };
  const auto end = thread_cpu() + cpu;
  volatile std::uint64_t sink = 0;
  // Reading the clock is a system call: check it every few thousand additions, not each one.
  while (thread_cpu() < end) {
    for (int i = 0; i < 5000; ++i) sink = sink + static_cast<std::uint64_t>(i);
  }
}

std::vector<pid_t> parse_pids(const std::string& list) {
  std::vector<pid_t> pids;
  std::istringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) pids.push_back(static_cast<pid_t>(std::stol(item)));
  }
  return pids;
}

void report(const std::string& id, const std::vector<std::pair<std::string, double>>& values) {
  std::string line = "RESULT id=" + id;
  char number[64];
  for (const auto& [key, value] : values) {
    std::snprintf(number, sizeof number, "%.10g", value);
    line += " " + key + "=" + number;
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void report_memory(const std::string& id, std::uint64_t tasks, long long before, long long after,
                   double payload) {
  const double per_task = static_cast<double>(after - before) / static_cast<double>(tasks);
  report(id, {{"tasks", static_cast<double>(tasks)},
              {"rss_before", static_cast<double>(before)},
              {"rss_after", static_cast<double>(after)},
              {"per_task", per_task},
              {"payload", payload},
              {"beyond_payload", per_task - payload}});
}

}  // namespace bench
