/* Test support: real processes (broker, worker hosts) started and always stopped, and waiting
 * on conditions with a deadline instead of sleeping.
 *
 * A Process is a move-only owner of a child process: its destructor kills it (SIGKILL) and
 * reaps it, so no test leaves a broker or worker behind, whatever assertion fails. Its stderr
 * goes to a file that the test can search (the broker's "listening on" line gives its port).
 */
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace dpool::test {

using namespace std::chrono_literals;

/* Starts `argv` (argv[0] is a path) with these descriptors as stdin, stdout and stderr and
 * `env` as its environment (each "NAME=value"); throws std::runtime_error if it cannot. */
pid_t spawn(const std::vector<std::string>& argv, int in, int out, int err,
            const std::vector<std::string>& env);

/* This process's environment as "NAME=value" strings. */
std::vector<std::string> current_environment();

/* Polls `condition` every few milliseconds until it holds or `timeout` passes. */
bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

class Process {
 public:
  Process() = default;
  /* Starts `argv` (argv[0] is a path) with stderr (and stdout) to a fresh log file. */
  explicit Process(std::vector<std::string> argv);
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  ~Process();

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] bool running();
  void signal(int sig) const;
  /* Waits for the exit; returns the wait status, or nullopt on timeout. */
  std::optional<int> wait(std::chrono::milliseconds timeout);
  /* SIGKILL and reap. */
  void kill();
  [[nodiscard]] std::string log() const;
  [[nodiscard]] const std::string& log_path() const { return log_path_; }

 private:
  void remove_log() noexcept;
  pid_t pid_ = -1;
  std::string log_path_;
  std::optional<int> status_;
};

/* A dpool-broker on 127.0.0.1 (a free port unless `endpoint` is given), heartbeat `hb`. */
struct BrokerProcess {
  Process process;
  std::string endpoint;
  static BrokerProcess start(std::string endpoint = "tcp://127.0.0.1:0",
                             std::chrono::milliseconds hb = 200ms,
                             std::vector<std::string> extra = {});
};

/* A worker host running the test worker program (tests/test_worker.cpp). */
Process start_worker(const std::string& endpoint, int processes,
                     std::chrono::milliseconds hb = 200ms, std::vector<std::string> extra = {});

/* The pids of the children of `parent` (from /proc). */
std::vector<pid_t> children_of(pid_t parent);

/* The processes of a worker host that run tasks: the children of its zygote (the host's one
 * child process, which forks them). */
std::vector<pid_t> task_processes(pid_t worker_host);

/* A fresh empty directory under the system temp dir, removed by the destructor. */
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }
  /* Writes `text` to the file `name` in this directory and returns its path. */
  [[nodiscard]] std::string write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
};

}  // namespace dpool::test
