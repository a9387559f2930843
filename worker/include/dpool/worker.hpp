/* Running a worker host: the library behind dpool-worker, for worker programs of your own.
 *
 * A worker host is a supervisor process holding the one connection to the broker, and
 * `processes` child processes that run tasks. The supervisor never runs user code, so nothing
 * a task does (crash, hang, leak) can take the host's connection down: a child that dies is
 * replaced, and the task it was running is reported lost to the broker at once, which retries
 * it elsewhere up to the attempt limit.
 *
 * A program of your own that links dpool::worker and registers tasks with DPOOL_TASK becomes a
 * worker with:   int main(int argc, char** argv) { return dpool::worker_main(argc, argv); }
 */
#pragma once

#include <functional>

#include "dpool/config.hpp"
#include "dpool/task.hpp"

namespace dpool {

struct WorkerHooks {
  std::function<void()> initializer;  // runs once in each child before its first task
};

/* Runs a worker host until it is stopped or drained. The first SIGTERM or SIGINT drains it
 * (no new tasks, the waiting ones handed back to the broker, the running ones given
 * `config.drain_timeout` to finish), a second one stops it at once. Loads the plugins named in
 * `config`. Returns the process exit code; throws dpool::Error(kUsage) for a bad plugin. */
int run_worker(const WorkerConfig& config, const WorkerHooks& hooks = {});

/* Asks a running run_worker() in this process to return now; the broker runs the tasks it
 * held elsewhere, uncharged. Async-signal-safe. */
void stop_worker() noexcept;

/* Asks a running run_worker() in this process to drain, as the first SIGTERM does, and return
 * once done. Async-signal-safe. */
void drain_worker() noexcept;

/* dpool-worker's whole command line: parses argv, loads the configuration (flag > environment
 * > file > default), runs the worker. Errors end in one line on stderr and exit code 2. */
int worker_main(int argc, char** argv);

}  // namespace dpool
