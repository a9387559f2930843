/* The embedded cluster (see embedded.hpp). */
#include "embedded.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "dpool/broker.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"
#include "dpool/util.hpp"
#include "dpool/worker.hpp"

namespace dpool::detail {
namespace {

[[noreturn]] void run_host(const WorkerConfig& config, const std::function<void()>& initializer,
                           pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the program that embeds the cluster
  if (::getppid() != parent) std::_Exit(0);
  int rc = 3;
  try {
    log::init("worker", config.log_level);
    rc = run_worker(config, WorkerHooks{initializer});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool: the embedded worker host failed: %s\n", e.what());
  }
  std::_Exit(rc);  // not exit(): the program's atexit handlers and destructors are not ours
}

}  // namespace

EmbeddedCluster::EmbeddedCluster(const EmbeddedOptions& options) {
  char id[40];
  std::snprintf(id, sizeof id, "%d-%016" PRIx64, static_cast<int>(::getpid()), random_u64());
  endpoint_ = std::string("ipc://@dpool-embedded-") + id;
  processes_ =
      options.processes ? options.processes : std::max(1u, std::thread::hardware_concurrency());
  WorkerConfig worker;
  worker.broker = endpoint_;
  worker.processes = static_cast<std::uint32_t>(processes_);
  worker.max_tasks_per_child = options.max_tasks_per_child;
  worker.allow_exec = true;
  worker.log_level = options.log_level;
  // The pool waits for its tasks before it stops the cluster (or cancels them: terminate), so
  // a drain would only delay the stop of what is left.
  worker.drain_timeout = std::chrono::milliseconds(0);
  std::fflush(nullptr);  // what stdio has buffered must not be written twice, once per process
  const pid_t parent = ::getpid();
  host_ = ::fork();
  if (host_ < 0) throw Error(Errc::kInternal, "cannot fork the embedded worker host");
  if (host_ == 0) run_host(worker, options.initializer, parent);
  try {
    BrokerConfig config;
    config.bind = endpoint_;
    config.log_level = options.log_level;
    broker_ = std::make_unique<Broker>(config);
    thread_ = std::thread([b = broker_.get()] { b->run(); });
  } catch (...) {
    stop_host();
    throw;
  }
}

EmbeddedCluster::~EmbeddedCluster() {
  stop_host();
  if (broker_) broker_->stop();
  if (thread_.joinable()) thread_.join();
}

void EmbeddedCluster::stop_host() {
  if (host_ <= 0) return;
  ::kill(host_, SIGTERM);
  int status = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (::waitpid(host_, &status, WNOHANG) == 0) {
    if (Clock::now() >= deadline) {
      ::kill(host_, SIGKILL);
      ::waitpid(host_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  host_ = -1;
}

}  // namespace dpool::detail
