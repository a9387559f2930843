/* CURVE for the broker: the ZAP handler that admits keys from the two allowlists, and the role
 * each admitted connection carries.
 *
 * libzmq asks a ZAP handler (RFC 27) about every CURVE handshake on the broker's context, at
 * inproc://zeromq.zap.01, which must be bound before the ROUTER binds. The Gatekeeper answers
 * with 200 and the key's role as the ZAP User-Id ("client" or "worker"), or 400 for a key in
 * neither list (logged at most once a second, counted as an `auth` drop). libzmq then stamps
 * every frame read from that connection with the User-Id, so the broker's loop reads each
 * message's role from the message itself (role_of) and drops a command of the other role.
 *
 * The handler is polled in the broker's one loop rather than run on a thread of its own: it
 * shares the drop counters and the log with the loop, needs no lock, and a handshake waits at
 * most one loop turn (the loop wakes on the ZAP socket like on the ROUTER).
 */
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <zmq.hpp>

#include "dpool/codec.hpp"
#include "dpool/curve.hpp"

namespace dpool::detail {

enum class Role : std::uint8_t { kClient, kWorker };
[[nodiscard]] std::string_view to_string(Role r) noexcept;

class Gatekeeper {
 public:
  /* Binds the ZAP endpoint on `context`. Throws Error(kConfig) when a key is in both lists
   * (a key has one role), Error(kUsage) when another handler holds the endpoint. */
  Gatekeeper(zmq::context_t& context, const CurveBrokerKeys& keys, DropCounters& drops);

  /* Makes `router` (before it binds) a CURVE server with the broker's secret key. */
  void secure(zmq::socket_ref router) const;

  /* The ZAP socket, for the loop's poll. */
  [[nodiscard]] zmq::socket_ref socket() { return zap_; }

  /* Answers every ZAP request waiting, without blocking. */
  void serve();

  /* The role libzmq stamped on a frame read from an admitted connection, nullopt without one. */
  [[nodiscard]] static std::optional<Role> role_of(const zmq::message_t& frame);

  [[nodiscard]] std::size_t clients() const;
  [[nodiscard]] std::size_t workers() const;

 private:
  void answer(std::vector<zmq::message_t>& request);

  std::string secret_;
  std::unordered_map<std::string, Role> allowed_;  // 32-byte binary public key -> role
  DropCounters& drops_;
  zmq::socket_t zap_;
};

}  // namespace dpool::detail
