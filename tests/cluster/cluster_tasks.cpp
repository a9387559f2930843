/* The task functions the cluster tests run, as a plugin for dpool-worker (the real worker
 * binary, as a cluster would run it).
 *
 * Every host of the test cluster shares the machine's host name and pid numbering, so neither
 * the result's `host` nor its `pid` says which namespace ran a task. The task says it itself:
 * it returns the inode of its network namespace, which the test compares with the inodes of
 * the namespaces it made. The nap makes a job last long enough to break something under it. */
#include <sys/stat.h>

#include <chrono>
#include <thread>
#include <vector>

#include "dpool/worker.hpp"

namespace {

/* {x * x, the inode of the network namespace it ran in}, after `millis`. */
std::vector<long long> where_square(long long x, int millis) {
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  struct stat st {};
  const long long netns =
      ::stat("/proc/self/ns/net", &st) == 0 ? static_cast<long long>(st.st_ino) : -1;
  return {x * x, netns};
}
DPOOL_TASK(where_square);

}  // namespace
