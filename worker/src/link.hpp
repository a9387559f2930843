/* The link between a worker host's supervisor and one child: a connected AF_UNIX stream socket
 * carrying the same messages as the broker link (command, msgpack body, payload frames), read
 * and written by the supervisor's loop thread and by the child itself.
 *
 * Why not ZeroMQ: every ZeroMQ hop costs three thread wake-ups (sender, its I/O thread, the
 * receiver's I/O thread, receiver), a third of a lone task's latency, and each child ran a
 * ZeroMQ context with an I/O thread of its own. Here a hop is one write and one read.
 *
 * Why a socketpair handed to the zygote (zygote.hpp passes it with SCM_RIGHTS) rather than a
 * listening address: the connection belongs to its Child record from the moment it exists, with
 * no accept step and no name in the abstract namespace that another local process could
 * connect to first; a child replaced leaves one descriptor to close, nothing else.
 *
 * Framing (docs/protocol.md, section 4.5.2): a 12-octet prefix ('D' 'P' version command, body
 * size u32, payload count u32), every payload's size (u64), then the body and the payloads back
 * to back, in host byte order (both ends are one program on one host). All sizes come first so
 * that the reader checks a whole message against its caps before it allocates anything, then
 * allocates each payload once at its size: a large payload is read straight into the
 * zmq::message_t that goes on to the broker, and written from one with a gathering sendmsg.
 *
 * The supervisor never blocks on a child: send() only queues (payload frames are shared, not
 * copied) and flush(false) writes what the socket takes now; the rest waits for POLLOUT. A
 * child writes with flush(true): it has nothing else to do meanwhile, and the supervisor always
 * reads.
 *
 * Bounded input: a child runs user code, which can write anything to this socket. A message
 * over the caps, or one without the header's signature, version and a known command, breaks
 * the link (kBroken, with why()): the stream cannot be trusted past it, and the supervisor
 * kills the child. A payload is allocated only when its bytes start to come.
 */
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>

#include "dpool/codec.hpp"

namespace dpool::detail {

/* A file descriptor owned: closed by the destructor. */
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_ = -1;
};

/* Two connected link sockets, both close-on-exec: exec'd commands of a task never hold one.
 * Throws Error(kInternal) when the system has no descriptors left. */
[[nodiscard]] std::pair<Fd, Fd> make_link_pair();

/* What one message read from a link may weigh (docs/protocol.md, section 4.5.2). */
struct LinkLimits {
  std::uint32_t max_body = 64u << 20;       // a DONE of 64 outcomes with 64 KiB texts is 8 MiB
  std::uint32_t max_payloads = 1u << 17;    // as many as a body can list (DecodeLimits::max_array)
  std::uint64_t max_payload = 1ULL << 30;   // W6 moves 16 MiB a task
  std::uint64_t max_message = 4ULL << 30;   // all payloads of one message
};
/* What a child takes from its supervisor: anything the framing can say. The supervisor is
 * trusted, and a task it could not hand over would only come back to its backlog. */
inline constexpr LinkLimits kFromSupervisor{UINT32_MAX, UINT32_MAX, UINT64_MAX, UINT64_MAX};

class Link {
 public:
  enum class State : std::uint8_t {
    kOpen,    // nothing wrong (whole messages read, or none yet)
    kClosed,  // end of file or a socket error: the peer is gone
    kBroken,  // a message over the caps or with a bad header: see why()
  };

  explicit Link(Fd fd, LinkLimits limits = {});
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;
  ~Link();

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }

  /* Queues one message; nothing is written before flush(). Payload frames are moved in and
   * written from where they are. */
  template <class T>
  void send(Command command, const T& body, std::vector<zmq::message_t> payloads = {}) {
    msgpack::sbuffer packed;
    msgpack::pack(packed, body);
    queue(command, {packed.data(), packed.size()}, std::move(payloads));
  }

  /* Writes what is queued: all of it (`wait`: blocking as long as the socket is full), or what
   * the socket takes now, leaving the rest queued. Returns false when the peer is gone; what was
   * queued is then dropped. */
  bool flush(bool wait);
  [[nodiscard]] bool pending() const noexcept { return !out_.empty(); }

  /* Reads what has arrived, without blocking, and appends each whole message to `out` (a
   * message split across reads is kept until its end comes). Stops once the socket is empty,
   * or after a few MiB so that one busy peer cannot hold up a loop. */
  State receive(std::vector<Message>& out);
  /* Why the link broke, for the log. */
  [[nodiscard]] const std::string& why() const noexcept { return why_; }

 private:
  struct Outgoing {
    std::string head;  // prefix, payload sizes, body
    std::vector<zmq::message_t> payloads;
    std::size_t size = 0;  // all octets
  };
  enum class Stage : std::uint8_t { kPrefix, kSizes, kBody, kPayload };

  void queue(Command command, std::string_view body, std::vector<zmq::message_t> payloads);
  [[nodiscard]] std::size_t gather(iovec* iov, std::size_t max, std::size_t& bytes) const;
  void consume(std::size_t written);

  /* The octets the body or payload being read was announced with (0 for the other parts). */
  [[nodiscard]] std::size_t announced() const;
  /* Where the current part's next octets go; allocates a body or payload the first time. */
  [[nodiscard]] std::pair<char*, std::size_t> target();
  void advance(std::vector<Message>& out);
  void begin_message();
  void begin_parts();
  void begin_payload(std::size_t index);
  State fail(State state, std::string why);

  Fd fd_;
  LinkLimits limits_;
  std::deque<Outgoing> out_;
  std::size_t written_ = 0;  // octets of out_.front() already written

  State state_ = State::kOpen;
  Stage stage_ = Stage::kPrefix;
  std::array<char, 12> prefix_{};
  std::vector<std::uint64_t> sizes_;
  Message reading_;
  std::size_t part_ = 0;    // the payload being read
  std::size_t filled_ = 0;  // octets of the current part read so far
  bool allocated_ = true;   // false: the current body or payload has no frame yet
  std::vector<char> staged_;  // read ahead, not yet taken into a part
  std::size_t staged_begin_ = 0, staged_end_ = 0;
  std::string why_;
};

}  // namespace dpool::detail
