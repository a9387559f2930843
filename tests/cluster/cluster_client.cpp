/* The caller of the cluster tests: a program that runs in the client namespace, submits a job
 * of `where_square` tasks through the low-level dpool::Client and prints one line per
 * completion, as it happens:
 *
 *     result INDEX STATUS SQUARE NETNS PID ATTEMPTS
 *
 * Why a program of its own rather than `dpool map` or a Pool: the tests must count how often
 * the caller was handed each result (exactly once is the guarantee), and only a completion
 * callback sees a duplicate; a Pool's vector of results would hide one. Printing as results
 * arrive lets the test follow the job's progress from outside and break something mid-job.
 *
 * Usage: dpool-cluster-client BROKER TASKS MILLIS [HEARTBEAT_MS] [LIMIT_S]
 * Exits 0 once every task has completed (whatever its status), 1 past LIMIT_S, 2 on bad usage.
 */
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "dpool/client.hpp"

namespace {

struct Args {
  std::string broker;
  long tasks = 0;
  int millis = 0;
  long heartbeat_ms = 200;
  long limit_s = 120;
};

/* A completion's line; a failed task shows its error type where the square would be. */
std::string line_for(long index, const dpool::TaskResult& r) {
  std::string square = r.meta.error_type.empty() ? "-" : r.meta.error_type, netns = "-";
  if (r.ok()) {
    const auto value = r.as<std::vector<long long>>("where_square");
    if (value.size() == 2) {
      square = std::to_string(value[0]);
      netns = std::to_string(value[1]);
    }
  }
  return "result " + std::to_string(index) + " " + std::string(dpool::to_string(r.meta.status)) +
         " " + square + " " + netns + " " + std::to_string(r.meta.pid) + " " +
         std::to_string(r.meta.attempts) + "\n";
}

class Job {
 public:
  explicit Job(long tasks) : remaining_(tasks) {}

  dpool::Completion completion(long index) {
    return [this, index](dpool::TaskResult&& r) {
      const auto line = line_for(index, r);
      std::lock_guard lock(mutex_);
      std::fputs(line.c_str(), stdout);
      std::fflush(stdout);  // the test follows the job's progress in this output
      if (--remaining_ == 0) finished_.notify_all();
    };
  }

  /* True once every task has completed; false if `limit` passed first. */
  bool wait(std::chrono::seconds limit) {
    std::unique_lock lock(mutex_);
    return finished_.wait_for(lock, limit, [this] { return remaining_ <= 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable finished_;
  long remaining_;
};

int run(const Args& args) {
  dpool::ClientConfig config;
  config.broker = args.broker;
  config.heartbeat.interval = std::chrono::milliseconds(args.heartbeat_ms);
  config.connect_timeout = std::chrono::seconds(args.limit_s);  // a restarting broker is not gone
  config.broker_timeout = std::chrono::seconds(args.limit_s);
  Job job(args.tasks);
  dpool::Client client(config);
  for (long i = 0; i < args.tasks; ++i) {
    client.submit("where_square", dpool::pack_args(static_cast<long long>(i), args.millis),
                  job.completion(i));
  }
  if (job.wait(std::chrono::seconds(args.limit_s))) return 0;
  std::fprintf(stderr, "dpool-cluster-client: the job did not complete within %ld s\n",
               args.limit_s);
  std::fflush(stderr);
  return 1;  // ~Client completes the rest as cancelled, visible in the output
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 6) {
    std::fprintf(stderr, "usage: %s BROKER TASKS MILLIS [HEARTBEAT_MS] [LIMIT_S]\n", argv[0]);
    return 2;
  }
  try {
    Args args{argv[1], std::stol(argv[2]), std::stoi(argv[3])};
    if (argc > 4) args.heartbeat_ms = std::stol(argv[4]);
    if (argc > 5) args.limit_s = std::stol(argv[5]);
    return run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool-cluster-client: %s\n", e.what());
    return 2;
  }
}
