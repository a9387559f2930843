/* dpool-broker: parses flags, loads the configuration (flag > environment > file > default),
 * and runs the broker until SIGINT or SIGTERM, or prints the configuration (--print-config).
 * Every error a person can cause ends in one line on stderr and exit code 2.
 *
 * Flags are parsed into optionals and applied over the loaded file, so that a flag that was
 * not given never hides the file's value; their ranges and duration syntax come from
 * config.hpp, the same as the YAML keys'.
 *
 * It also takes all the open files the hard limit allows (raise_open_file_limit): every
 * connected worker host and client costs the broker one descriptor. */
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <optional>

#include <CLI/CLI.hpp>

#include "dpool/cli_main.hpp"

#include "dpool/broker.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"
#include "dpool/util.hpp"

namespace {

dpool::Broker* g_broker = nullptr;

extern "C" void on_signal(int) {
  if (g_broker) g_broker->stop();
}

struct Flags {
  std::string config_file;
  bool print_config = false;
  std::optional<std::string> bind, log_level, data_dir;
  bool insecure = false;
  std::optional<long long> heartbeat_ms, client_timeout_ms, job_ttl_ms, aging_ms, result_delay_ms;
  std::optional<std::uint32_t> liveness, max_attempts, max_tasks_per_client, max_jobs;
  std::optional<std::uint64_t> max_bytes_per_client, max_message_size;
  std::optional<std::string> curve_key;
  std::vector<std::string> client_keys, worker_keys;
};

void add_flags(CLI::App& app, Flags& f) {
  namespace limits = dpool::limits;
  app.add_option("--config", f.config_file, "YAML configuration file (default: $DPOOL_CONFIG)");
  app.add_flag("--print-config", f.print_config,
               "print the effective configuration as YAML and exit");
  app.add_option("--bind", f.bind, "address to listen on (default tcp://127.0.0.1:5555)");
  app.add_flag("--insecure", f.insecure, "allow listening on non-loopback addresses without CURVE");
  app.add_option("--curve-key", f.curve_key,
                 "CURVE: the broker's secret key (PREFIX.key from dpool keygen --out PREFIX)");
  app.add_option("--client-key", f.client_keys,
                 "CURVE: a client public key, .pub file or folder of them (repeatable)");
  app.add_option("--worker-key", f.worker_keys,
                 "CURVE: a worker public key, .pub file or folder of them (repeatable)");
  app.add_option("--heartbeat-interval", f.heartbeat_ms,
                 "heartbeat interval, like 500ms or 1s; a bare number is ms (default 1s)")
      ->transform(CLI::Validator(dpool::duration_flag(limits::kHeartbeatMs, true), "DURATION"));
  app.add_option("--heartbeat-liveness", f.liveness,
                 "heartbeats missed before a peer is dead (default 3)")
      ->transform(count_validator(limits::kLiveness));
  app.add_option("--max-attempts", f.max_attempts,
                 "worker deaths a task may cause before it fails (default 3)")
      ->transform(count_validator(limits::kMaxAttempts));
  app.add_option("--client-timeout", f.client_timeout_ms,
                 "drop a silent client's tasks after this (default 60s)")
      ->transform(CLI::Validator(dpool::duration_flag(limits::kTimeoutMs), "DURATION"));
  app.add_option("--job-ttl", f.job_ttl_ms,
                 "keep a finished detached job's results this long (default 24h)")
      ->transform(CLI::Validator(dpool::duration_flag(limits::kJobTtlMs), "DURATION"));
  app.add_option(
         "--priority-aging", f.aging_ms,
         "a waiting priority level counts one higher per this much time unserved (default 10s)")
      ->transform(CLI::Validator(dpool::duration_flag(limits::kAgingMs), "DURATION"));
  app.add_option("--result-delay", f.result_delay_ms,
                 "longest a result waits for others to share its message, 0 to 1m (default 50ms)")
      ->transform(CLI::Validator(dpool::duration_flag(limits::kResultDelayMs), "DURATION"));
  app.add_option("--max-tasks-per-client", f.max_tasks_per_client,
                 "tasks one client may have held, results not yet ACKed included (default 1000000)")
      ->transform(count_validator(limits::kTasksPerClient));
  app.add_option("--max-bytes-per-client", f.max_bytes_per_client,
                 "payload bytes of those, like 512MiB or 2GiB (default 1GiB)")
      ->transform(CLI::Validator(dpool::size_flag(limits::kBytesPerClient), "SIZE"));
  app.add_option("--max-jobs", f.max_jobs,
                 "detached jobs held at once, running or keeping results (default 10000)")
      ->transform(count_validator(limits::kJobs));
  app.add_option("--max-message-size", f.max_message_size,
                 "largest frame a peer may send; a larger one disconnects it (default 1GiB)")
      ->transform(CLI::Validator(dpool::size_flag(limits::kMessageSize), "SIZE"));
  app.add_option("--data-dir", f.data_dir,
                 "journal accepted tasks and kept results in DIR, so that they survive a restart")
      ->type_name("DIR");
  app.add_option("--log-level", f.log_level,
                 "trace, debug, info, warn, error or off (default info)")
      ->check(CLI::IsMember(dpool::log_levels()));
}

/* Defaults, then the file, then the flags (the broker reads no environment but DPOOL_CONFIG). */
dpool::BrokerConfig effective_config(const Flags& f) {
  using std::chrono::milliseconds;
  dpool::BrokerConfig config;
  if (auto path = dpool::config_file_path(f.config_file)) dpool::load_config_file(*path, config);
  if (f.bind) config.bind = *f.bind;
  if (f.insecure) config.insecure = true;
  if (f.heartbeat_ms) config.heartbeat.interval = milliseconds(*f.heartbeat_ms);
  if (f.liveness) config.heartbeat.liveness = *f.liveness;
  if (f.max_attempts) config.max_attempts = *f.max_attempts;
  if (f.client_timeout_ms) config.client_timeout = milliseconds(*f.client_timeout_ms);
  if (f.job_ttl_ms) config.job_ttl = milliseconds(*f.job_ttl_ms);
  if (f.aging_ms) config.priority_aging = milliseconds(*f.aging_ms);
  if (f.result_delay_ms) config.result_delay = milliseconds(*f.result_delay_ms);
  if (f.data_dir) config.data_dir = *f.data_dir;
  if (f.max_tasks_per_client) config.max_tasks_per_client = *f.max_tasks_per_client;
  if (f.max_jobs) config.max_jobs = *f.max_jobs;
  if (f.max_bytes_per_client) config.max_bytes_per_client = *f.max_bytes_per_client;
  if (f.max_message_size) config.max_message_size = *f.max_message_size;
  if (f.log_level) config.log_level = *f.log_level;
  // Allowlist flags add to the file's lists, as --plugin does for a worker's plugins.
  if (f.curve_key) config.curve.secret_key = *f.curve_key;
  for (const auto& k : f.client_keys) config.curve.client_keys.push_back(k);
  for (const auto& k : f.worker_keys) config.curve.worker_keys.push_back(k);
  return config;
}

/* Each peer's TCP connection is a file descriptor, and many systems start processes with a
 * soft limit of 1024. Past it ZeroMQ cannot accept the next connection: the peer waits
 * forever, nothing is logged, and ZeroMQ's I/O thread retries the accept in a busy loop (seen
 * with 1,000 workers and 50 clients, bench/README.md "Load test"). The hard limit is what the
 * administrator allows, and taking all of it costs nothing: ZeroMQ polls with epoll, not
 * select. A limit that is still too low is said once in the log, with the peers it allows. */
void raise_open_file_limit() {
  constexpr rlim_t kEnough = 4096;             // about 4,000 peers
  constexpr rlim_t kNrOpenDefault = 1u << 20;  // a soft limit cannot be "unlimited"
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  if (r.rlim_cur < r.rlim_max) {
    rlimit raised = r;
    raised.rlim_cur = r.rlim_max == RLIM_INFINITY ? kNrOpenDefault : r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  if (r.rlim_cur < kEnough) {
    dpool::log::warn(
        "open file limit {} (hard limit {}): at most about {} workers and clients can connect; "
        "raise the hard limit (ulimit -Hn, or LimitNOFILE= under systemd) for more",
        r.rlim_cur, r.rlim_max, r.rlim_cur > 32 ? r.rlim_cur - 32 : 0);
  }
}

int serve(const dpool::BrokerConfig& config) {
  dpool::log::init("broker", config.log_level);
  raise_open_file_limit();
  dpool::Broker broker(config, config.insecure);
  g_broker = &broker;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  broker.run();
  g_broker = nullptr;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // This process only: an embedded broker leaves its host's malloc alone.
  dpool::keep_payload_memory();
  CLI::App app{"dpool-broker: routes tasks from dpool clients to dpool workers"};
  Flags flags;
  add_flags(app, flags);
  return dpool::run_main("dpool-broker", app, argc, argv, [&] {
    const auto config = effective_config(flags);
    if (flags.print_config) {
      std::fputs(dpool::to_yaml(config).c_str(), stdout);
      return std::fflush(stdout) == 0 ? 0 : 3;
    }
    return serve(config);
  });
}
