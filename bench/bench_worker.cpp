/* dpool-bench-worker: dpool's worker host with the benchmark's task functions.
 *
 * A worker program of its own (DPOOL_TASK + dpool::worker_main) rather than a plugin, because
 * that is the third way users give workers their functions and it keeps dlopen out of the
 * measurement. Flags are dpool-worker's (--broker, --processes, --log-level, ...).
 */
#include <cstdint>
#include <vector>

#include "dpool/worker.hpp"
#include "tasks.hpp"

namespace {

std::int64_t square(std::int64_t x) { return bench::square(x); }
DPOOL_TASK(square);

std::int64_t spin_10ms(std::int64_t x) { return bench::spin_10ms(x); }
DPOOL_TASK(spin_10ms);

/* std::vector<char> travels as msgpack bin, the shape a user's bytes take. */
std::vector<char> echo_bytes(std::vector<char> bytes) { return bytes; }
DPOOL_TASK(echo_bytes);

}  // namespace

int main(int argc, char** argv) { return dpool::worker_main(argc, argv); }
