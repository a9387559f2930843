/* The YAML loader behind config.hpp.
 *
 * Each role's keys are a table of (name, setter); a setter converts one YAML node and throws
 * with the node's line on a type error. Keeping the table beside the struct means a new option
 * is one line here and one field in config.hpp.
 */
#include "dpool/config.hpp"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "dpool/error.hpp"

namespace dpool {
namespace {

struct Where {
  const std::string& file;
  std::string key;
  [[noreturn]] void fail(const YAML::Node& node, const std::string& what) const {
    const auto line = node.Mark().line >= 0 ? node.Mark().line + 1 : 0;
    throw Error(Errc::kConfig, file + ":" + std::to_string(line) + ": " + key + ": " + what);
  }
};

template <class T>
T scalar(const YAML::Node& n, const Where& w, const char* expected) {
  if (!n.IsScalar()) w.fail(n, std::string("expected ") + expected);
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    w.fail(n, std::string("expected ") + expected + ", got '" + n.Scalar() + "'");
  }
}

std::uint32_t positive(const YAML::Node& n, const Where& w, bool allow_zero) {
  const auto v = scalar<long long>(n, w, "a whole number");
  if (v < (allow_zero ? 0 : 1) || v > 1'000'000'000) {
    w.fail(n, allow_zero ? "must be 0 or more" : "must be 1 or more");
  }
  return static_cast<std::uint32_t>(v);
}

/* Durations are written as numbers with a unit: 500ms, 2s, 5m, 24h. */
std::chrono::milliseconds duration(const YAML::Node& n, const Where& w) {
  const auto text = scalar<std::string>(n, w, "a duration like 500ms, 2s, 5m or 24h");
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    w.fail(n, "expected a duration like 500ms, 2s, 5m or 24h, got '" + text + "'");
  }
  const std::string_view unit = std::string_view(text).substr(used);
  double ms = 0;
  if (unit == "ms") ms = value;
  else if (unit == "s") ms = value * 1e3;
  else if (unit == "m") ms = value * 60e3;
  else if (unit == "h") ms = value * 3600e3;
  else w.fail(n, "a duration needs a unit (ms, s, m, h), got '" + text + "'");
  if (ms < 0) w.fail(n, "a duration cannot be negative");
  if (!std::isfinite(ms) || ms > 1e12) w.fail(n, "expected a duration from 0 to about 30 years, got '" + text + "'");
  return std::chrono::milliseconds(static_cast<long long>(ms));
}

using Setter = std::function<void(const YAML::Node&, const Where&)>;
using Schema = std::vector<std::pair<std::string, Setter>>;

void heartbeat_keys(Schema& s, HeartbeatConfig& h) {
  s.emplace_back("heartbeat_interval", [&h](const YAML::Node& n, const Where& w) {
    h.interval = duration(n, w);
    if (h.interval.count() < 10) w.fail(n, "must be at least 10ms");
  });
  s.emplace_back("heartbeat_liveness", [&h](const YAML::Node& n, const Where& w) { h.liveness = positive(n, w, false); });
}

void apply(const std::string& path, std::string_view section, const Schema& schema) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw Error(Errc::kConfig, path + ": cannot read the file");
  } catch (const YAML::Exception& e) {
    throw Error(Errc::kConfig, path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (root.IsNull()) return;  // an empty file changes nothing
  if (!root.IsMap()) throw Error(Errc::kConfig, path + ":1: expected a map of settings");
  static const char* const kSections[] = {"broker", "worker", "client"};
  bool sectioned = false;
  // `broker:` is also a worker's and a client's flat key: only a map makes it a section.
  for (const auto* s : kSections) sectioned = sectioned || root[s].IsMap();
  const YAML::Node settings = sectioned ? root[std::string(section)] : root;
  if (!settings || settings.IsNull()) return;
  if (!settings.IsMap()) Where{path, std::string(section)}.fail(settings, "expected a map of settings");
  for (const auto& kv : settings) {
    if (!kv.first.IsScalar()) Where{path, "?"}.fail(kv.first, "a setting's name must be a plain word");
    const auto key = kv.first.as<std::string>();
    const Where where{path, key};
    bool known = false;
    for (const auto& [name, set] : schema) {
      if (name == key) {
        set(kv.second, where);
        known = true;
        break;
      }
    }
    if (!known) {
      std::string names;
      for (const auto& entry : schema) names += (names.empty() ? "" : ", ") + entry.first;
      where.fail(kv.first, "unknown setting (known: " + names + ")");
    }
  }
}

}  // namespace

void load_config_file(const std::string& path, BrokerConfig& c) {
  Schema s;
  s.emplace_back("bind", [&c](const YAML::Node& n, const Where& w) { c.bind = scalar<std::string>(n, w, "an address"); });
  heartbeat_keys(s, c.heartbeat);
  s.emplace_back("max_attempts", [&c](const YAML::Node& n, const Where& w) { c.max_attempts = positive(n, w, false); });
  s.emplace_back("client_timeout", [&c](const YAML::Node& n, const Where& w) { c.client_timeout = duration(n, w); });
  s.emplace_back("log_level", [&c](const YAML::Node& n, const Where& w) { c.log_level = scalar<std::string>(n, w, "a level"); });
  apply(path, "broker", s);
}

void load_config_file(const std::string& path, WorkerConfig& c) {
  Schema s;
  s.emplace_back("broker", [&c](const YAML::Node& n, const Where& w) { c.broker = scalar<std::string>(n, w, "an address"); });
  s.emplace_back("processes", [&c](const YAML::Node& n, const Where& w) { c.processes = positive(n, w, true); });
  s.emplace_back("prefetch", [&c](const YAML::Node& n, const Where& w) { c.prefetch = positive(n, w, true); });
  s.emplace_back("allow_exec", [&c](const YAML::Node& n, const Where& w) { c.allow_exec = scalar<bool>(n, w, "true or false"); });
  s.emplace_back("max_tasks_per_child", [&c](const YAML::Node& n, const Where& w) { c.max_tasks_per_child = positive(n, w, true); });
  s.emplace_back("plugins", [&c](const YAML::Node& n, const Where& w) {
    if (!n.IsSequence()) w.fail(n, "expected a list of shared library paths");
    c.plugins.clear();
    for (const auto& p : n) c.plugins.push_back(scalar<std::string>(p, w, "a path"));
  });
  s.emplace_back("tags", [&c](const YAML::Node& n, const Where& w) {
    if (!n.IsMap()) w.fail(n, "expected a map of KEY: VALUE");
    c.tags.clear();
    for (const auto& kv : n) c.tags[scalar<std::string>(kv.first, w, "a tag name")] = scalar<std::string>(kv.second, w, "a value");
  });
  heartbeat_keys(s, c.heartbeat);
  s.emplace_back("log_level", [&c](const YAML::Node& n, const Where& w) { c.log_level = scalar<std::string>(n, w, "a level"); });
  apply(path, "worker", s);
}

void load_config_file(const std::string& path, ClientConfig& c) {
  Schema s;
  s.emplace_back("broker", [&c](const YAML::Node& n, const Where& w) { c.broker = scalar<std::string>(n, w, "an address"); });
  heartbeat_keys(s, c.heartbeat);
  s.emplace_back("connect_timeout", [&c](const YAML::Node& n, const Where& w) { c.connect_timeout = duration(n, w); });
  s.emplace_back("broker_timeout", [&c](const YAML::Node& n, const Where& w) { c.broker_timeout = duration(n, w); });
  s.emplace_back("window", [&c](const YAML::Node& n, const Where& w) { c.window = positive(n, w, false); });
  s.emplace_back("log_level", [&c](const YAML::Node& n, const Where& w) { c.log_level = scalar<std::string>(n, w, "a level"); });
  apply(path, "client", s);
}

std::optional<std::string> config_file_path(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("DPOOL_CONFIG"); env && *env) return std::string(env);
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
  if (!explicit_broker.empty()) return explicit_broker;
  if (auto env = broker_from_env()) return *env;
  return from_file;
}

std::optional<std::string> broker_from_env() {
  if (const char* env = std::getenv("DPOOL_BROKER"); env && *env) return std::string(env);
  return std::nullopt;
}

}  // namespace dpool
