/* The embedded cluster behind dpool::Pool and `dpool map --local`: a broker on a thread of
 * this process and a worker host forked from it (exec allowed: it runs as this user, on this
 * host), joined by an abstract-namespace ipc endpoint that nothing outside this host reaches.
 *
 * Construct it before the process starts threads of its own: fork() copies only the calling
 * thread. The worker host dies with this process (PR_SET_PDEATHSIG); the destructor stops it
 * (SIGTERM, then SIGKILL after 5 s) and then the broker. */
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace dpool {
class Broker;
}

namespace dpool::detail {

struct EmbeddedOptions {
  std::size_t processes = 0;  // 0: one per core
  std::function<void()> initializer;
  std::uint32_t max_tasks_per_child = 0;
  std::string log_level = "warn";  // of the broker and the worker host
};

class EmbeddedCluster {
 public:
  explicit EmbeddedCluster(const EmbeddedOptions& options);
  ~EmbeddedCluster();
  EmbeddedCluster(const EmbeddedCluster&) = delete;
  EmbeddedCluster& operator=(const EmbeddedCluster&) = delete;

  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }
  [[nodiscard]] std::size_t processes() const { return processes_; }

 private:
  void stop_host();

  std::string endpoint_;
  pid_t host_ = -1;
  std::unique_ptr<Broker> broker_;
  std::thread thread_;
  std::size_t processes_ = 1;
};

}  // namespace dpool::detail
