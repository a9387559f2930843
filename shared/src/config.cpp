/* The YAML loader and writer behind config.hpp.
 *
 * Each role's keys are one table of Fields built over a config struct: a Field knows its key,
 * how to read its value from a YAML node (throwing with the node's line) and how to write it
 * back. The loader, the writer behind --print-config and the list of known keys all walk the
 * same table, so a new option is one field in config.hpp and one line here, and what is
 * printed is always what is read.
 */
#include "dpool/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include <yaml-cpp/yaml.h>

#include "config_curve.hpp"
#include "config_values.hpp"
#include "dpool/curve.hpp"
#include "dpool/error.hpp"

namespace dpool {
namespace {

using namespace detail;
using std::chrono::milliseconds;

/* "file:line" where the mark is known, else "file". */
std::string at(const std::string& file, const YAML::Mark& mark) {
  return mark.line >= 0 ? file + ":" + std::to_string(mark.line + 1) : file;
}

/* Where a value came from, for its error message: the file, and the key unless the error is
 * about the file's shape. */
struct Where {
  const std::string& file;
  std::string key;
  [[noreturn]] void fail(const YAML::Node& node, const std::string& what) const {
    throw Error(Errc::kConfig,
                at(file, node.Mark()) + ": " + (key.empty() ? "" : key + ": ") + what);
  }
};

template <class T>
T scalar(const YAML::Node& n, const Where& w, const std::string& expected) {
  if (!n.IsScalar()) w.fail(n, "expected " + expected);
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    w.fail(n, "expected " + expected + ", got '" + n.Scalar() + "'");
  }
}

/* Optimal string alignment distance: typos are mostly one wrong, missing, extra or swapped
 * letter, and each of those counts 1. */
std::size_t typo_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

/* "unknown key 'procesess' (did you mean 'processes'?)", or the known names when none is close.
 * Of equally close names the one with the same first letter wins: it is rarely the typo. */
std::string unknown(const std::string& what, const std::string& name,
                    const std::vector<std::string>& known) {
  const std::size_t close = std::max<std::size_t>(2, name.size() / 3);
  const std::string* best = nullptr;
  std::size_t best_score = 0;
  for (const auto& k : known) {
    const auto d = typo_distance(name, k);
    const auto score = 2 * d + (name.empty() || name[0] != k[0] ? 1 : 0);
    if (d <= close && (!best || score < best_score)) best = &k, best_score = score;
  }
  if (best) return "unknown " + what + " '" + name + "' (did you mean '" + *best + "'?)";
  std::string names;
  for (const auto& k : known) names += (names.empty() ? "" : ", ") + k;
  return "unknown " + what + " '" + name + "' (known: " + names + ")";
}

// ---- Fields ---------------------------------------------------------------------------------

struct Field {
  std::string name;
  std::function<void(const YAML::Node&, const Where&)> read;
  std::function<void(YAML::Emitter&)> write;
};
using Fields = std::vector<Field>;

template <class T>
std::function<void(YAML::Emitter&)> writer(const std::string& name, const T& value) {
  return [name, &value](YAML::Emitter& out) { out << YAML::Key << name << YAML::Value << value; };
}

Field text(const std::string& name, std::string& v, const std::string& expected) {
  return {name,
          [&v, expected](const YAML::Node& n, const Where& w) {
            v = scalar<std::string>(n, w, expected);
          },
          writer(name, v)};
}

Field level(const std::string& name, std::string& v) {
  auto read = [&v](const YAML::Node& n, const Where& w) {
    const auto text = scalar<std::string>(n, w, "a log level");
    const auto& levels = log_levels();
    if (std::find(levels.begin(), levels.end(), text) == levels.end()) {
      w.fail(n, "must be trace, debug, info, warn, error or off, got '" + text + "'");
    }
    v = text;
  };
  return {name, read, writer(name, v)};
}

Field boolean(const std::string& name, bool& v) {
  return {name,
          [&v](const YAML::Node& n, const Where& w) { v = scalar<bool>(n, w, "true or false"); },
          writer(name, v)};
}

Field count(const std::string& name, std::uint32_t& v, Limits limits) {
  auto read = [&v, limits](const YAML::Node& n, const Where& w) {
    const auto value = scalar<long long>(n, w, "a whole number");
    if (auto wrong = out_of(value, limits, show_count); !wrong.empty()) w.fail(n, wrong);
    v = static_cast<std::uint32_t>(value);
  };
  return {name, read, writer(name, v)};
}

Field duration(const std::string& name, milliseconds& v, Limits limits) {
  auto read = [&v, limits](const YAML::Node& n, const Where& w) {
    const auto text = scalar<std::string>(n, w, kDurationForm);
    milliseconds value{};
    try {
      value = parse_duration(text);
    } catch (const Error& e) {
      w.fail(n, e.what());
    }
    if (auto wrong = out_of(value.count(), limits, show_ms); !wrong.empty()) w.fail(n, wrong);
    v = value;
  };
  auto write = [name, &v](YAML::Emitter& out) {
    out << YAML::Key << name << YAML::Value << format_duration(v);
  };
  return {name, read, write};
}

Field size(const std::string& name, std::uint64_t& v, Limits limits) {
  auto read = [&v, limits](const YAML::Node& n, const Where& w) {
    const auto text = scalar<std::string>(n, w, kSizeForm);
    std::uint64_t value = 0;
    try {
      value = parse_size(text);
    } catch (const Error& e) {
      w.fail(n, e.what());
    }
    if (auto wrong = out_of(static_cast<long long>(value), limits, show_size); !wrong.empty())
      w.fail(n, wrong);
    v = value;
  };
  auto write = [name, &v](YAML::Emitter& out) {
    out << YAML::Key << name << YAML::Value << format_size(v);
  };
  return {name, read, write};
}

Field list(const std::string& name, std::vector<std::string>& v) {
  auto read = [&v](const YAML::Node& n, const Where& w) {
    if (!n.IsSequence()) w.fail(n, "expected a list of shared library paths");
    v.clear();
    for (const auto& item : n) v.push_back(scalar<std::string>(item, w, "a path"));
  };
  auto write = [name, &v](YAML::Emitter& out) {
    out << YAML::Key << name << YAML::Value;
    if (v.empty()) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const auto& item : v) out << item;
    out << YAML::EndSeq;
  };
  return {name, read, write};
}

Field dict(const std::string& name, std::map<std::string, std::string>& v) {
  auto read = [&v](const YAML::Node& n, const Where& w) {
    if (!n.IsMap()) w.fail(n, "expected a map of KEY: VALUE");
    v.clear();
    for (const auto& kv : n)
      v[scalar<std::string>(kv.first, w, "a tag name")] =
          scalar<std::string>(kv.second, w, "a value");
  };
  auto write = [name, &v](YAML::Emitter& out) {
    out << YAML::Key << name << YAML::Value;
    if (v.empty()) out << YAML::Flow;
    out << YAML::BeginMap;
    for (const auto& [key, value] : v) out << YAML::Key << key << YAML::Value << value;
    out << YAML::EndMap;
  };
  return {name, read, write};
}

/* What a client does with a task past the broker's limits: wait or error. */
Field on_full(ClientConfig::OnFull& v) {
  auto read = [&v](const YAML::Node& n, const Where& w) {
    const auto text = scalar<std::string>(n, w, "wait or error");
    if (text == "wait") v = ClientConfig::OnFull::kWait;
    else if (text == "error") v = ClientConfig::OnFull::kError;
    else w.fail(n, "must be wait or error, got '" + text + "'");
  };
  auto write = [&v](YAML::Emitter& out) {
    out << YAML::Key << "on_full" << YAML::Value
        << (v == ClientConfig::OnFull::kError ? "error" : "wait");
  };
  return {"on_full", read, write};
}

void heartbeat(Fields& f, HeartbeatConfig& h) {
  f.push_back(duration("heartbeat_interval", h.interval, limits::kHeartbeatMs));
  f.push_back(count("heartbeat_liveness", h.liveness, limits::kLiveness));
}

/* A client's broker: "" means none is named, which a loaded file never says, and which the
 * writer says in a comment (the client then starts a local cluster). */
Field client_broker(std::string& v) {
  Field f = text("broker", v, "an address");
  f.write = [&v](YAML::Emitter& out) {
    if (!v.empty()) {
      out << YAML::Key << "broker" << YAML::Value << v;
    } else {
      out << YAML::Comment(
          "broker: none named (flag, DPOOL_BROKER or file): dpool map and dpool::Pool "
          "start a local cluster");
    }
  };
  return f;
}

/* The `curve:` section, a map of its own (config_curve.cpp). */
template <class Curve>
Field curve(Curve& v) {
  return {"curve", [&v](const YAML::Node& n, const Where& w) { detail::read_curve(n, w.file, v); },
          [&v](YAML::Emitter& out) { detail::write_curve(out, v); }};
}

// The order of each table is the order of the keys in config/<role>.yaml.

Fields fields(BrokerConfig& c) {
  Fields f{text("bind", c.bind, "an address"), boolean("insecure", c.insecure)};
  heartbeat(f, c.heartbeat);
  f.push_back(count("max_attempts", c.max_attempts, limits::kMaxAttempts));
  f.push_back(duration("client_timeout", c.client_timeout, limits::kTimeoutMs));
  f.push_back(duration("job_ttl", c.job_ttl, limits::kJobTtlMs));
  f.push_back(duration("priority_aging", c.priority_aging, limits::kAgingMs));
  f.push_back(duration("result_delay", c.result_delay, limits::kResultDelayMs));
  f.push_back(text("data_dir", c.data_dir, "a directory"));
  f.push_back(count("max_tasks_per_client", c.max_tasks_per_client, limits::kTasksPerClient));
  f.push_back(size("max_bytes_per_client", c.max_bytes_per_client, limits::kBytesPerClient));
  f.push_back(count("max_jobs", c.max_jobs, limits::kJobs));
  f.push_back(size("max_message_size", c.max_message_size, limits::kMessageSize));
  f.push_back(count("decode_max_array", c.decode_max_array, limits::kDecodeArray));
  f.push_back(count("decode_max_map", c.decode_max_map, limits::kDecodeMap));
  f.push_back(size("decode_max_str", c.decode_max_str, limits::kDecodeStr));
  f.push_back(count("decode_max_depth", c.decode_max_depth, limits::kDecodeDepth));
  f.push_back(curve(c.curve));
  f.push_back(level("log_level", c.log_level));
  return f;
}

Fields fields(WorkerConfig& c) {
  Fields f{text("broker", c.broker, "an address"),
           count("processes", c.processes, limits::kProcesses),
           count("prefetch", c.prefetch, limits::kPrefetch),
           boolean("allow_exec", c.allow_exec),
           count("max_tasks_per_child", c.max_tasks_per_child, limits::kMaxTasksPerChild),
           size("max_memory_per_child", c.max_memory_per_child, limits::kMemoryPerChild),
           duration("drain_timeout", c.drain_timeout, limits::kDrainTimeoutMs),
           list("plugins", c.plugins),
           dict("tags", c.tags)};
  heartbeat(f, c.heartbeat);
  f.push_back(curve(c.curve));
  f.push_back(level("log_level", c.log_level));
  return f;
}

Fields fields(ClientConfig& c) {
  Fields f{client_broker(c.broker),
           duration("connect_timeout", c.connect_timeout, limits::kTimeoutMs),
           duration("broker_timeout", c.broker_timeout, limits::kTimeoutMs),
           count("window", c.window, limits::kWindow),
           on_full(c.on_full)};
  heartbeat(f, c.heartbeat);
  f.push_back(curve(c.curve));
  f.push_back(level("log_level", c.log_level));
  return f;
}

constexpr std::string_view section_of(const BrokerConfig&) { return "broker"; }
constexpr std::string_view section_of(const WorkerConfig&) { return "worker"; }
constexpr std::string_view section_of(const ClientConfig&) { return "client"; }

std::vector<std::string> names_of(const Fields& fields) {
  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.name);
  return names;
}

// ---- Reading --------------------------------------------------------------------------------

YAML::Node read_yaml(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(Errc::kConfig, path + ": cannot read the file: it is a directory");
  std::ifstream in(path);
  if (!in) throw Error(Errc::kConfig, path + ": cannot read the file: " + std::strerror(errno));
  try {
    return YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw Error(Errc::kConfig, at(path, e.mark) + ": invalid YAML: " + e.msg);
  }
}

/* The map of settings for `section`: the whole file when it is flat, else its section (checking
 * that every top-level key of a sectioned file is a section). Null when there is none. */
YAML::Node settings_of(const YAML::Node& root, const std::string& path, std::string_view section) {
  static const std::vector<std::string> kSections{"broker", "worker", "client"};
  bool sectioned = false;
  // `broker:` is also a worker's and a client's flat key: only a map makes it a section.
  for (const auto& s : kSections) {
    const YAML::Node node = root[s];  // of a const root: invalid (false) when missing
    sectioned = sectioned || (node && node.IsMap());
  }
  if (!sectioned) return root;
  for (const auto& kv : root) {
    const Where file{path, ""};
    if (!kv.first.IsScalar()) file.fail(kv.first, "a section's name must be a plain word");
    const auto name = kv.first.Scalar();
    if (std::find(kSections.begin(), kSections.end(), name) == kSections.end()) {
      file.fail(kv.first, unknown("section", name, kSections));
    }
    if (!kv.second.IsMap() && !kv.second.IsNull())
      Where{path, name}.fail(kv.second, "expected a map of settings");
  }
  return root[std::string(section)];
}

void apply(const std::string& path, std::string_view section, const Fields& fields) {
  const YAML::Node root = read_yaml(path);
  if (root.IsNull()) return;  // an empty file changes nothing
  if (!root.IsMap()) Where{path, ""}.fail(root, "expected a map of settings (key: value lines)");
  const YAML::Node settings = settings_of(root, path, section);
  if (!settings || settings.IsNull()) return;
  for (const auto& kv : settings) {
    if (!kv.first.IsScalar())
      Where{path, ""}.fail(kv.first, "a setting's name must be a plain word");
    const auto key = kv.first.Scalar();
    const auto field =
        std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.name == key; });
    if (field == fields.end())
      Where{path, ""}.fail(kv.first, unknown("key", key, names_of(fields)));
    field->read(kv.second, Where{path, key});
  }
}

template <class Config>
void load(const std::string& path, Config& config) {
  apply(path, section_of(config), fields(config));
}

template <class Config>
std::string emit(Config config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const auto& f : fields(config)) f.write(out);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

template <class Config>
std::vector<std::string> keys(Config config) {
  return names_of(fields(config));
}

}  // namespace

void load_config_file(const std::string& path, BrokerConfig& c) { load(path, c); }
void load_config_file(const std::string& path, WorkerConfig& c) { load(path, c); }
void load_config_file(const std::string& path, ClientConfig& c) { load(path, c); }

std::string to_yaml(const BrokerConfig& c) { return emit(c); }
std::string to_yaml(const WorkerConfig& c) { return emit(c); }
std::string to_yaml(const ClientConfig& c) { return emit(c); }

std::vector<std::string> config_keys(const BrokerConfig& c) { return keys(c); }
std::vector<std::string> config_keys(const WorkerConfig& c) { return keys(c); }
std::vector<std::string> config_keys(const ClientConfig& c) { return keys(c); }

std::optional<std::string> config_file_path(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("DPOOL_CONFIG"); env && *env) return std::string(env);
  return std::nullopt;
}

std::optional<std::string> broker_from_env() {
  if (const char* env = std::getenv("DPOOL_BROKER"); env && *env) return std::string(env);
  return std::nullopt;
}

std::string resolve_client_config(const std::string& explicit_broker, ClientConfig& config) {
  std::string from_file;
  if (auto path = config_file_path("")) {
    ClientConfig loaded = config;
    loaded.broker.clear();  // to tell "the file names a broker" from the default
    load_config_file(*path, loaded);
    from_file = loaded.broker;
    loaded.broker = config.broker;
    config = loaded;
  }
  apply_curve_env(config.curve);
  if (!explicit_broker.empty()) return explicit_broker;
  if (auto env = broker_from_env()) return *env;
  return from_file;
}

const std::vector<std::string>& log_levels() {
  static const std::vector<std::string> kLevels{"trace", "debug", "info", "warn", "error", "off"};
  return kLevels;
}

std::string one_line(std::string text) {
  for (auto& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace dpool
