/* run_worker(), stop_worker(), drain_worker() and worker_main(): the worker host's entry
 * points.
 *
 * Signals reach the one Supervisor of this process through a global pointer; its handlers
 * only write to an eventfd (async-signal-safe), the loop does the rest. The first SIGTERM or
 * SIGINT drains the host, a second one stops it at once.
 *
 * worker_main() parses flags into optionals and applies them over the file and the
 * environment (flag > environment > file > default), so a flag not given never hides the
 * file's value; ranges and duration syntax come from config.hpp, the same as the YAML keys'.
 */
#include <dlfcn.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <optional>

#include <CLI/CLI.hpp>

#include "dpool/cli_main.hpp"

#include "builtins.hpp"
#include "dpool/curve.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"
#include "dpool/util.hpp"
#include "dpool/worker.hpp"
#include "supervisor.hpp"

namespace dpool {
namespace {

std::atomic<detail::Supervisor*> g_supervisor{nullptr};

extern "C" void on_stop_signal(int) {
  if (auto* s = g_supervisor.load()) s->on_signal();
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
  (void)load_curve(config.curve);  // a bad key fails here, before any process is started
  for (const auto& p : config.plugins) load_plugin(p);
  detail::register_builtins(config.allow_exec);
  // Before the supervisor forks its zygote, so that the children start with it too. Not under
  // max_memory_per_child: freed memory kept for the next payload would count as the child's.
  if (config.max_memory_per_child == 0) keep_payload_memory();
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

void drain_worker() noexcept {
  if (auto* s = g_supervisor.load()) s->drain();
}

namespace {

struct Flags {
  std::string config_file;
  bool print_config = false;
  bool allow_exec = false;
  std::optional<std::string> broker, log_level, curve_key, broker_key;
  std::optional<std::uint32_t> processes, prefetch, max_tasks, liveness;
  std::optional<long long> heartbeat_ms, drain_timeout_ms;
  std::optional<std::uint64_t> max_memory;
  std::vector<std::string> plugins, tags;
};

void add_flags(CLI::App& app, Flags& f) {
  app.add_option("--config", f.config_file, "YAML configuration file (default: $DPOOL_CONFIG)");
  app.add_flag("--print-config", f.print_config,
               "print the effective configuration as YAML and exit");
  app.add_option("--broker", f.broker,
                 "broker address (default: $DPOOL_BROKER, the file, tcp://127.0.0.1:5555)");
  app.add_option("--broker-key", f.broker_key,
                 "CURVE: the broker's public key, its .pub file or Z85 (default: "
                 "$DPOOL_BROKER_KEY, the file)");
  app.add_option("--curve-key", f.curve_key,
                 "CURVE: this host's secret key, PREFIX.key from dpool keygen --out PREFIX "
                 "(default: $DPOOL_CURVE_KEY, the file)");
  app.add_option("--processes,-p", f.processes, "worker processes (default 0: one per core)")
      ->transform(count_validator(limits::kProcesses));
  app.add_option("--prefetch", f.prefetch,
                 "tasks queued per process beyond the one it runs (default 2)")
      ->transform(count_validator(limits::kPrefetch));
  app.add_flag("--allow-exec", f.allow_exec, "offer the exec task (runs shell commands)");
  app.add_option("--max-tasks-per-child", f.max_tasks,
                 "replace a process after this many tasks (default 0: never)")
      ->transform(count_validator(limits::kMaxTasksPerChild));
  app.add_option("--max-memory-per-child", f.max_memory,
                 "replace a process once its resident memory passes this, after its running task; "
                 "like 512MiB, 2G, 300MB or bytes (default 0: no limit)")
      ->transform(CLI::Validator(size_flag(limits::kMemoryPerChild), "SIZE"));
  app.add_option(
         "--drain-timeout", f.drain_timeout_ms,
         "first SIGTERM/SIGINT: hand back the waiting tasks and give the running ones this long, "
         "like 30s or 5m; 0: stop at once; a second signal stops at once (default 30s)")
      ->transform(CLI::Validator(duration_flag(limits::kDrainTimeoutMs), "DURATION"));
  app.add_option("--plugin", f.plugins,
                 "shared library with DPOOL_TASK functions to load (repeatable)")
      ->check(CLI::ExistingFile);
  app.add_option("--tag", f.tags, "KEY=VALUE tag offered to the broker (repeatable)");
  app.add_option("--heartbeat-interval", f.heartbeat_ms,
                 "heartbeat interval, like 500ms or 1s; a bare number is ms (default 1s)")
      ->transform(CLI::Validator(duration_flag(limits::kHeartbeatMs, true), "DURATION"));
  app.add_option("--heartbeat-liveness", f.liveness,
                 "heartbeats missed before the broker is dead (default 3)")
      ->transform(count_validator(limits::kLiveness));
  app.add_option("--log-level", f.log_level,
                 "trace, debug, info, warn, error or off (default info)")
      ->check(CLI::IsMember(log_levels()));
}

/* --plugin and --tag add to the file's plugins and tags; a tag named in both takes the flag's
 * value. */
void add_lists(const Flags& f, WorkerConfig& config) {
  for (const auto& p : f.plugins) {
    if (std::find(config.plugins.begin(), config.plugins.end(), p) == config.plugins.end())
      config.plugins.push_back(p);
  }
  for (const auto& t : f.tags) {
    const auto eq = t.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error(Errc::kUsage, "--tag wants KEY=VALUE, got '" + t + "'");
    config.tags[t.substr(0, eq)] = t.substr(eq + 1);
  }
}

/* Defaults, then the file, then $DPOOL_BROKER, $DPOOL_BROKER_KEY and $DPOOL_CURVE_KEY, then the
 * flags. */
WorkerConfig effective_config(const Flags& f) {
  WorkerConfig config;
  if (auto path = config_file_path(f.config_file)) load_config_file(*path, config);
  if (auto env = broker_from_env()) config.broker = *env;
  apply_curve_env(config.curve);
  if (f.broker) config.broker = *f.broker;
  if (f.broker_key) config.curve.broker_key = *f.broker_key;
  if (f.curve_key) config.curve.secret_key = *f.curve_key;
  if (f.processes) config.processes = *f.processes;
  if (f.prefetch) config.prefetch = *f.prefetch;
  if (f.max_tasks) config.max_tasks_per_child = *f.max_tasks;
  if (f.max_memory) config.max_memory_per_child = *f.max_memory;
  if (f.drain_timeout_ms) config.drain_timeout = std::chrono::milliseconds(*f.drain_timeout_ms);
  if (f.allow_exec) config.allow_exec = true;
  if (f.heartbeat_ms) config.heartbeat.interval = std::chrono::milliseconds(*f.heartbeat_ms);
  if (f.liveness) config.heartbeat.liveness = *f.liveness;
  if (f.log_level) config.log_level = *f.log_level;
  add_lists(f, config);
  return config;
}

}  // namespace

int worker_main(int argc, char** argv) {
  CLI::App app{"dpool-worker: runs dpool tasks for a broker"};
  Flags flags;
  add_flags(app, flags);
  return run_main("dpool-worker", app, argc, argv, [&] {
    const auto config = effective_config(flags);
    if (flags.print_config) {
      std::fputs(to_yaml(config).c_str(), stdout);
      return std::fflush(stdout) == 0 ? 0 : 3;
    }
    log::init("worker", config.log_level);
    return run_worker(config);
  });
}

}  // namespace dpool
