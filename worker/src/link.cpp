/* The link's framing and socket I/O (see link.hpp for the design).
 *
 * Reading is a small state machine over the parts of a message (prefix, payload sizes, body,
 * each payload), so that a message may arrive in any number of pieces. Small parts go through a
 * staging buffer, which takes many short messages in one read; a part of 16 KiB or more is read
 * straight into its frame, so a large payload crosses user space once. Every call is
 * non-blocking (MSG_DONTWAIT), whatever the descriptor's mode; only flush(true) may wait.
 */
#include "link.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <tuple>

#include "dpool/config.hpp"
#include "dpool/error.hpp"
#include "dpool/protocol.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kPrefixSize = 12;  // 'D' 'P' version command, body size, payload count
constexpr std::size_t kDirectRead = 16u << 10;
constexpr std::size_t kStaging = 64u << 10;
// One receive() returns after this much, so that one child streaming a large payload cannot
// hold up the supervisor's loop (heartbeats, the other children).
constexpr std::size_t kReadBudget = 8u << 20;
constexpr std::size_t kMaxIov = 1024;  // IOV_MAX on Linux
constexpr int kSendBuffer = 4 << 20;

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

template <class T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
void store(char* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

std::string over(const char* what, std::uint64_t size, std::uint64_t cap) {
  return std::string(what) + " of " + std::to_string(size) + " octets, over the link's cap of " +
         format_size(cap);
}

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

std::pair<Fd, Fd> make_link_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw Error(Errc::kInternal,
                std::string("cannot make a link to a worker process: ") + std::strerror(errno));
  }
  // A large payload then crosses in a few wake-ups of each side rather than one per 200 KiB.
  // The kernel caps it at net.core.wmem_max (unprivileged), and holds only what is in flight.
  for (int fd : fds) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSendBuffer, sizeof kSendBuffer);
  return {Fd(fds[0]), Fd(fds[1])};
}

Link::Link(Fd fd, LinkLimits limits) : fd_(std::move(fd)), limits_(limits), staged_(kStaging) {}

Link::~Link() = default;

// ---- Writing ---------------------------------------------------------------------------------

void Link::queue(Command command, std::string_view body, std::vector<zmq::message_t> payloads) {
  Outgoing o;
  o.head.resize(kPrefixSize + sizeof(std::uint64_t) * payloads.size());
  char* p = o.head.data();
  p[0] = kSignature[0];
  p[1] = kSignature[1];
  p[2] = static_cast<char>(kProtocolVersion);
  p[3] = static_cast<char>(command);
  store(p + 4, static_cast<std::uint32_t>(body.size()));
  store(p + 8, static_cast<std::uint32_t>(payloads.size()));
  o.size = o.head.size() + body.size();
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    store(p + kPrefixSize + sizeof(std::uint64_t) * i,
          static_cast<std::uint64_t>(payloads[i].size()));
    o.size += payloads[i].size();
  }
  o.head.append(body);
  o.payloads = std::move(payloads);
  out_.push_back(std::move(o));
}

/* Points `iov` at what is queued and not yet written, up to `max` pieces; `bytes` is their sum. */
std::size_t Link::gather(iovec* iov, std::size_t max, std::size_t& bytes) const {
  std::size_t n = 0, skip = written_;
  bytes = 0;
  const auto add = [&](const void* data, std::size_t size) {
    if (n == max) return;
    if (skip >= size) {  // written already (or empty)
      skip -= size;
      return;
    }
    iov[n++] = iovec{const_cast<char*>(static_cast<const char*>(data)) + skip, size - skip};
    bytes += size - skip;
    skip = 0;
  };
  for (const auto& o : out_) {
    add(o.head.data(), o.head.size());
    for (const auto& payload : o.payloads) add(payload.data(), payload.size());
    if (n == max) break;
  }
  return n;
}

void Link::consume(std::size_t written) {
  written_ += written;
  while (!out_.empty() && written_ >= out_.front().size) {
    written_ -= out_.front().size;
    out_.pop_front();
  }
}

bool Link::flush(bool wait) {
  iovec iov[kMaxIov];
  while (!out_.empty()) {
    std::size_t bytes = 0;
    msghdr header{};
    header.msg_iov = iov;
    header.msg_iovlen = gather(iov, kMaxIov, bytes);
    // MSG_NOSIGNAL: a peer gone is an answer here, not a SIGPIPE.
    const auto n = ::sendmsg(fd_.get(), &header, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) {
      if (!wait) return true;
      pollfd p{fd_.get(), POLLOUT, 0};
      ::poll(&p, 1, -1);
      continue;
    }
    if (n < 0) {
      out_.clear();
      written_ = 0;
      return false;
    }
    consume(static_cast<std::size_t>(n));
    if (!wait && static_cast<std::size_t>(n) < bytes) return true;  // the socket is full
  }
  return true;
}

// ---- Reading ---------------------------------------------------------------------------------

Link::State Link::receive(std::vector<Message>& out) {
  std::size_t budget = kReadBudget;
  bool drained = false;  // the last read found less than it had room for: nothing more waits
  try {
    while (state_ == State::kOpen) {
      // A body or payload is allocated once its first octets are here, not when announced:
      // a prefix alone must not make the supervisor reserve up to the caps (found by fuzz_link).
      const bool unallocated = !allocated_ && staged_begin_ == staged_end_ && announced() > 0;
      char* data = nullptr;
      std::size_t size = 0;
      if (!unallocated) {
        std::tie(data, size) = target();
        const std::size_t staged = std::min(size - filled_, staged_end_ - staged_begin_);
        if (staged > 0) std::memcpy(data + filled_, staged_.data() + staged_begin_, staged);
        filled_ += staged;
        staged_begin_ += staged;
        if (filled_ == size) {
          advance(out);
          continue;
        }
      }
      if (drained || budget == 0) break;
      const bool direct = !unallocated && size - filled_ >= kDirectRead;
      char* into = direct ? data + filled_ : staged_.data();
      const std::size_t room = direct ? size - filled_ : staged_.size();
      const auto n = ::recv(fd_.get(), into, room, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && would_block(errno)) break;
      if (n <= 0) return fail(State::kClosed, n == 0 ? "end of file" : std::strerror(errno));
      const auto got = static_cast<std::size_t>(n);
      if (direct) {
        filled_ += got;
      } else {
        staged_begin_ = 0;
        staged_end_ = got;
      }
      drained = got < room;
      budget -= std::min(budget, got);
    }
  } catch (const std::bad_alloc&) {
    return fail(State::kBroken, "cannot allocate a message of the announced size");
  } catch (const zmq::error_t&) {
    return fail(State::kBroken, "cannot allocate a message of the announced size");
  }
  return state_;
}

std::size_t Link::announced() const {
  if (stage_ == Stage::kBody) return load<std::uint32_t>(prefix_.data() + 4);
  if (stage_ == Stage::kPayload) return static_cast<std::size_t>(sizes_[part_]);
  return 0;
}

std::pair<char*, std::size_t> Link::target() {
  if (!allocated_) {
    if (stage_ == Stage::kBody) reading_.body = zmq::message_t(announced());
    else reading_.payloads[part_] = zmq::message_t(announced());
    allocated_ = true;
  }
  switch (stage_) {
    case Stage::kPrefix:
      return {prefix_.data(), prefix_.size()};
    case Stage::kSizes:
      return {reinterpret_cast<char*>(sizes_.data()), sizes_.size() * sizeof(std::uint64_t)};
    case Stage::kBody:
      return {static_cast<char*>(reading_.body.data()), reading_.body.size()};
    case Stage::kPayload:
      return {static_cast<char*>(reading_.payloads[part_].data()), reading_.payloads[part_].size()};
  }
  return {nullptr, 0};
}

/* The current part is complete: on to the next, or the message is. */
void Link::advance(std::vector<Message>& out) {
  filled_ = 0;
  switch (stage_) {
    case Stage::kPrefix:
      begin_message();
      return;
    case Stage::kSizes:
      begin_parts();
      return;
    case Stage::kBody:
    case Stage::kPayload: {
      const std::size_t next = stage_ == Stage::kBody ? 0 : part_ + 1;
      if (next < sizes_.size()) {
        begin_payload(next);
        return;
      }
      out.push_back(std::move(reading_));
      reading_ = Message{};
      stage_ = Stage::kPrefix;
      return;
    }
  }
}

/* The prefix is in: checks it before anything is allocated. */
void Link::begin_message() {
  const auto* h = reinterpret_cast<const unsigned char*>(prefix_.data());
  const auto body = load<std::uint32_t>(prefix_.data() + 4);
  const auto count = load<std::uint32_t>(prefix_.data() + 8);
  if (h[0] != static_cast<unsigned char>(kSignature[0]) ||
      h[1] != static_cast<unsigned char>(kSignature[1])) {
    fail(State::kBroken, "a message without the 'DP' signature");
  } else if (h[2] != kProtocolVersion) {
    fail(State::kBroken, "a message of protocol version " + std::to_string(h[2]));
  } else if (!is_known_command(h[3])) {
    fail(State::kBroken, "a message with command " + std::to_string(h[3]));
  } else if (body > limits_.max_body) {
    fail(State::kBroken, over("a body", body, limits_.max_body));
  } else if (count > limits_.max_payloads) {
    fail(State::kBroken, std::to_string(count) + " payloads, over the link's cap of " +
                             std::to_string(limits_.max_payloads));
  } else {
    reading_.command = static_cast<Command>(h[3]);
    sizes_.assign(count, 0);
    stage_ = Stage::kSizes;
  }
}

/* The payload sizes are in: checks them; the body is next. */
void Link::begin_parts() {
  std::uint64_t total = 0;
  for (const auto size : sizes_) {
    if (size > limits_.max_payload) {
      fail(State::kBroken, over("a payload", size, limits_.max_payload));
      return;
    }
    if (size > limits_.max_message - total) {
      fail(State::kBroken, over("payloads", total + size, limits_.max_message));
      return;
    }
    total += size;
  }
  reading_.payloads.reserve(sizes_.size());
  stage_ = Stage::kBody;
  allocated_ = false;  // target() allocates the body
}

void Link::begin_payload(std::size_t index) {
  reading_.payloads.emplace_back();
  part_ = index;
  stage_ = Stage::kPayload;
  allocated_ = false;  // target() allocates the payload
}

Link::State Link::fail(State state, std::string why) {
  state_ = state;
  why_ = std::move(why);
  return state;
}

}  // namespace dpool::detail
