/* A dpool cluster across network namespaces, for the cluster tests: a broker host, worker
 * hosts w1..wN and a client host on one bridge (netns.hpp), each running the real binaries
 * (`ip netns exec HOST dpool-broker ...`), talking real TCP over the test subnet.
 *
 * Why it is built this way:
 *   - A Cluster owns its Topology and every process it starts, declared so that the processes
 *     die before the namespaces are deleted; a failed assertion anywhere unwinds all of it.
 *   - `ip netns exec` execs the command in place, so the pid we hold is the broker's or the
 *     worker supervisor's own: signals (SIGSTOP, SIGKILL) reach the real process, and the
 *     supervisor's children are found under it in /proc.
 *   - Heartbeats are 200 ms everywhere (expiry 600 ms), so a lost host is noticed in well under
 *     a second and the whole suite stays fast; every wait still has a generous deadline, for
 *     the sanitizer builds.
 *   - Waits watch the broker's log ("pid N registered", "lost (no heartbeat"), which costs
 *     nothing; `dpool status --json`, run from the client host, is the final word on what the
 *     broker believes.
 */
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/netns.hpp"
#include "support/process.hpp"

namespace dpool::cluster {

using namespace std::chrono_literals;

inline constexpr std::chrono::milliseconds kHeartbeat{200};

/* How much longer waits may take in a sanitized build. */
#ifdef DPOOL_SANITIZED
inline constexpr int kSlowdown = 4;
#else
inline constexpr int kSlowdown = 1;
#endif

/* One completion as the client program printed it (cluster_client.cpp). */
struct Delivery {
  long index = -1;
  std::string status;
  long long square = 0;
  unsigned long long netns = 0;
  long pid = 0;
  int attempts = 0;
};

/* A job run by the client program in the client namespace. */
class Job {
 public:
  explicit Job(test::Process process) : process_(std::move(process)) {}
  /* Completions printed so far. */
  [[nodiscard]] std::size_t delivered() const;
  /* Waits for the program to end; true if it ended with exit code 0 within `limit`. */
  bool finish(std::chrono::milliseconds limit);
  [[nodiscard]] std::vector<Delivery> deliveries() const;
  /* The program's whole output (its deliveries and anything it logged). */
  [[nodiscard]] std::string output() const { return process_.log(); }

 private:
  test::Process process_;
};

class Cluster {
 public:
  /* The hosts "broker", "w1".."w<workers>" and "client". Throws Unavailable where namespaces
   * cannot be made. */
  explicit Cluster(int workers = 3);

  /* Starts dpool-broker on the broker host and waits until it listens. `extra` flags are
   * added (like --data-dir). Throws std::runtime_error if it does not come up. */
  void start_broker(std::vector<std::string> extra = {});
  /* SIGKILL, as a crash or a power cut would. */
  void kill_broker();
  /* Starts dpool-worker with 2 processes and the cluster plugin on every worker host. */
  void start_workers();
  /* True once the current broker has logged `worker`'s registration `times` times. */
  bool wait_registered(const std::string& worker, int times, std::chrono::milliseconds limit);
  /* True once the broker has logged `worker` as lost for lack of heartbeats. */
  bool wait_lost(const std::string& worker, std::chrono::milliseconds limit);

  /* The client program with `tasks` tasks of `millis` each, from the client host. */
  Job start_job(long tasks, int millis);
  /* `dpool ARGS --broker ADDR` from the client host (bounded by `limit`). */
  CommandResult cli(std::vector<std::string> args, std::chrono::milliseconds limit = 30s);
  /* `dpool status --json` as seen from the client host; throws if it fails. */
  nlohmann::json status();

  /* SIGSTOP / SIGCONT to a worker host: its supervisor and every process under it. */
  void freeze(const std::string& worker);
  void thaw(const std::string& worker);

  [[nodiscard]] Topology& topology() { return *topology_; }
  [[nodiscard]] const std::vector<std::string>& workers() const { return worker_names_; }
  [[nodiscard]] std::string endpoint() const;
  [[nodiscard]] std::string broker_log() const { return broker_ ? broker_->log() : ""; }
  [[nodiscard]] pid_t worker_pid(const std::string& worker) const;
  /* The worker host whose namespace has this inode ("" for none). */
  [[nodiscard]] std::string host_of(unsigned long long netns) const;
  /* The broker's log and every worker's, for failure messages. */
  [[nodiscard]] std::string logs() const;

 private:
  [[nodiscard]] std::vector<std::string> in(const std::string& host,
                                            std::vector<std::string> argv) const;
  [[nodiscard]] std::size_t worker_index(const std::string& worker) const;
  [[nodiscard]] std::size_t broker_log_count(const std::string& needle) const;

  std::unique_ptr<Topology> topology_;  // declared first: destroyed after every process
  std::vector<std::string> worker_names_;
  std::vector<std::string> broker_flags_;
  std::optional<test::Process> broker_;
  std::vector<test::Process> workers_;
};

/* Checks one job's deliveries: every index 0..tasks-1 delivered exactly once, ok, with the
 * right square, from one of the cluster's worker hosts. Returns the number of tasks each
 * host ran (by host name), for the test to check the spread. Records gtest failures. */
std::map<std::string, std::size_t> check_deliveries(const Cluster& cluster,
                                                    const std::vector<Delivery>& got, long tasks);

}  // namespace dpool::cluster
