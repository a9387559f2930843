/* The plugin tests/test_plugins.cpp loads into dpool-worker. Unlike examples/math_tasks.cpp,
 * which only includes the headers, it links the static worker library and so carries its own
 * copy of the registry code: its DPOOL_TASKs must still land in the worker's one registry
 * (see worker/src/registry.cpp).
 *
 * tests/test_worker_limits.cpp loads it too, for tasks that misbehave on purpose: one that
 * naps, one that echoes slowly, one that keeps memory, one that writes to stderr and aborts, one
 * that fails a given number of times, one that is slow only the first time, one that logs each run
 * to a file. */
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dpool/worker.hpp"

namespace {

long long cube(long long x) { return x * x * x; }
DPOOL_TASK(cube);

/* The registry as this plugin sees it: the host's built-ins and other plugins' tasks too. */
std::vector<std::string> plugin_task_names() { return dpool::task_names(); }
DPOOL_TASK(plugin_task_names);

/* Sleeps `millis` and returns this process's pid. */
int nap_ms(int millis) {
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return static_cast<int>(::getpid());
}
DPOOL_TASK(nap_ms);

/* Returns `x` after `millis`. */
long long slow_echo(long long x, int millis) {
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return x;
}
DPOOL_TASK(slow_echo);

/* Allocates `mib` MiB, touches every page and keeps it for the life of the process (a leak on
 * purpose); returns the pid. */
int hold_memory(int mib) {
  static std::vector<std::unique_ptr<char[]>> kept;
  const std::size_t bytes = static_cast<std::size_t>(mib) << 20;
  kept.emplace_back(new char[bytes]);
  std::memset(kept.back().get(), 1, bytes);
  return static_cast<int>(::getpid());
}
DPOOL_TASK(hold_memory);

/* Writes a few lines ending with `last` to stderr, then aborts its process. */
int scream_and_abort(const std::string& last) {
  for (int i = 1; i <= 30; ++i) std::fprintf(stderr, "noise line %d\n", i);
  std::fprintf(stderr, "%s\n", last.c_str());
  std::fflush(stderr);
  std::abort();
}
DPOOL_TASK(scream_and_abort);

/* Writes `line` to stderr, then sleeps `millis`; returns the pid. */
int scream_and_nap(const std::string& line, int millis) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return static_cast<int>(::getpid());
}
DPOOL_TASK(scream_and_nap);

/* Throws the first `failures` times it is called with `key` in this process, then returns the
 * number of calls so far. */
int flaky(const std::string& key, int failures) {
  static std::map<std::string, int> calls;
  const int n = ++calls[key];
  if (n <= failures) throw std::runtime_error(key + " failed on call " + std::to_string(n));
  return n;
}
DPOOL_TASK(flaky);

/* The first call for a `marker` path creates it and sleeps `millis`; later calls return at
 * once. Returns the pid. */
int slow_once(const std::string& marker, int millis) {
  if (::access(marker.c_str(), F_OK) != 0) {
    std::ofstream(marker) << ::getpid();
    std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  }
  return static_cast<int>(::getpid());
}
DPOOL_TASK(slow_once);

/* Appends `key` and a newline to the file at `path` (one write, O_APPEND: lines from several
 * processes never mix), then sleeps `millis`. Returns the pid. */
int log_and_nap(const std::string& path, long long key, int millis) {
  const std::string line = std::to_string(key) + "\n";
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) throw std::runtime_error("cannot open " + path);
  std::setvbuf(f, nullptr, _IONBF, 0);
  const bool written = std::fwrite(line.data(), 1, line.size(), f) == line.size();
  std::fclose(f);
  if (!written) throw std::runtime_error("cannot write " + path);
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return static_cast<int>(::getpid());
}
DPOOL_TASK(log_and_nap);

}  // namespace
