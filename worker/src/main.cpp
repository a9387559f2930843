/* dpool-worker: the stock worker host (built-ins plus --plugin libraries). */
#include "dpool/worker.hpp"

int main(int argc, char** argv) { return dpool::worker_main(argc, argv); }
