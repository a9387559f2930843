/* Configuration of the three roles: typed structs with the built-in defaults, the YAML loader
 * that fills them, the YAML writer behind --print-config, and the pieces the binaries' flags
 * share with the loader (durations, sizes, ranges, log levels), so that a flag and its YAML key
 * can never disagree on what they accept.
 *
 * Precedence is flag > environment > YAML file > default. Each binary starts from the struct's
 * defaults, applies the file (named by --config or DPOOL_CONFIG), then the environment, then
 * its flags. A YAML file may hold one role's keys at the top level or sections `broker:`,
 * `worker:` and `client:` so that one file can serve a whole cluster. An unreadable file,
 * invalid YAML, an unknown key, a value of the wrong type or out of range is a
 * dpool::Error(kConfig) of one line naming the file and line.
 */
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dpool {

inline constexpr const char* kDefaultBroker = "tcp://127.0.0.1:5555";

/* The range a number (or a duration, in milliseconds) may take, checked alike for its YAML key
 * and its flag. */
struct Limits {
  long long min;
  long long max;
};

namespace limits {
inline constexpr long long kLongestMs = 100'000LL * 3'600'000;  // 100000h, about 11 years
inline constexpr Limits kProcesses{0, 4096};                     // 0: one per core
inline constexpr Limits kPrefetch{0, 10'000};
inline constexpr Limits kMaxTasksPerChild{0, 1'000'000'000};     // 0: never recycle
inline constexpr Limits kLiveness{1, 1000};
inline constexpr Limits kMaxAttempts{1, 1000};
inline constexpr Limits kWindow{1, 1'000'000'000};
inline constexpr Limits kHeartbeatMs{10, 600'000};               // 10ms to 10m
inline constexpr Limits kTimeoutMs{1, kLongestMs};
inline constexpr Limits kCommandTimeoutMs{1,
                                          10'000'000'000LL};  // 1e7 s: what the exec built-in takes
inline constexpr Limits kJobTtlMs{1000, kLongestMs};
inline constexpr Limits kAgingMs{1, kLongestMs};
inline constexpr Limits kResultDelayMs{0, 60'000};               // 0: every RESULT at once
inline constexpr Limits kDrainTimeoutMs{0, kLongestMs};          // 0: stop at once
inline constexpr long long kLargestSize = 1LL << 60;              // 1 EiB
inline constexpr Limits kMemoryPerChild{0, kLargestSize};         // bytes; 0: no limit
// Per-client limits and message sizes at the broker (docs/protocol.md, "Per-client limits").
inline constexpr Limits kTasksPerClient{1, 1'000'000'000};
inline constexpr Limits kBytesPerClient{1024, kLargestSize};
inline constexpr Limits kMessageSize{64 * 1024, kLargestSize};
inline constexpr Limits kJobs{1, 100'000'000};
// Decode limits: a SUBMIT carries up to 1000 tasks, a task up to 32 tags, a DONE error
// messages of 64 KiB, and a SUBMIT nests 4 deep; anything below breaks dpool's own peers.
inline constexpr Limits kDecodeArray{1024, 0xFFFF'FFFFLL};
inline constexpr Limits kDecodeMap{64, 0xFFFF'FFFFLL};
inline constexpr Limits kDecodeStr{128 * 1024, 0xFFFF'FFFFLL};
inline constexpr Limits kDecodeDepth{4, 64};
}  // namespace limits

/* Liveness as Majordomo spells it: a peer is dead after `liveness` intervals of silence. */
struct HeartbeatConfig {
  std::chrono::milliseconds interval{1000};
  std::uint32_t liveness = 3;
  [[nodiscard]] std::chrono::milliseconds expiry() const { return interval * liveness; }
};

/* CURVE for a client or a worker host (see curve.hpp for what a key "source" may be): the
 * broker's public key and this peer's own secret key, whose public half is derived from it.
 * Both empty: no CURVE. */
struct CurvePeerConfig {
  std::string broker_key;  // the broker's public key: Z85, a .pub file or a PREFIX
  std::string secret_key;  // our secret key: Z85, a .key file (mode 0600) or a PREFIX
  [[nodiscard]] bool enabled() const { return !broker_key.empty() || !secret_key.empty(); }
};

/* CURVE for the broker: its secret key and who may connect in which role. Each allowlist entry
 * is a Z85 public key, a .pub file, or a folder of .pub files. No secret key: no CURVE. */
struct CurveBrokerConfig {
  std::string secret_key;
  std::vector<std::string> client_keys;  // may submit work, ask for status and jobs
  std::vector<std::string> worker_keys;  // may register as worker hosts and run tasks
  [[nodiscard]] bool enabled() const {
    return !secret_key.empty() || !client_keys.empty() || !worker_keys.empty();
  }
};

struct BrokerConfig {
  std::string bind = kDefaultBroker;
  HeartbeatConfig heartbeat;
  std::uint32_t max_attempts = 3;              // leases a task may lose to dying workers
  std::chrono::milliseconds client_timeout{
      60000};  // a silent client's tasks are dropped after this
  std::string log_level = "info";
  bool insecure = false;  // listening beyond loopback without CURVE is allowed
  // How long the results of a detached job are kept after the job finished.
  std::chrono::milliseconds job_ttl{std::chrono::hours(24)};
  // A priority level with tasks waiting that has not been served for this long competes as
  // one level higher (and so on): low priorities never starve.
  std::chrono::milliseconds priority_aging{std::chrono::seconds(10)};
  // Longest a result waits at the broker for others to share its message, while its client
  // has other tasks running and the queue is not empty (docs/protocol.md section 8); 0: none.
  std::chrono::milliseconds result_delay{50};
  // With a directory, accepted tasks and kept results are journaled there and survive a
  // restart of the broker (broker/src/journal.hpp); empty: kept in memory only.
  std::string data_dir;
  CurveBrokerConfig curve;  // with it, listening beyond loopback needs no `insecure`
  // What one client session (or detached job) may make the broker hold: tasks held and not
  // finished plus results not yet ACKed, in number and in payload bytes. Tasks past them are
  // refused (QueueFull); clients learn them from the broker's HEARTBEAT and keep within.
  std::uint32_t max_tasks_per_client = 1'000'000;
  std::uint64_t max_bytes_per_client = 1ULL << 30;
  // Detached jobs held at once, running or keeping results, whoever started them: each is
  // limited like a session, so without this one client could hold any amount in many jobs.
  std::uint32_t max_jobs = 10'000;
  // ZMQ_MAXMSGSIZE of the ROUTER: a peer sending a larger frame is disconnected by ZeroMQ.
  std::uint64_t max_message_size = 1ULL << 30;
  // Decoding limits of every message body (DecodeLimits in codec.hpp, the same defaults).
  std::uint32_t decode_max_array = 1u << 17;
  std::uint32_t decode_max_map = 1024;
  std::uint64_t decode_max_str = 1u << 20;
  std::uint32_t decode_max_depth = 6;
};

struct WorkerConfig {
  std::string broker = kDefaultBroker;
  std::uint32_t processes = 0;  // 0: one per core
  std::uint32_t prefetch = 2;   // tasks queued per process beyond the one it runs
  bool allow_exec = false;
  std::uint32_t max_tasks_per_child = 0;  // 0: never recycle
  std::uint64_t max_memory_per_child =
      0;  // bytes resident; past it a process is recycled; 0: no limit
  // After the first SIGTERM the running tasks get this long to finish; 0: stop at once.
  std::chrono::milliseconds drain_timeout{30000};
  std::vector<std::string> plugins;
  std::map<std::string, std::string> tags;
  HeartbeatConfig heartbeat;
  std::string log_level = "info";
  CurvePeerConfig curve;
};

struct ClientConfig {
  std::string broker = kDefaultBroker;
  HeartbeatConfig heartbeat;
  std::chrono::milliseconds connect_timeout{5000};  // no broker by then: tasks fail
  std::chrono::milliseconds broker_timeout{60000};  // broker silent this long: tasks fail
  std::uint32_t window = 10000;                     // tasks held by the broker at once
  // A task past the broker's limits for this client: kWait keeps it here until room frees
  // up; kError fails it at once (Error kRejected, "queue full: ...").
  enum class OnFull : std::uint8_t { kWait, kError };
  OnFull on_full = OnFull::kWait;
  std::string log_level = "warn";
  CurvePeerConfig curve;
};

/* Reads `path` into `config` (only the keys present change). Throws dpool::Error(kConfig). */
void load_config_file(const std::string& path, BrokerConfig& config);
void load_config_file(const std::string& path, WorkerConfig& config);
void load_config_file(const std::string& path, ClientConfig& config);

/* `config` as a flat YAML file that load_config_file() reads back to the same values, keys in
 * the order of the documented examples. A ClientConfig whose broker is "" (none named
 * anywhere) gets a comment saying so instead of a `broker:` key. */
[[nodiscard]] std::string to_yaml(const BrokerConfig& config);
[[nodiscard]] std::string to_yaml(const WorkerConfig& config);
[[nodiscard]] std::string to_yaml(const ClientConfig& config);

/* The YAML keys the loader knows for the role of the argument (its value does not matter). */
[[nodiscard]] std::vector<std::string> config_keys(const BrokerConfig&);
[[nodiscard]] std::vector<std::string> config_keys(const WorkerConfig&);
[[nodiscard]] std::vector<std::string> config_keys(const ClientConfig&);

/* The config file to read: `flag` if given, else $DPOOL_CONFIG, else none. */
[[nodiscard]] std::optional<std::string> config_file_path(const std::string& flag);

/* $DPOOL_BROKER if set and not empty. */
[[nodiscard]] std::optional<std::string> broker_from_env();

/* A client's configuration: the $DPOOL_CONFIG file's client settings over `config`, then
 * $DPOOL_BROKER_KEY and $DPOOL_CURVE_KEY over its CURVE keys, then the broker by precedence:
 * `explicit_broker` (a flag or an option), else $DPOOL_BROKER, else the file's.
 * Returns the broker, or "" when none is named anywhere (an embedded cluster then). Throws
 * dpool::Error(kConfig) for a bad file. */
std::string resolve_client_config(const std::string& explicit_broker, ClientConfig& config);

// ---- Shared by the YAML loader and the binaries' flags ----------------------------------------

/* "500ms", "2s", "1.5m", "24h" as milliseconds. Throws dpool::Error(kConfig) saying what is
 * wrong with `text` (no number, no unit, negative, too long). */
[[nodiscard]] std::chrono::milliseconds parse_duration(std::string_view text);

/* The inverse: the largest unit that keeps the number whole ("90s", "24h", "1500ms"). */
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

/* A CLI11 transform for a duration flag (CLI::Validator(duration_flag(...), "DURATION")): it
 * replaces the flag's text by its count of milliseconds and returns "", or returns what is
 * wrong. With `bare_ms` a plain number counts as milliseconds (what --heartbeat-interval took
 * before it took units). */
[[nodiscard]] std::function<std::string(std::string&)> duration_flag(Limits limits,
                                                                     bool bare_ms = false);

/* "512MiB", "2G", "300MB", "1.5GiB" or a bare number of bytes, as bytes. K, M, G, T and KiB ...
 * TiB count in powers of 1024, KB ... TB in powers of 1000 (the unit's case does not matter).
 * Throws dpool::Error(kConfig) saying what is wrong with `text`. */
[[nodiscard]] std::uint64_t parse_size(std::string_view text);

/* The inverse: the largest unit that keeps the number whole ("512MiB", "300MB"), else the bare
 * number of bytes; 0 is "0". */
[[nodiscard]] std::string format_size(std::uint64_t bytes);

/* A CLI11 transform for a size flag, as duration_flag() for durations: it replaces the flag's
 * text by its number of bytes and returns "", or returns what is wrong. */
[[nodiscard]] std::function<std::string(std::string&)> size_flag(Limits limits);

/* A CLI11 transform for a whole-number flag, in the words its YAML key uses ("expected a whole
 * number, got 'ten'", "must be 1 or more, got 0"). It writes the number back in decimal:
 * CLI11 would read "010" as octal and "0x10" as hex. */
[[nodiscard]] std::function<std::string(std::string&)> count_flag(Limits limits);

/* A CLI11 check for a flag in seconds, like 30 or 2.5, from limits.min to limits.max
 * milliseconds; "nan", "inf" and hex, which strtod takes, are not seconds. */
[[nodiscard]] std::function<std::string(std::string&)> seconds_flag(Limits limits);

/* trace, debug, info, warn, error, off: what log_level and --log-level accept. */
[[nodiscard]] const std::vector<std::string>& log_levels();

/* A message that may span lines (CLI11's do) as the one line a person is shown. */
[[nodiscard]] std::string one_line(std::string text);

}  // namespace dpool
