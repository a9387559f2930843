/* Test support: the hostile side of the wire, for tests/test_hostile.cpp.
 *
 * A broker must survive whatever reaches its port (docs/protocol.md, section 7). These helpers
 * build what a well-behaved peer never sends, at two levels:
 *   - dpool frames over a real DEALER socket (bad headers, bodies, payload counts), so that
 *     ZeroMQ delivers them to the broker's loop and its codec and handlers must refuse them;
 *   - bytes over a plain TCP socket, below ZMTP (garbage, half a greeting, a frame cut off
 *     mid-message), which ZeroMQ's own engine in the broker must refuse without the broker's
 *     loop ever seeing them.
 * They also read what a broker process shows of itself from outside: the drop counters in its
 * log lines ("[n reason drops so far]") and its resident memory in /proc.
 *
 * Everything is blocking-free or bounded by a timeout: a test that attacks must still end.
 */
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>

#include "dpool/codec.hpp"
#include "dpool/protocol.hpp"

namespace dpool::test::hostile {

/* A 4-octet header frame; any version or command byte, valid or not. */
inline std::string header(std::uint8_t command, std::uint8_t version = kProtocolVersion) {
  return std::string{kSignature[0], kSignature[1], static_cast<char>(version),
                     static_cast<char>(command)};
}
inline std::string header(Command command) { return header(static_cast<std::uint8_t>(command)); }

/* `value` as msgpack bytes. */
template <class T>
std::string pack(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return {buffer.data(), buffer.size()};
}

/* A DEALER with this routing id, connected, that never blocks on a send and drops what is
 * unsent when closed (unless `linger` says to wait). */
inline zmq::socket_t dealer(zmq::context_t& context, const std::string& endpoint,
                            const std::string& identity,
                            std::chrono::milliseconds linger = std::chrono::milliseconds(0)) {
  zmq::socket_t s(context, zmq::socket_type::dealer);
  s.set(zmq::sockopt::routing_id, identity);
  s.set(zmq::sockopt::linger, static_cast<int>(linger.count()));
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  s.connect(endpoint);
  return s;
}

/* A DEALER that floods: its own send queue is small, so what it sends is on the wire rather
 * than queued here, and a send never blocks. With `reads` false it is also a peer that stops
 * reading: a one-message receive queue and a 4 KiB kernel buffer fill at once, and then what
 * the broker sends it waits in the broker. */
inline zmq::socket_t flooder(zmq::context_t& context, const std::string& endpoint,
                             const std::string& identity, bool reads = true) {
  zmq::socket_t s(context, zmq::socket_type::dealer);
  s.set(zmq::sockopt::routing_id, identity);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::sndhwm, 16);
  s.set(zmq::sockopt::sndtimeo, 0);
  if (!reads) {
    s.set(zmq::sockopt::rcvhwm, 1);
    s.set(zmq::sockopt::rcvbuf, 4096);
  }
  s.connect(endpoint);
  return s;
}

/* Sends `frames` as one multipart message (an empty list sends one empty frame). */
inline void send_frames(zmq::socket_t& s, const std::vector<std::string>& frames) {
  if (frames.empty()) {
    s.send(zmq::message_t(), zmq::send_flags::none);
    return;
  }
  for (std::size_t i = 0; i < frames.size(); ++i) {
    s.send(zmq::buffer(frames[i]),
           i + 1 == frames.size() ? zmq::send_flags::none : zmq::send_flags::sndmore);
  }
}

/* Reads and discards whatever the broker sent `s`; returns how many messages that was. */
inline std::size_t drain(zmq::socket_t& s) {
  std::size_t n = 0;
  zmq::message_t part;
  while (s.recv(part, zmq::recv_flags::dontwait)) n += !part.more();
  return n;
}

/* Reads messages until one with `command` arrives; false when none came within `timeout`. */
inline bool await_command(zmq::socket_t& s, Command command, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const auto wanted = header(command);
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    s.set(zmq::sockopt::rcvtimeo, static_cast<int>(left.count()));
    zmq::message_t first;
    if (!s.recv(first)) return false;
    const bool found = first.to_string_view() == wanted;
    for (zmq::message_t rest; first.more() && s.recv(rest);) first.move(rest);
    if (found) return true;
  }
}

/* Reads messages until one with `command` arrives and returns its body decoded as T; nullopt
 * when none came within `timeout` (0: only what has arrived already) or it did not decode. */
template <class T>
std::optional<T> await_body(zmq::socket_t& s, Command command, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  DropCounters drops;
  for (;;) {
    bool got = false;
    auto m = read_message(s, false, drops, &got);
    if (got && m && m->command == command) return decode<T>(*m, drops, "broker");
    if (got) continue;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

/* Messages a dpool peer never sends, each labelled with the drop reason the broker should count
 * for it (docs/protocol.md, section 7). Sent from a peer that is neither a client nor a worker. */
inline std::vector<std::pair<std::string, std::vector<std::string>>> malformed_messages() {
  const std::string hello = pack(wire::Hello{"hostile", 1, "hostile"});
  wire::Submit two;
  two.tasks = {wire::TaskSpec{1, "nobody-offers-this"}, wire::TaskSpec{2, "nobody-offers-this"}};
  std::string deep(12, '\x91');  // arrays nested past the depth limit
  deep += '\x00';
  return {
      {"framing", {}},                                      // one empty frame
      {"framing", {"garbage"}},                             // one frame
      {"framing", {"", ""}},                                // empty header
      {"framing", {"DP\x01", hello}},                       // truncated header
      {"framing", {"XX\x01\x01", hello}},                   // bad signature
      {"framing", {header(Command::kHello) + "x", hello}},  // header too long
      {"version", {header(1, 2), hello}},
      {"version", {header(1, 0), hello}},
      {"command", {header(0), hello}},
      {"command", {header(kMaxCommand + 1), hello}},
      {"command", {header(255), hello}},
      {"command", {header(Command::kResult), pack(wire::ResultBatch{})}},  // the broker's own
      {"command", {header(Command::kTask), pack(wire::TaskBatch{})}},
      {"body", {header(Command::kHello), hello.substr(0, hello.size() - 3)}},  // truncated msgpack
      {"body", {header(Command::kHello), hello + "trailing"}},
      {"body", {header(Command::kHello), pack(42)}},  // not an array
      {"body", {header(Command::kHello), pack(std::map<std::string, int>{{"host", 1}})}},
      {"body", {header(Command::kHello), pack(std::make_tuple(7, "pid", 3))}},  // wrong field types
      {"body", {header(Command::kSubmit), pack(std::make_tuple("tasks"))}},
      {"body",
       {header(Command::kHello), std::string("\xdd\xff\xff\xff\xff", 5)}},  // 2^32-1 elements
      {"body",
       {header(Command::kHello), std::string("\x91\xdb\xff\xff\xff\xf0xyz", 9)}},  // 4 GiB str
      {"body",
       {header(Command::kHello), std::string("\x91\xdf\xff\xff\xff\xff", 6)}},  // 2^32-1 pairs
      {"body", {header(Command::kHello), deep}},
      {"body", {header(Command::kStatus), ""}},  // empty body
      {"payloads", {header(Command::kSubmit), pack(two), "only one payload"}},
      {"payloads", {header(Command::kSubmit), pack(wire::Submit{}), "a", "b", "c"}},
  };
}

/* Well-formed messages out of order: what only a client with a session or a registered worker
 * may send, from a peer that never said HELLO or READY. Each must come from a routing id that
 * sent nothing else (a SUBMIT or HELLO, even a malformed one, opens a session). */
inline std::vector<std::vector<std::string>> out_of_order_messages() {
  wire::Outcome forged;
  forged.task = 1;
  forged.attempt = 1;
  return {
      {header(Command::kAck), pack(wire::Ack{{1, 2, 3}})},
      {header(Command::kCancel), pack(wire::Cancel{{1, 2, 3}})},
      {header(Command::kDone), pack(wire::DoneBatch{{forged}}), pack(-1)},
      {header(Command::kHeartbeat), pack(wire::Heartbeat{})},        // answered DISCONNECT
      {header(Command::kDisconnect), pack(wire::Disconnect{"bye"})},  // ignored
  };
}

// ---- Plain TCP, below ZMTP ----------------------------------------------------------------

/* An open TCP connection to 127.0.0.1:`port` (closed by its destructor), or an invalid one. */
class RawTcp {
 public:
  explicit RawTcp(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) close();
    if (fd_ >= 0) {
      const timeval limit{1, 0};  // a broker that stops reading must not hang the test
      ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    }
  }
  RawTcp(RawTcp&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  RawTcp& operator=(RawTcp&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  RawTcp(const RawTcp&) = delete;
  RawTcp& operator=(const RawTcp&) = delete;
  ~RawTcp() { close(); }

  [[nodiscard]] bool ok() const { return fd_ >= 0; }
  /* Writes all of `bytes`; false when the broker closed the connection (or a write timed out). */
  bool send(const std::string& bytes) {
    std::size_t done = 0;
    while (fd_ >= 0 && done < bytes.size()) {
      const auto n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return fd_ >= 0;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/* The 64-octet ZMTP 3.0 greeting of a NULL-mechanism client (RFC 23). */
inline std::string zmtp_greeting() {
  std::string g("\xff\0\0\0\0\0\0\0\0\x7f\x03\x00", 12);
  std::string mechanism = "NULL";
  mechanism.resize(20, '\0');
  g += mechanism;
  g.resize(64, '\0');  // as-server 0, filler
  return g;
}

/* One ZMTP frame: flags (more, long, command) and size, then the body. */
inline std::string zmtp_frame(const std::string& body, bool more, bool command = false,
                              std::uint64_t declared = UINT64_MAX) {
  const std::uint64_t size = declared == UINT64_MAX ? body.size() : declared;
  std::string f;
  const bool long_frame = size > 255;
  f += static_cast<char>((more ? 1 : 0) | (long_frame ? 2 : 0) | (command ? 4 : 0));
  if (long_frame) {
    for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((size >> shift) & 0xff);
  } else {
    f += static_cast<char>(size);
  }
  return f + body;
}

/* The NULL mechanism's READY command for a DEALER with this routing id. */
inline std::string zmtp_ready(const std::string& identity) {
  auto property = [](const std::string& name, const std::string& value) {
    std::string p(1, static_cast<char>(name.size()));
    p += name;
    const auto n = static_cast<std::uint32_t>(value.size());
    p += {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
          static_cast<char>(n)};
    return p + value;
  };
  return zmtp_frame(
      "\x05READY" + property("Socket-Type", "DEALER") + property("Identity", identity), false,
      true);
}

// ---- What a broker process shows from outside ---------------------------------------------

/* Per drop reason, the highest count the broker's log lines reported ("[n reason drops so
 * far]"), and how many such lines it wrote (the log is rate-limited per reason). */
struct LoggedDrops {
  std::map<std::string, std::uint64_t> count;
  std::map<std::string, std::uint64_t> lines;
};
inline LoggedDrops logged_drops(const std::string& log) {
  LoggedDrops out;
  static const std::regex line(R"(\[(\d+) ([a-z-]+) drops so far\])");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it) {
    const std::uint64_t n = std::stoull((*it)[1]);
    const auto reason = (*it)[2].str();
    out.count[reason] = std::max(out.count[reason], n);
    ++out.lines[reason];
  }
  return out;
}

/* The resident memory of process `pid` in KiB (VmRSS), 0 when it cannot be read. */
inline std::uint64_t rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      std::uint64_t kib = 0;
      in >> kib;
      return kib;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}

}  // namespace dpool::test::hostile
