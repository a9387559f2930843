/* Configuration of the three roles: typed structs with the built-in defaults, and the YAML
 * loader that fills them.
 *
 * Precedence is flag > environment > YAML file > default. Each binary starts from the struct's
 * defaults, applies the file (named by --config or DPOOL_CONFIG), then the environment, then
 * its flags. A YAML file may hold one role's keys at the top level or sections `broker:`,
 * `worker:` and `client:` so that one file can serve a whole cluster. An unknown key, a value
 * of the wrong type or unreadable YAML is a dpool::Error(kConfig) naming the file and line.
 */
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dpool {

inline constexpr const char* kDefaultBroker = "tcp://127.0.0.1:5555";

/* Liveness as Majordomo spells it: a peer is dead after `liveness` intervals of silence. */
struct HeartbeatConfig {
  std::chrono::milliseconds interval{1000};
  std::uint32_t liveness = 3;
  [[nodiscard]] std::chrono::milliseconds expiry() const { return interval * liveness; }
};

struct BrokerConfig {
  std::string bind = kDefaultBroker;
  HeartbeatConfig heartbeat;
  std::uint32_t max_attempts = 3;              // leases a task may lose to dying workers
  std::chrono::milliseconds client_timeout{60000};  // a silent client's tasks are dropped after this
  std::string log_level = "info";
};

struct WorkerConfig {
  std::string broker = kDefaultBroker;
  std::uint32_t processes = 0;  // 0: one per core
  std::uint32_t prefetch = 2;   // tasks queued per process beyond the one it runs
  bool allow_exec = false;
  std::uint32_t max_tasks_per_child = 0;  // 0: never recycle
  std::vector<std::string> plugins;
  std::map<std::string, std::string> tags;
  HeartbeatConfig heartbeat;
  std::string log_level = "info";
};

struct ClientConfig {
  std::string broker = kDefaultBroker;
  HeartbeatConfig heartbeat;
  std::chrono::milliseconds connect_timeout{5000};  // no broker by then: tasks fail
  std::chrono::milliseconds broker_timeout{60000};  // broker silent this long: tasks fail
  std::uint32_t window = 10000;                     // tasks held by the broker at once
  std::string log_level = "warn";
};

/* Reads `path` into `config` (only the keys present change). Throws dpool::Error(kConfig). */
void load_config_file(const std::string& path, BrokerConfig& config);
void load_config_file(const std::string& path, WorkerConfig& config);
void load_config_file(const std::string& path, ClientConfig& config);

/* The config file to read: `flag` if given, else $DPOOL_CONFIG, else none. */
[[nodiscard]] std::optional<std::string> config_file_path(const std::string& flag);

/* $DPOOL_BROKER if set and not empty. */
[[nodiscard]] std::optional<std::string> broker_from_env();

/* A client's configuration: the $DPOOL_CONFIG file's client settings over `config`, then the
 * broker by precedence: `explicit_broker` (a flag or an option), else $DPOOL_BROKER, else the
 * file's. Returns the broker, or "" when none is named anywhere (an embedded cluster then).
 * Throws dpool::Error(kConfig) for a bad file. */
std::string resolve_client_config(const std::string& explicit_broker, ClientConfig& config);

}  // namespace dpool
