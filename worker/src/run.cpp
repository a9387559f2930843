/* run_worker(), stop_worker() and worker_main(): the worker host's entry points.
 *
 * Signals reach the one Supervisor of this process through a global pointer; its handlers
 * only write to an eventfd (async-signal-safe), the loop does the rest.
 */
#include <dlfcn.h>

#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "builtins.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"
#include "dpool/worker.hpp"
#include "supervisor.hpp"

namespace dpool {
namespace {

std::atomic<detail::Supervisor*> g_supervisor{nullptr};

extern "C" void on_stop_signal(int) {
  if (auto* s = g_supervisor.load()) s->stop();
}

void load_plugin(const std::string& path) {
  // RTLD_GLOBAL: a plugin's DPOOL_TASK registers into this process's one registry.
  if (!::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    const char* why = ::dlerror();
    throw Error(Errc::kUsage, "cannot load plugin " + path + ": " + (why ? why : "unknown error"));
  }
}

}  // namespace

int run_worker(const WorkerConfig& config, const WorkerHooks& hooks) {
  for (const auto& p : config.plugins) load_plugin(p);
  detail::register_builtins(config.allow_exec);
  detail::Supervisor supervisor(config, hooks);
  g_supervisor.store(&supervisor);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  const int rc = supervisor.run();
  g_supervisor.store(nullptr);
  return rc;
}

void stop_worker() noexcept {
  if (auto* s = g_supervisor.load()) s->stop();
}

int worker_main(int argc, char** argv) {
  CLI::App app{"dpool-worker: runs dpool tasks for a broker"};
  std::string broker, config_file, log_level;
  std::optional<std::uint32_t> processes, max_tasks, prefetch;
  std::vector<std::string> plugins, tags;
  bool allow_exec = false;
  long heartbeat_ms = 0;
  app.add_option("--broker", broker, "broker address (default: $DPOOL_BROKER, then tcp://127.0.0.1:5555)");
  app.add_option("--processes,-p", processes, "worker processes (default: one per core)")
      ->check(CLI::Range(1u, 4096u));
  app.add_option("--plugin", plugins, "shared library with DPOOL_TASK functions to load")
      ->check(CLI::ExistingFile);
  app.add_flag("--allow-exec", allow_exec, "offer the exec task (runs shell commands)");
  app.add_option("--max-tasks-per-child", max_tasks, "replace a process after this many tasks");
  app.add_option("--prefetch", prefetch, "tasks queued per process beyond the one it runs")
      ->check(CLI::Range(0u, 10000u));
  app.add_option("--tag", tags, "KEY=VALUE tag offered to the broker");
  app.add_option("--config", config_file, "YAML configuration file (default: $DPOOL_CONFIG)");
  app.add_option("--heartbeat-interval", heartbeat_ms, "heartbeat interval in milliseconds")
      ->check(CLI::Range(10, 600000));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off");
  CLI11_PARSE(app, argc, argv);

  try {
    WorkerConfig config;
    if (auto path = config_file_path(config_file)) load_config_file(*path, config);
    if (auto env = broker_from_env()) config.broker = *env;
    if (!broker.empty()) config.broker = broker;
    if (processes) config.processes = *processes;
    if (prefetch) config.prefetch = *prefetch;
    if (max_tasks) config.max_tasks_per_child = *max_tasks;
    if (allow_exec) config.allow_exec = true;
    if (heartbeat_ms) config.heartbeat.interval = std::chrono::milliseconds(heartbeat_ms);
    if (!log_level.empty()) config.log_level = log_level;
    for (auto& p : plugins) config.plugins.push_back(p);
    for (const auto& t : tags) {
      const auto eq = t.find('=');
      if (eq == std::string::npos || eq == 0) throw Error(Errc::kUsage, "--tag wants KEY=VALUE, got '" + t + "'");
      config.tags[t.substr(0, eq)] = t.substr(eq + 1);
    }
    log::init("worker", config.log_level);
    return run_worker(config);
  } catch (const Error& e) {
    std::fprintf(stderr, "dpool-worker: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool-worker: internal error: %s\n", e.what());
    return 3;
  }
}

}  // namespace dpool
