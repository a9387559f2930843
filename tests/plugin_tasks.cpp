/* The plugin tests/test_plugins.cpp loads into dpool-worker. Unlike examples/math_tasks.cpp,
 * which only includes the headers, it links the static worker library and so carries its own
 * copy of the registry code: its DPOOL_TASKs must still land in the worker's one registry
 * (see worker/src/registry.cpp). */
#include <string>
#include <vector>

#include "dpool/worker.hpp"

namespace {

long long cube(long long x) { return x * x * x; }
DPOOL_TASK(cube);

/* The registry as this plugin sees it: the host's built-ins and other plugins' tasks too. */
std::vector<std::string> plugin_task_names() { return dpool::task_names(); }
DPOOL_TASK(plugin_task_names);

}  // namespace
