/* countdown: the seeds' CPU-bound benchmark, counting down from a large number several times,
 * first on a pool of 1 process and then on a pool of N, to see a process pool's speedup:
 *
 *   def counting(n):
 *       start = time.time()
 *       while n > 0:
 *           n -= 1
 *       return time.time() - start
 *
 *   with ProcessPoolExecutor(N) as executor:
 *       times = list(executor.map(counting, [50_000_000] * T))
 *
 *   countdown [--count C] [--times T] [--processes N]
 *
 * C defaults to 1,000,000,000: the seeds count from 50,000,000, which takes CPython seconds
 * but compiled C++ milliseconds, too little for the pool's own costs to stop mattering. N
 * defaults to the number of cores (at least 2, so that there is something to compare), T to
 * 2 N (so that every process of the larger pool gets work). Prints
 *
 *   countdown from 1000000000, 8 times
 *   1 process:   1.80 s (1.79 s counting)
 *   4 processes: 0.47 s (1.84 s counting)
 *   speedup: 3.83x with 4 processes
 *
 * where "counting" is the time the tasks themselves report, summed: it stays about the same
 * while the wall time shrinks, which is the point. On a machine with fewer free cores than N
 * the speedup is smaller; it is measured, never assumed.
 */
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <dpool/dpool.hpp>

namespace {

/* Runs in a worker process: the seed's `counting`. The counter is volatile so that the
 * compiler keeps the loop (it would otherwise compute its result at compile time) and the
 * task does the CPU work the benchmark is about. Returns the seconds it took. */
double countdown(long long n) {
  const auto start = std::chrono::steady_clock::now();
  volatile long long i = n;
  while (i > 0) i = i - 1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
DPOOL_TASK(countdown);

struct Timing {
  double wall = 0;      // seconds, from the first task sent to the last result in
  double counting = 0;  // seconds the tasks took, summed
};

Timing run_on(std::size_t processes, long long count, std::size_t times) {
  // A pool per measurement: each forks its own workers. The destructor at the end of this
  // function stops them, so that the next pool's processes do not compete with them.
  dpool::Pool pool(processes);
  // Not timed: lets the worker processes start and connect, which is the pool's start-up cost,
  // not the work's. One trivial task per process, one per chunk.
  (void)pool.map(countdown, std::vector<long long>(processes, 0), 1);
  const auto start = std::chrono::steady_clock::now();
  // chunksize 1: every countdown is its own task, so that idle processes take the next one
  // (Python's default chunking would hand out pairs of them on a pool of 1).
  const auto seconds = pool.map(countdown, std::vector<long long>(times, count), 1);
  Timing t;
  t.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  t.counting = std::accumulate(seconds.begin(), seconds.end(), 0.0);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"countdown: a CPU-bound task on a dpool::Pool of 1 process, then of N"};
  long long count = 1'000'000'000;
  std::size_t processes = std::max(2u, std::thread::hardware_concurrency());
  std::size_t times = 0;
  app.add_option("-c,--count", count, "count down from this")
      ->capture_default_str()
      ->check(CLI::Range(0LL, 1'000'000'000'000LL));
  app.add_option("-t,--times", times, "how many countdowns (default: 2 per process)")
      ->check(CLI::Range(1, 100000));
  app.add_option("-p,--processes", processes, "processes of the larger pool")
      ->capture_default_str()
      ->check(CLI::Range(2, 256));
  CLI11_PARSE(app, argc, argv);
  if (times == 0) times = 2 * processes;

  try {
    std::printf("countdown from %lld, %zu times\n", count, times);
    std::fflush(stdout);  // shows progress before the long first measurement
    const Timing one = run_on(1, count, times);
    std::printf("1 process:   %.2f s (%.2f s counting)\n", one.wall, one.counting);
    std::fflush(stdout);
    const Timing many = run_on(processes, count, times);
    std::printf("%zu processes: %.2f s (%.2f s counting)\n", processes, many.wall, many.counting);
    // A zero count can finish within the clock's resolution: no division by zero then.
    const double speedup = many.wall > 0 ? one.wall / many.wall : 1.0;
    std::printf("speedup: %.2fx with %zu processes\n", speedup, processes);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "countdown: %s\n", e.what());
    return 1;
  }
}
