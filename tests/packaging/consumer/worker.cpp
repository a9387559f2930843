/* The consumer's own worker program: a task of its own plus dpool's whole command line. */
#include <dpool/worker.hpp>

namespace {

long long triple(long long x) { return 3 * x; }
DPOOL_TASK(triple);

}  // namespace

int main(int argc, char** argv) { return dpool::worker_main(argc, argv); }
