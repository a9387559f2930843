/* The consumer's plugin. It links dpool::worker, so it has its own copy of the registry code;
 * host_of tells the test which program serves it, has_task which registry it sees. */
#include <dpool/worker.hpp>

#include <unistd.h>

#include <string>

namespace {

std::string reverse(std::string s) { return {s.rbegin(), s.rend()}; }
DPOOL_TASK(reverse);

/* The executable running this plugin's tasks (the worker's task processes share its image). */
std::string host_of() {
  char path[4096];
  const auto n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  std::string exe = n > 0 ? std::string(path, static_cast<std::size_t>(n)) : std::string();
  return exe.substr(exe.find_last_of('/') + 1);
}
DPOOL_TASK(host_of);

bool has_task(std::string name) { return dpool::find_task(name) != nullptr; }
DPOOL_TASK(has_task);

}  // namespace
