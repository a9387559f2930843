/* CURVE keys: reading them from where a configuration says they are, and putting them on a
 * client's or worker host's socket.
 *
 * A key "source" is what a config file or a flag holds: a Z85 key written inline (40
 * characters), a file (`dpool keygen --out PREFIX` writes the secret to PREFIX.key, mode 0600,
 * and the public key to PREFIX.pub), the PREFIX alone (the right one of the two is taken), or,
 * for the broker's allowlists, a folder whose *.pub files are all read. A file that exists wins
 * over reading the text as a key, so a path is never mistaken for one.
 *
 * Every failure is one dpool::Error(kConfig) naming the file and the cause (missing,
 * unreadable, not a key, a secret key readable by others); no message ever contains a secret
 * key, and shown_secret() is what --print-config prints in its place.
 */
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "dpool/config.hpp"

namespace dpool {

inline constexpr std::size_t kZ85KeyLength = 40;  // a 32-byte CURVE key in Z85
inline constexpr const char* kRedactedSecret = "(secret key, not shown)";

/* True when `text` is 40 characters of the Z85 alphabet (a CURVE key). */
[[nodiscard]] bool is_z85_key(std::string_view text);

/* The Z85 secret key `source` names. Throws Error(kConfig) naming the file and the cause,
 * also when the file can be read or written by its group or others. */
[[nodiscard]] std::string load_secret_key(const std::string& source);

/* The Z85 public key `source` names (refuses a .key file: that is a secret). */
[[nodiscard]] std::string load_public_key(const std::string& source);

/* Every public key the sources name, folders read for their *.pub files (in name order). */
[[nodiscard]] std::vector<std::string> load_public_keys(const std::vector<std::string>& sources);

/* The public key that belongs to a Z85 secret key. */
[[nodiscard]] std::string public_key_of(const std::string& secret);

/* A secret key source as --print-config shows it: a path as it is, an inline key redacted. */
[[nodiscard]] std::string shown_secret(const std::string& source);

/* The keys a client or worker host connects with. */
struct CurvePeerKeys {
  std::string server;      // the broker's public key
  std::string public_key;  // ours, derived from the secret
  std::string secret;
};

/* The keys of `config`, or nullopt when CURVE is not configured. Throws Error(kConfig) when
 * only one of the two keys is given, or a key cannot be read. */
[[nodiscard]] std::optional<CurvePeerKeys> load_curve(const CurvePeerConfig& config);

/* Makes `socket` (before it connects) a CURVE client of the broker with `keys`. */
void apply_curve(zmq::socket_ref socket, const CurvePeerKeys& keys);

/* The broker's CURVE settings with every key read: its secret key and the two allowlists.
 * nullopt when CURVE is not configured. Throws Error(kConfig) as the loaders above, and when
 * the allowlists are given without a secret key or the secret key without any allowlist. */
struct CurveBrokerKeys {
  std::string secret;
  std::vector<std::string> clients;  // Z85 public keys
  std::vector<std::string> workers;
};
[[nodiscard]] std::optional<CurveBrokerKeys> load_curve(const CurveBrokerConfig& config);

/* What to add to "no broker answered": with CURVE a refused key looks the same as no broker
 * (ZeroMQ retries the handshake silently), so the message names both causes. */
[[nodiscard]] std::string unreachable_hint(const CurvePeerConfig& config);

/* The CURVE flags and environment variables of clients and worker hosts: DPOOL_BROKER_KEY and
 * DPOOL_CURVE_KEY over `config`, when set and not empty. */
void apply_curve_env(CurvePeerConfig& config);

}  // namespace dpool
