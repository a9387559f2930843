/* The one encoder and decoder of dpool messages, used by all three roles.
 *
 * Reading is two steps so that a loop can switch on the command before it pays for the body:
 * read_message() takes a multipart message off a socket and checks its framing (signature,
 * version, known command); decode<Body>() then unpacks the body with size limits. Neither
 * throws on bad input: they return an empty optional and count the reason in DropCounters,
 * because nothing a peer sends may crash the reader (docs/protocol.md, "Malformed input").
 */
#pragma once

#include <array>
#include <chrono>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "dpool/protocol.hpp"

namespace dpool {

/* Why messages were dropped, for logs and `dpool status`. */
enum class DropReason : std::uint8_t {
  kFraming,      // wrong frame count, short header, bad signature
  kVersion,      // a protocol version this build does not speak
  kCommand,      // an unknown command, or one this role never receives
  kBody,         // the body is not msgpack, or a field has the wrong type
  kPayloads,     // the number of payload frames does not match the body
  kUnknownPeer,  // a message from a peer that has not said HELLO/READY
  kStale,        // an outcome for a lease that is no longer current
  kRole,         // CURVE: a command the sender's key may not send (a client key's READY)
  kAuth,         // CURVE: a handshake refused, its key in no allowlist (not a message)
  kCount_,
};
[[nodiscard]] std::string_view to_string(DropReason r) noexcept;

class DropCounters {
 public:
  /* Counts one drop and logs it, at most once a second per reason so a flood cannot fill the
   * log. `peer` and `what` are only used for the log line. */
  void drop(DropReason r, std::string_view who, std::string_view what) noexcept;
  [[nodiscard]] std::uint64_t count(DropReason r) const noexcept;
  [[nodiscard]] std::uint64_t total() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(DropReason::kCount_)> counts_{};
  std::array<std::atomic<std::int64_t>, static_cast<std::size_t>(DropReason::kCount_)> last_log_{};
};

/* A framed message whose body has not been decoded yet. */
struct Message {
  zmq::message_t identity;  // routing id, set only when read from a ROUTER
  Command command = Command::kHeartbeat;
  zmq::message_t body;
  std::vector<zmq::message_t> payloads;
};

/* Limits applied while decoding bodies; they bound what a hostile body can make us allocate. */
struct DecodeLimits {
  std::size_t max_array = 1u << 17;
  std::size_t max_map = 1024;
  std::size_t max_str = 1u << 20;
  std::size_t max_depth = 6;
};

/* The limits a worker unpacks a task's arguments with: a payload may be as large as a client
 * makes it (16 MiB in bench/), so they are wider than a body's. */
inline constexpr DecodeLimits kArgumentLimits{1u << 24, 1u << 20, 1u << 30, 16};

/* Reads one whole multipart message without blocking. Returns nullopt when nothing is waiting
 * (the common case) and also when what was waiting was malformed (then counted in `drops`).
 * `routed` says whether the socket is a ROUTER (first frame is the peer's routing id). */
[[nodiscard]] std::optional<Message> read_message(zmq::socket_ref socket, bool routed,
                                                  DropCounters& drops, bool* got_any = nullptr);

/* Unpacks a body as T within `limits` (the broker's come from its config). Returns nullopt
 * (and counts kBody) when the body is not a msgpack array of the right field types. */
template <class T>
[[nodiscard]] std::optional<T> decode(const Message& m, DropCounters& drops, std::string_view who,
                                      const DecodeLimits& limits = DecodeLimits{});

/* Packs `body` and sends header, body and payloads as one multipart message. `identity` is the
 * routing id when sending through a ROUTER (empty otherwise). Payload messages are moved into
 * the socket. Returns false when the ROUTER cannot route to that peer (it is gone) or, with
 * `dontwait`, when the socket cannot take the message now (a PAIR whose peer is not there);
 * then nothing was sent. */
template <class T>
bool send_message(zmq::socket_ref socket, std::string_view identity, Command command,
                  const T& body, std::vector<zmq::message_t> payloads = {}, bool dontwait = false);

/* Unpacks one msgpack value whose strings and binaries stay where they are: the object points
 * into `data`, which must outlive it. Reading a 16 MiB result then copies nothing before the
 * conversion to the caller's type. Throws as msgpack::unpack does. */
[[nodiscard]] msgpack::object_handle unpack_in_place(const void* data, std::size_t size);
[[nodiscard]] inline msgpack::object_handle unpack_in_place(const zmq::message_t& m) {
  return unpack_in_place(m.data(), m.size());
}

namespace detail {
/* read_message()'s checks of a multipart message already received (`frames` in order, the
 * routing id first when `routed`); its frames are moved into the Message. Apart so that the
 * framing can be tested and fuzzed without a socket (fuzz/). */
[[nodiscard]] std::optional<Message> frame_message(std::vector<zmq::message_t>& frames, bool routed,
                                                   DropCounters& drops);
/* Unpacks a body in place (see unpack_in_place): `out` refers into `body`. */
[[nodiscard]] bool unpack_body(const zmq::message_t& body, msgpack::object_handle& out,
                               const DecodeLimits& limits) noexcept;
bool send_frames(zmq::socket_ref socket, std::string_view identity, Command command,
                 const msgpack::sbuffer& body, std::vector<zmq::message_t>& payloads,
                 bool dontwait);
}  // namespace detail

template <class T>
std::optional<T> decode(const Message& m, DropCounters& drops, std::string_view who,
                        const DecodeLimits& limits) {
  msgpack::object_handle handle;
  if (!detail::unpack_body(m.body, handle, limits)) {
    drops.drop(DropReason::kBody, who, "undecodable body");
    return std::nullopt;
  }
  if (handle.get().type != msgpack::type::ARRAY) {
    drops.drop(DropReason::kBody, who, "body is not an array");
    return std::nullopt;
  }
  try {
    T value;
    handle.get().convert(value);
    return value;
  } catch (const std::exception& e) {
    drops.drop(DropReason::kBody, who, e.what());
    return std::nullopt;
  }
}

template <class T>
bool send_message(zmq::socket_ref socket, std::string_view identity, Command command,
                  const T& body, std::vector<zmq::message_t> payloads, bool dontwait) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, body);
  return detail::send_frames(socket, identity, command, buffer, payloads, dontwait);
}

/* zmq::poll that treats a signal's interruption (EINTR) as a timeout: dpool processes get
 * SIGCHLD and SIGTERM, and a signal must never turn into an exception out of a loop. */
int poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout);

/* The routing id of a message as a string key (for maps keyed by peer). */
[[nodiscard]] inline std::string identity_of(const Message& m) {
  return std::string(static_cast<const char*>(m.identity.data()), m.identity.size());
}

/* A payload frame's bytes as a view (valid while the frame lives). */
[[nodiscard]] inline std::string_view view(const zmq::message_t& m) noexcept {
  return {static_cast<const char*>(m.data()), m.size()};
}

/* A frame that shares `m`'s buffer (no byte copy for frames over 33 bytes). */
[[nodiscard]] inline zmq::message_t share(zmq::message_t& m) {
  zmq::message_t out;
  out.copy(m);
  return out;
}

}  // namespace dpool
