/* CURVE keys from their sources (see curve.hpp).
 *
 * A source is tried as a path first (so that no file name is ever read as a key), then as
 * PREFIX + ".key" / ".pub", then as an inline Z85 key; what fails all three is reported as a
 * missing file, since a mistyped path is far likelier than a mistyped key. A key file holds
 * the key on its first non-empty line, as `dpool keygen --out` writes it.
 */
#include "dpool/curve.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <zmq.h>

#include "dpool/error.hpp"

namespace dpool {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

enum class Kind { kSecret, kPublic };

const char* suffix_of(Kind kind) { return kind == Kind::kSecret ? ".key" : ".pub"; }

[[noreturn]] void fail(const std::string& what) { throw Error(Errc::kConfig, what); }

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

/* A secret key file must be private: anyone who reads it can pose as its owner. */
void check_private(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path + ": cannot read the key: " + std::strerror(errno));
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    fail(path + ": the secret key can be read or changed by others (mode " + mode +
         "); chmod 600 " + path);
  }
}

std::string read_key_file(const std::string& path, Kind kind) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(path + ": expected a key file, found a folder");
  if (kind == Kind::kSecret) check_private(path);
  std::ifstream in(path);
  if (!in) fail(path + ": cannot read the key: " + std::strerror(errno));
  std::string line;
  while (std::getline(in, line)) {
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty()) break;
  }
  if (!is_z85_key(line)) {
    fail(path +
         ": not a CURVE key (expected 40 Z85 characters on the first line, as dpool keygen writes; "
         "found " +
         std::to_string(line.size()) + " characters)");
  }
  return line;
}

/* The file a source names, "" when it names none (then it may be an inline key). */
std::string file_of(const std::string& source, Kind kind) {
  if (exists(source)) return source;
  if (exists(source + suffix_of(kind))) return source + suffix_of(kind);
  return "";
}

std::string load_key(const std::string& source, Kind kind) {
  const auto file = file_of(source, kind);
  if (!file.empty()) {
    if (kind == Kind::kPublic && fs::path(file).extension() == ".key") {
      fail(file + ": this is a secret key; give its public half (the .pub file) here");
    }
    return read_key_file(file, kind);
  }
  if (is_z85_key(source)) return source;
  // Never echo a secret that is merely malformed: it may be a real key with a typo.
  const bool may_be_key = source.size() >= 30 && source.size() <= 50 &&
                          std::all_of(source.begin(), source.end(), [](char c) {
                            return kZ85Alphabet.find(c) != std::string_view::npos;
                          });
  const std::string shown = kind == Kind::kSecret && may_be_key ? "the secret key given" : source;
  fail(shown + ": no such file, and not a 40-character Z85 key");
}

void add_folder(const std::string& folder, std::vector<std::string>& keys) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".pub") files.push_back(it->path().string());
  }
  if (ec) fail(folder + ": cannot read the folder: " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) keys.push_back(read_key_file(f, Kind::kPublic));
}

}  // namespace

bool is_z85_key(std::string_view text) {
  return text.size() == kZ85KeyLength && std::all_of(text.begin(), text.end(), [](char c) {
           return kZ85Alphabet.find(c) != std::string_view::npos;
         });
}

std::string load_secret_key(const std::string& source) { return load_key(source, Kind::kSecret); }
std::string load_public_key(const std::string& source) { return load_key(source, Kind::kPublic); }

std::vector<std::string> load_public_keys(const std::vector<std::string>& sources) {
  std::vector<std::string> keys;
  for (const auto& s : sources) {
    std::error_code ec;
    if (fs::is_directory(s, ec)) add_folder(s, keys);
    else keys.push_back(load_public_key(s));
  }
  return keys;
}

std::string public_key_of(const std::string& secret) {
  char out[kZ85KeyLength + 1] = {};
  if (zmq_curve_public(out, secret.c_str()) != 0)
    fail("cannot derive a public key: " + std::string(zmq_strerror(zmq_errno())));
  return out;
}

std::string shown_secret(const std::string& source) {
  return !source.empty() && file_of(source, Kind::kSecret).empty() ? kRedactedSecret : source;
}

std::optional<CurvePeerKeys> load_curve(const CurvePeerConfig& config) {
  if (!config.enabled()) return std::nullopt;
  if (config.broker_key.empty())
    fail("curve: secret_key is set but broker_key is not: CURVE needs the broker's public key too");
  if (config.secret_key.empty())
    fail(
        "curve: broker_key is set but secret_key is not: CURVE needs this host's own key pair too "
        "(dpool keygen --out PREFIX)");
  if (!zmq_has("curve")) fail("curve: this libzmq was built without CURVE support");
  CurvePeerKeys keys;
  keys.server = load_public_key(config.broker_key);
  keys.secret = load_secret_key(config.secret_key);
  keys.public_key = public_key_of(keys.secret);
  return keys;
}

void apply_curve(zmq::socket_ref socket, const CurvePeerKeys& keys) {
  socket.set(zmq::sockopt::curve_serverkey, keys.server);
  socket.set(zmq::sockopt::curve_publickey, keys.public_key);
  socket.set(zmq::sockopt::curve_secretkey, keys.secret);
}

std::optional<CurveBrokerKeys> load_curve(const CurveBrokerConfig& config) {
  if (!config.enabled()) return std::nullopt;
  if (config.secret_key.empty())
    fail(
        "curve: client_keys or worker_keys are set but secret_key is not: the broker needs its own "
        "key pair (dpool keygen --out PREFIX)");
  if (config.client_keys.empty() && config.worker_keys.empty()) {
    fail("curve: secret_key is set but neither client_keys nor worker_keys: no one could connect");
  }
  if (!zmq_has("curve")) fail("curve: this libzmq was built without CURVE support");
  CurveBrokerKeys keys;
  keys.secret = load_secret_key(config.secret_key);
  keys.clients = load_public_keys(config.client_keys);
  keys.workers = load_public_keys(config.worker_keys);
  return keys;
}

std::string unreachable_hint(const CurvePeerConfig& config) {
  if (config.enabled()) {
    return "; or it refused our CURVE key: is this key's public half in the broker's client_keys, "
           "and broker_key the broker's public key?";
  }
  return "; if the broker uses CURVE, set curve.broker_key and curve.secret_key "
         "(--broker-key, --curve-key, DPOOL_BROKER_KEY, DPOOL_CURVE_KEY)";
}

void apply_curve_env(CurvePeerConfig& config) {
  if (const char* v = std::getenv("DPOOL_BROKER_KEY"); v && *v) config.broker_key = v;
  if (const char* v = std::getenv("DPOOL_CURVE_KEY"); v && *v) config.secret_key = v;
}

}  // namespace dpool
