/* The worker program the end-to-end tests run: dpool's worker host with test functions.
 *
 * crash_always kills its own process (a task that kills its worker every time);
 * crash_once_per_file does so only the first time it sees its marker file missing, so a test
 * can kill exactly one attempt; fail throws; slow_square takes long enough to be killed mid-run.
 */
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "dpool/worker.hpp"

namespace {

long long square(long long x) { return x * x; }
DPOOL_TASK(square);

long long add(long long a, long long b) { return a + b; }
DPOOL_TASK(add);

long long slow_square(long long x, int millis) {
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return x * x;
}
DPOOL_TASK(slow_square);

int fail(const std::string& message) { throw std::out_of_range(message); }
DPOOL_TASK(fail);

int crash_always(int) {
  ::kill(::getpid(), SIGKILL);
  return 0;
}
DPOOL_TASK(crash_always);

/* Crashes the first time for a given marker path (creating it), succeeds afterwards. */
int crash_once_per_file(const std::string& marker, int value) {
  if (::access(marker.c_str(), F_OK) != 0) {
    std::ofstream(marker) << ::getpid();
    ::kill(::getpid(), SIGKILL);
  }
  return value;
}
DPOOL_TASK(crash_once_per_file);

int whoami() { return static_cast<int>(::getpid()); }
DPOOL_TASK(whoami);

}  // namespace

int main(int argc, char** argv) { return dpool::worker_main(argc, argv); }
