/* Framing and body decoding for dpool messages (see codec.hpp for the contract).
 *
 * read_message() always drains a whole multipart message, even a malformed one, so that the
 * next read starts at a message boundary. Bodies are unpacked with msgpack-c's unpack_limit,
 * and every msgpack value (bodies, arguments, results) with a budget of elements no larger than
 * its size: without them a 5-byte body announcing a 4-billion-element array would make
 * msgpack-c allocate the array up front.
 */
#include "dpool/codec.hpp"

#include <chrono>
#include <cstring>
#include <memory>

#include "dpool/log.hpp"

namespace dpool {

std::string_view to_string(DropReason r) noexcept {
  switch (r) {
    case DropReason::kFraming: return "framing";
    case DropReason::kVersion: return "version";
    case DropReason::kCommand: return "command";
    case DropReason::kBody: return "body";
    case DropReason::kPayloads: return "payloads";
    case DropReason::kUnknownPeer: return "unknown-peer";
    case DropReason::kStale: return "stale";
    case DropReason::kRole: return "role";
    case DropReason::kAuth: return "auth";
    case DropReason::kCount_: break;
  }
  return "?";
}

void DropCounters::drop(DropReason r, std::string_view who, std::string_view what) noexcept {
  const auto i = static_cast<std::size_t>(r);
  const auto n = counts_[i].fetch_add(1, std::memory_order_relaxed) + 1;
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now().time_since_epoch()).count();
  auto last = last_log_[i].load(std::memory_order_relaxed);
  if (now - last < 1000 || !last_log_[i].compare_exchange_strong(last, now)) return;
  try {
    log::warn("dropped a message ({}) from {}: {} [{} {} drops so far]", to_string(r),
              log::printable(who), what, n, to_string(r));
  } catch (...) {
  }
}

std::uint64_t DropCounters::count(DropReason r) const noexcept {
  return counts_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
}

std::uint64_t DropCounters::total() const noexcept {
  std::uint64_t sum = 0;
  for (const auto& c : counts_) sum += c.load(std::memory_order_relaxed);
  return sum;
}

int poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout) {
  try {
    return zmq::poll(items, count, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;
    throw;
  }
}

namespace {

/* Receives the rest of a multipart message into `frames`; returns false if nothing waited. */
bool recv_all(zmq::socket_ref socket, std::vector<zmq::message_t>& frames) {
  zmq::message_t first;
  try {
    if (!socket.recv(first, zmq::recv_flags::dontwait)) return false;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return false;
    throw;
  }
  bool more = first.more();
  frames.push_back(std::move(first));
  while (more) {
    zmq::message_t part;
    // The rest of a multipart message is already here: ZeroMQ delivers them atomically.
    if (!socket.recv(part, zmq::recv_flags::none)) break;
    more = part.more();
    frames.push_back(std::move(part));
  }
  return true;
}

}  // namespace

std::optional<Message> read_message(zmq::socket_ref socket, bool routed, DropCounters& drops,
                                    bool* got_any) {
  std::vector<zmq::message_t> frames;
  frames.reserve(4);
  if (got_any) *got_any = false;
  if (!recv_all(socket, frames)) return std::nullopt;
  if (got_any) *got_any = true;
  return detail::frame_message(frames, routed, drops);
}

namespace detail {

std::optional<Message> frame_message(std::vector<zmq::message_t>& frames, bool routed,
                                     DropCounters& drops) {
  Message m;
  if (routed && frames.empty()) {
    drops.drop(DropReason::kFraming, "", "no frames");
    return std::nullopt;
  }
  std::size_t next = 0;
  if (routed) m.identity = std::move(frames[next++]);
  const std::string who = routed ? std::string(view(m.identity)) : std::string("broker");
  if (frames.size() < next + 2) {
    drops.drop(DropReason::kFraming, who, "fewer than two frames");
    return std::nullopt;
  }
  const auto& header = frames[next];
  const auto* h = static_cast<const unsigned char*>(header.data());
  if (header.size() != 4 || h[0] != kSignature[0] || h[1] != kSignature[1]) {
    drops.drop(DropReason::kFraming, who, "bad header frame");
    return std::nullopt;
  }
  if (h[2] != kProtocolVersion) {
    drops.drop(DropReason::kVersion, who, "protocol version " + std::to_string(h[2]));
    return std::nullopt;
  }
  if (!is_known_command(h[3])) {
    drops.drop(DropReason::kCommand, who, "command " + std::to_string(h[3]));
    return std::nullopt;
  }
  m.command = static_cast<Command>(h[3]);
  m.body = std::move(frames[next + 1]);
  m.payloads.reserve(frames.size() - next - 2);
  for (std::size_t i = next + 2; i < frames.size(); ++i) m.payloads.push_back(std::move(frames[i]));
  return m;
}

}  // namespace detail

namespace {
bool in_place(msgpack::type::object_type, std::size_t, void*) { return true; }

/* msgpack-c's own visitor, refusing a container that announces more elements than the input
 * could still hold. msgpack-c allocates a container's element array as soon as it reads the
 * count, before the elements, so without this five bytes (an array of 2^32-1) made it
 * allocate 64 GiB, and a few more, nested, that again at every level (found by fuzz_args).
 * Every element takes at least one byte of its own, so in a valid input the counts of all its
 * containers add up to less than its size: the budget refuses no valid input, and bounds what
 * one can make us allocate to 16 bytes (a msgpack::object) per input byte. */
class BoundedVisitor : public msgpack::detail::create_object_visitor {
 public:
  BoundedVisitor(std::size_t size, const msgpack::unpack_limit& limit)
      : create_object_visitor(in_place, nullptr, limit), budget_(size) {}
  bool start_array(std::uint32_t n) {
    spend(n);
    return create_object_visitor::start_array(n);
  }
  bool start_map(std::uint32_t n) {
    spend(2 * static_cast<std::uint64_t>(n));
    return create_object_visitor::start_map(n);
  }

 private:
  void spend(std::uint64_t elements) {
    if (elements > budget_)
      throw msgpack::array_size_overflow("more elements announced than the input holds");
    budget_ -= elements;
  }
  std::uint64_t budget_;
};

/* msgpack::unpack with BoundedVisitor; throws as msgpack::unpack does. */
msgpack::object_handle unpack_bounded(const char* data, std::size_t size, std::size_t& offset,
                                      const msgpack::unpack_limit& limit) {
  auto zone = std::make_unique<msgpack::zone>();
  BoundedVisitor visitor(size, limit);
  visitor.set_zone(*zone);
  bool referenced = false;
  visitor.set_referenced(referenced);
  const auto ret = msgpack::detail::parse_imp(data, size, offset, visitor);
  if (ret != msgpack::PARSE_SUCCESS && ret != msgpack::PARSE_EXTRA_BYTES) {
    throw msgpack::parse_error("incomplete msgpack");  // the visitor throws first, as a rule
  }
  return msgpack::object_handle(visitor.data(), std::move(zone));
}

}  // namespace

msgpack::object_handle unpack_in_place(const void* data, std::size_t size) {
  std::size_t offset = 0;
  return unpack_bounded(static_cast<const char*>(data), size, offset, msgpack::unpack_limit());
}

namespace detail {

bool unpack_body(const zmq::message_t& body, msgpack::object_handle& out,
                 const DecodeLimits& limits) noexcept {
  try {
    const msgpack::unpack_limit limit(limits.max_array, limits.max_map, limits.max_str,
                                      limits.max_str, limits.max_str, limits.max_depth);
    std::size_t offset = 0;
    out = unpack_bounded(static_cast<const char*>(body.data()), body.size(), offset, limit);
    return offset == body.size();
  } catch (...) {
    return false;
  }
}

bool send_frames(zmq::socket_ref socket, std::string_view identity, Command command,
                 const msgpack::sbuffer& body, std::vector<zmq::message_t>& payloads,
                 bool dontwait) {
  const unsigned char header[4] = {static_cast<unsigned char>(kSignature[0]),
                                   static_cast<unsigned char>(kSignature[1]), kProtocolVersion,
                                   static_cast<unsigned char>(command)};
  try {
    // Only the first frame can find the socket unable to take the message; after it, ZeroMQ
    // takes the rest of a multipart message whole.
    const auto first =
        dontwait ? zmq::send_flags::sndmore | zmq::send_flags::dontwait : zmq::send_flags::sndmore;
    if (!identity.empty()) {
      if (!socket.send(zmq::buffer(identity), first)) return false;
    } else if (!socket.send(zmq::buffer(header, sizeof header), first)) {
      return false;
    }
    if (!identity.empty())
      socket.send(zmq::buffer(header, sizeof header), zmq::send_flags::sndmore);
    socket.send(zmq::const_buffer(body.data(), body.size()),
                payloads.empty() ? zmq::send_flags::none : zmq::send_flags::sndmore);
    for (std::size_t i = 0; i < payloads.size(); ++i) {
      socket.send(payloads[i], i + 1 == payloads.size() ? zmq::send_flags::none
                                                        : zmq::send_flags::sndmore);
    }
    return true;
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return false;  // ROUTER_MANDATORY: the peer is gone
    throw;
  }
}

}  // namespace detail
}  // namespace dpool
