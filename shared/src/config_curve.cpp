/* The `curve:` section of the config files (see config_curve.hpp).
 *
 * A key source is checked by loading it, the same way the binaries will when they start, so a
 * file that is missing, private only in name, or not a key is reported against the YAML line
 * that names it, not later as a failure to connect.
 */
#include "config_curve.hpp"

#include <filesystem>
#include <functional>
#include <map>

#include "dpool/curve.hpp"
#include "dpool/error.hpp"

namespace dpool::detail {
namespace {

namespace fs = std::filesystem;

using Reader = std::function<void(const YAML::Node&)>;

[[noreturn]] void fail(const std::string& file, const YAML::Node& n, const std::string& what) {
  const auto line = n.Mark().line;
  throw Error(Errc::kConfig,
              (line >= 0 ? file + ":" + std::to_string(line + 1) : file) + ": " + what);
}

/* A relative path names a file next to the config file when one is there: a cluster's keys and
 * its config files are copied together. Anything else stays as written (an inline key). */
std::string beside(const std::string& file, const std::string& source, const char* suffix) {
  if (source.empty() || fs::path(source).is_absolute()) return source;
  const auto candidate = (fs::path(file).parent_path() / source).string();
  std::error_code ec;
  return fs::exists(candidate, ec) || fs::exists(candidate + suffix, ec) ? candidate : source;
}

std::string scalar_text(const std::string& file, const std::string& key, const YAML::Node& n) {
  if (!n.IsScalar() && !n.IsNull())
    fail(file, n, "curve." + key + ": expected a key or a file name");
  return n.IsNull() ? std::string() : n.Scalar();
}

/* Runs `load` and reports its failure against the YAML line of `n`. */
template <class Load>
void checked(const std::string& file, const std::string& key, const YAML::Node& n, Load load) {
  try {
    load();
  } catch (const Error& e) {
    fail(file, n, "curve." + key + ": " + e.what());
  }
}

Reader secret(const std::string& file, std::string& v) {
  return [&file, &v](const YAML::Node& n) {
    auto text = scalar_text(file, "secret_key", n);
    if (text == kRedactedSecret) {
      fail(file, n,
           "curve.secret_key: this key was redacted by --print-config; write the key file's path "
           "here");
    }
    text = beside(file, text, ".key");
    if (!text.empty()) checked(file, "secret_key", n, [&] { (void)load_secret_key(text); });
    v = text;
  };
}

Reader broker_key(const std::string& file, std::string& v) {
  return [&file, &v](const YAML::Node& n) {
    const auto text = beside(file, scalar_text(file, "broker_key", n), ".pub");
    if (!text.empty()) checked(file, "broker_key", n, [&] { (void)load_public_key(text); });
    v = text;
  };
}

Reader allowlist(const std::string& file, const std::string& key, std::vector<std::string>& v) {
  return [&file, key, &v](const YAML::Node& n) {
    if (!n.IsSequence() && !n.IsNull())
      fail(file, n, "curve." + key + ": expected a list of public keys, .pub files or folders");
    v.clear();
    for (const auto& item : n) {
      const auto text = beside(file, scalar_text(file, key, item), ".pub");
      checked(file, key, item, [&] { (void)load_public_keys({text}); });
      v.push_back(text);
    }
  };
}

void read_section(const YAML::Node& node, const std::string& file,
                  const std::map<std::string, Reader>& readers) {
  if (node.IsNull()) return;
  if (!node.IsMap()) fail(file, node, "curve: expected a map of settings");
  for (const auto& kv : node) {
    const auto key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
    const auto it = readers.find(key);
    if (it == readers.end()) {
      std::string known;
      for (const auto& [name, r] : readers) known += (known.empty() ? "" : ", ") + name;
      fail(file, kv.first, "unknown key 'curve." + key + "' (known: " + known + ")");
    }
    it->second(kv.second);
  }
}

void write_list(YAML::Emitter& out, const char* name, const std::vector<std::string>& v) {
  out << YAML::Key << name << YAML::Value;
  if (v.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const auto& item : v) out << item;
  out << YAML::EndSeq;
}

}  // namespace

void read_curve(const YAML::Node& node, const std::string& file, CurveBrokerConfig& c) {
  read_section(node, file, {{"secret_key", secret(file, c.secret_key)},
                            {"client_keys", allowlist(file, "client_keys", c.client_keys)},
                            {"worker_keys", allowlist(file, "worker_keys", c.worker_keys)}});
}

void read_curve(const YAML::Node& node, const std::string& file, CurvePeerConfig& c) {
  read_section(node, file, {{"broker_key", broker_key(file, c.broker_key)},
                            {"secret_key", secret(file, c.secret_key)}});
}

void write_curve(YAML::Emitter& out, const CurveBrokerConfig& c) {
  out << YAML::Key << "curve" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "secret_key" << YAML::Value << shown_secret(c.secret_key);
  write_list(out, "client_keys", c.client_keys);
  write_list(out, "worker_keys", c.worker_keys);
  out << YAML::EndMap;
}

void write_curve(YAML::Emitter& out, const CurvePeerConfig& c) {
  out << YAML::Key << "curve" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "broker_key" << YAML::Value << c.broker_key;
  out << YAML::Key << "secret_key" << YAML::Value << shown_secret(c.secret_key);
  out << YAML::EndMap;
}

}  // namespace dpool::detail
