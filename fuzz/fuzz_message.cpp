/* fuzz_message: a whole multipart message, framed and decoded as the role receiving it does.
 *
 * The input is cut into frames by a length prefix, so that the fuzzer controls frame count and
 * sizes as a peer on the wire does:
 *   byte 0        bit 0: the receiving socket is a ROUTER (the broker), so frame 0 is the
 *                 sender's routing id; clear: a DEALER (a worker host, a client)
 *   then frames   each a u16 length (little-endian) and that many bytes; a length past the end
 *                 of the input takes what is left
 * Each message goes through detail::frame_message() (read_message()'s checks), then through
 * decode<Body>() with the body struct its command carries, and the payload-count check the
 * receiving handler makes. A message that decodes must also survive being packed and decoded
 * again: the broker forwards what it decoded (outcomes into results), so whatever it accepts
 * it must be able to send. A failure of that is our bug, and aborts.
 */
#include <cstdlib>
#include <utility>

#include "dpool/codec.hpp"
#include "entries.hpp"

namespace dpool::fuzz {
namespace {

constexpr std::size_t kMaxFrames = 64;

std::vector<zmq::message_t> split_frames(const std::uint8_t* data, std::size_t size) {
  std::vector<zmq::message_t> frames;
  std::size_t at = 0;
  while (at < size && frames.size() < kMaxFrames) {
    std::size_t length = data[at];
    if (at + 1 < size) length |= static_cast<std::size_t>(data[at + 1]) << 8;
    at = std::min(size, at + 2);
    length = std::min(length, size - at);
    frames.emplace_back(data + at, length);
    at += length;
  }
  return frames;
}

/* What was decoded must pack into a body that decodes again. */
template <class T>
void check_round_trip(const T& value, DropCounters& drops) {
  msgpack::sbuffer packed;
  msgpack::pack(packed, value);
  Message again;
  again.body = zmq::message_t(packed.data(), packed.size());
  if (!decode<T>(again, drops, "fuzz")) std::abort();
}

template <class T>
void decode_as(const Message& m, DropCounters& drops) {
  if (auto value = decode<T>(m, drops, "fuzz")) check_round_trip(*value, drops);
}

/* Decodes `m` as T, whose `entries` list one entry per payload frame: the receiving handler
 * drops the message when the counts differ. */
template <class T, class Entry>
void decode_as(const Message& m, DropCounters& drops, std::vector<Entry> T::*entries) {
  auto value = decode<T>(m, drops, "fuzz");
  if (!value) return;
  if (((*value).*entries).size() != m.payloads.size()) {
    drops.drop(DropReason::kPayloads, "fuzz", "mismatched payloads");
    return;
  }
  check_round_trip(*value, drops);
}

/* One case per command, no default: a new command without a fuzzed body fails to compile
 * (-Wswitch), as in the roles' own handlers. */
void decode_body(const Message& m, DropCounters& drops) {
  switch (m.command) {
    case Command::kHello: decode_as<wire::Hello>(m, drops); break;
    case Command::kReady: decode_as<wire::Ready>(m, drops); break;
    case Command::kSubmit: decode_as(m, drops, &wire::Submit::tasks); break;
    case Command::kAccept: decode_as<wire::Accept>(m, drops); break;
    case Command::kTask: decode_as(m, drops, &wire::TaskBatch::leases); break;
    case Command::kDone: decode_as(m, drops, &wire::DoneBatch::outcomes); break;
    case Command::kResult: decode_as(m, drops, &wire::ResultBatch::results); break;
    case Command::kAck: decode_as<wire::Ack>(m, drops); break;
    case Command::kHeartbeat: decode_as<wire::Heartbeat>(m, drops); break;
    case Command::kDisconnect: decode_as<wire::Disconnect>(m, drops); break;
    case Command::kCancel: decode_as<wire::Cancel>(m, drops); break;
    case Command::kJoin: decode_as<wire::Join>(m, drops); break;
    case Command::kJoined: decode_as<wire::Joined>(m, drops); break;
    case Command::kJob: decode_as<wire::JobRequest>(m, drops); break;
    case Command::kJobInfo: decode_as<wire::JobInfo>(m, drops); break;
    case Command::kFetch: decode_as<wire::Fetch>(m, drops); break;
    case Command::kFetched: decode_as(m, drops, &wire::Fetched::results); break;
    case Command::kStatus: decode_as<wire::StatusRequest>(m, drops); break;
    case Command::kReport: decode_as<wire::Report>(m, drops); break;
  }
}

}  // namespace

int fuzz_message(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool routed = (data[0] & 1) != 0;
  auto frames = split_frames(data + 1, size - 1);
  DropCounters drops;
  auto m = detail::frame_message(frames, routed, drops);
  if (m) decode_body(*m, drops);
  return 0;
}

}  // namespace dpool::fuzz
