/* The codec (codec.hpp) over real ZeroMQ sockets, in process.
 *
 * Covers: every body in dpool::wire survives send_message / read_message / decode<T> with its
 * payload frames intact byte for byte (including a 1 MiB payload); the routing-id frame of a
 * ROUTER; and malformed input of every kind (framing, version, command, body) being dropped
 * without throwing, counted under the right DropReason, and not disturbing the next message.
 * Also the forward-compatibility rule: extra trailing body fields are ignored, missing ones
 * take their defaults.
 */
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <msgpack.hpp>
#include <zmq.hpp>

#include "dpool/codec.hpp"
#include "dpool/protocol.hpp"

/* Largest single malloc() request while armed, to prove that a hostile body is refused before
 * msgpack-c allocates for it. msgpack-c's zone uses malloc (not operator new), so the test
 * wraps malloc itself; under a sanitizer (which owns malloc) the check is skipped. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DPOOL_TRACK_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define DPOOL_TRACK_MALLOC 0
#endif
#endif
#if !defined(DPOOL_TRACK_MALLOC) && defined(__GLIBC__)
#define DPOOL_TRACK_MALLOC 1
#endif
#ifndef DPOOL_TRACK_MALLOC
#define DPOOL_TRACK_MALLOC 0
#endif

namespace {
std::atomic<bool> g_track_malloc{false};
std::atomic<std::size_t> g_largest_malloc{0};
}  // namespace

#if DPOOL_TRACK_MALLOC
extern "C" void* __libc_malloc(std::size_t size);
extern "C" void* malloc(std::size_t size) noexcept {
  if (g_track_malloc.load(std::memory_order_relaxed)) {
    auto seen = g_largest_malloc.load(std::memory_order_relaxed);
    while (size > seen && !g_largest_malloc.compare_exchange_weak(seen, size)) {
    }
  }
  return __libc_malloc(size);
}
#endif

namespace {

using namespace std::chrono_literals;
using dpool::Command;
using dpool::DropCounters;
using dpool::DropReason;
using dpool::Message;
namespace wire = dpool::wire;

std::string unique_endpoint() {
  static std::atomic<int> next{0};
  return "inproc://codec-test-" + std::to_string(next++);
}

/* Two connected sockets in one context: PAIR/PAIR, or DEALER (with a routing id) to ROUTER. */
struct Sockets {
  zmq::context_t context;
  zmq::socket_t a;  // PAIR, or the DEALER
  zmq::socket_t b;  // PAIR, or the ROUTER

  static Sockets pair() {
    Sockets s;
    const auto endpoint = unique_endpoint();
    s.b = zmq::socket_t(s.context, zmq::socket_type::pair);
    s.a = zmq::socket_t(s.context, zmq::socket_type::pair);
    s.b.bind(endpoint);
    s.a.connect(endpoint);
    return s;
  }

  static Sockets routed(const std::string& dealer_id) {
    Sockets s;
    const auto endpoint = unique_endpoint();
    s.b = zmq::socket_t(s.context, zmq::socket_type::router);
    s.b.set(zmq::sockopt::router_mandatory, 1);
    s.a = zmq::socket_t(s.context, zmq::socket_type::dealer);
    s.a.set(zmq::sockopt::routing_id, dealer_id);
    s.b.bind(endpoint);
    s.a.connect(endpoint);
    return s;
  }
};

/* Waits (bounded) until `socket` has a message, then reads it; fails the test if none came. */
std::optional<Message> read_one(zmq::socket_t& socket, bool routed, DropCounters& drops) {
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, 2000ms);
  EXPECT_TRUE(item.revents & ZMQ_POLLIN) << "no message arrived";
  bool got_any = false;
  auto m = dpool::read_message(socket, routed, drops, &got_any);
  EXPECT_TRUE(got_any) << "read_message saw nothing";
  return m;
}

/* Sends `frames` as one multipart message, verbatim. */
void send_raw(zmq::socket_t& socket, const std::vector<std::string>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    socket.send(zmq::buffer(frames[i]),
                i + 1 == frames.size() ? zmq::send_flags::none : zmq::send_flags::sndmore);
  }
}

std::string header(std::uint8_t version, std::uint8_t command) {
  return std::string{'D', 'P', static_cast<char>(version), static_cast<char>(command)};
}

std::string header(Command command) {
  return header(dpool::kProtocolVersion, static_cast<std::uint8_t>(command));
}

template <class T>
std::string packed(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return {buffer.data(), buffer.size()};
}

zmq::message_t frame(std::string_view bytes) { return zmq::message_t(bytes.data(), bytes.size()); }

/* Bytes that differ at every position and contain every byte value, NULs included. */
std::string pattern(std::size_t size, unsigned seed) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 131 + seed) & 0xff);
  return out;
}

/* Sends `body` with `payloads` over a PAIR, reads and decodes it. The decoded body must pack to
 * the same bytes as the original (so every field survived) and the payloads must match. */
template <class T>
T round_trip(Command command, const T& body, const std::vector<std::string>& payloads = {}) {
  auto s = Sockets::pair();
  DropCounters drops;
  std::vector<zmq::message_t> frames;
  for (const auto& p : payloads) frames.push_back(frame(p));
  EXPECT_TRUE(dpool::send_message(s.a, "", command, body, std::move(frames)));

  auto m = read_one(s.b, false, drops);
  EXPECT_TRUE(m.has_value());
  if (!m) return T{};
  EXPECT_EQ(m->command, command);
  EXPECT_EQ(m->identity.size(), 0u);
  EXPECT_EQ(m->payloads.size(), payloads.size());
  for (std::size_t i = 0; i < payloads.size() && i < m->payloads.size(); ++i) {
    EXPECT_TRUE(dpool::view(m->payloads[i]) == payloads[i]) << "payload " << i << " differs";
  }
  auto decoded = dpool::decode<T>(*m, drops, "test");
  EXPECT_TRUE(decoded.has_value());
  EXPECT_EQ(drops.total(), 0u);
  if (!decoded) return T{};
  EXPECT_EQ(packed(*decoded), packed(body));
  return *decoded;
}

/* Sends `frames` raw, expects read_message to drop them under `reason`, then checks that a
 * valid HEARTBEAT sent right after is still read (framing resynchronised). */
void expect_dropped(const std::vector<std::string>& frames, DropReason reason) {
  auto s = Sockets::pair();
  DropCounters drops;
  send_raw(s.a, frames);
  EXPECT_FALSE(read_one(s.b, false, drops).has_value());
  EXPECT_EQ(drops.count(reason), 1u) << "reason " << dpool::to_string(reason);
  EXPECT_EQ(drops.total(), 1u);

  dpool::send_message(s.a, "", Command::kHeartbeat, wire::Heartbeat{7, 8, {9}});
  auto next = read_one(s.b, false, drops);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->command, Command::kHeartbeat);
  auto hb = dpool::decode<wire::Heartbeat>(*next, drops, "test");
  ASSERT_TRUE(hb.has_value());
  EXPECT_EQ(hb->instance, 7u);
  EXPECT_EQ(drops.total(), 1u);
}

/* Sends a well-framed HELLO whose body frame is `body`, expects decode<Hello> to refuse it
 * (counted once as kBody), then checks that the next message decodes. */
void expect_body_refused(const std::string& body) {
  auto s = Sockets::pair();
  DropCounters drops;
  send_raw(s.a, {header(Command::kHello), body});
  auto m = read_one(s.b, false, drops);
  ASSERT_TRUE(m.has_value()) << "framing is fine; only the body is bad";
  EXPECT_EQ(m->command, Command::kHello);
  EXPECT_FALSE(dpool::decode<wire::Hello>(*m, drops, "test").has_value());
  EXPECT_EQ(drops.count(DropReason::kBody), 1u);
  EXPECT_EQ(drops.total(), 1u);

  dpool::send_message(s.a, "", Command::kHello, wire::Hello{"host", 42, "name"});
  auto next = read_one(s.b, false, drops);
  ASSERT_TRUE(next.has_value());
  auto hello = dpool::decode<wire::Hello>(*next, drops, "test");
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->pid, 42u);
  EXPECT_EQ(drops.total(), 1u);
}

// ---- Round trips --------------------------------------------------------------------------

TEST(Codec, RoundTripsHello) {
  const auto got = round_trip(Command::kHello, wire::Hello{"host-a", 1234, "my client"});
  EXPECT_EQ(got.host, "host-a");
  EXPECT_EQ(got.pid, 1234u);
  EXPECT_EQ(got.name, "my client");
}

TEST(Codec, RoundTripsReadyWithFunctionsAndTags) {
  wire::Ready ready{"host-b", 99, 16, {"add", "sleep", "fail"}, {{"gpu", "a100"}, {"zone", "eu"}}};
  const auto got = round_trip(Command::kReady, ready);
  EXPECT_EQ(got.credit, 16u);
  EXPECT_EQ(got.functions, ready.functions);
  EXPECT_EQ(got.tags, ready.tags);
}

TEST(Codec, RoundTripsSubmitWithOnePayloadPerTask) {
  wire::Submit submit{{{1, "add", 0}, {2, "mul", 5}, {3, "empty", 1}}};
  const std::vector<std::string> payloads = {pattern(100, 1), pattern(3, 2), ""};
  const auto got = round_trip(Command::kSubmit, submit, payloads);
  ASSERT_EQ(got.tasks.size(), 3u);
  EXPECT_EQ(got.tasks[1].id, 2u);
  EXPECT_EQ(got.tasks[1].function, "mul");
  EXPECT_EQ(got.tasks[1].max_attempts, 5u);
}

TEST(Codec, RoundTripsAccept) {
  const auto got = round_trip(Command::kAccept, wire::Accept{{1, 2, UINT64_MAX}});
  EXPECT_EQ(got.ids, (std::vector<std::uint64_t>{1, 2, UINT64_MAX}));
}

TEST(Codec, RoundTripsTaskBatchWithPayloads) {
  wire::TaskBatch batch{77, {{10, 1, "add"}, {11, 3, "sleep"}}};
  const auto got = round_trip(Command::kTask, batch, {pattern(40, 3), pattern(41, 4)});
  EXPECT_EQ(got.seq, 77u);
  ASSERT_EQ(got.leases.size(), 2u);
  EXPECT_EQ(got.leases[1].task, 11u);
  EXPECT_EQ(got.leases[1].attempt, 3u);
  EXPECT_EQ(got.leases[1].function, "sleep");
}

TEST(Codec, RoundTripsDoneBatchWithEveryStatus) {
  wire::DoneBatch done;
  done.outcomes.push_back({10, 1, dpool::Status::kOk, "", "", 500});
  done.outcomes.push_back({11, 2, dpool::Status::kError, "std::out_of_range", "index 7", 501});
  done.outcomes.push_back({12, 1, dpool::Status::kLost, "", "", 502});
  const auto got = round_trip(Command::kDone, done, {pattern(8, 5), "", ""});
  ASSERT_EQ(got.outcomes.size(), 3u);
  EXPECT_EQ(got.outcomes[1].status, dpool::Status::kError);
  EXPECT_EQ(got.outcomes[1].error_type, "std::out_of_range");
  EXPECT_EQ(got.outcomes[1].error_message, "index 7");
  EXPECT_EQ(got.outcomes[2].status, dpool::Status::kLost);
  EXPECT_EQ(got.outcomes[2].pid, 502u);
}

TEST(Codec, RoundTripsResultBatch) {
  wire::ResultBatch results;
  results.results.push_back({1, dpool::Status::kOk, 1, "", "", "host-c", 600});
  results.results.push_back(
      {2, dpool::Status::kRejected, 0, "Rejected", "no such function", "", 0});
  const auto got = round_trip(Command::kResult, results, {pattern(1000, 6), ""});
  ASSERT_EQ(got.results.size(), 2u);
  EXPECT_EQ(got.results[0].host, "host-c");
  EXPECT_EQ(got.results[1].status, dpool::Status::kRejected);
  EXPECT_EQ(got.results[1].error_message, "no such function");
}

TEST(Codec, RoundTripsAck) {
  const auto got = round_trip(Command::kAck, wire::Ack{{5, 6, 7}});
  EXPECT_EQ(got.ids, (std::vector<std::uint64_t>{5, 6, 7}));
}

TEST(Codec, RoundTripsHeartbeatWithHeldList) {
  const auto got = round_trip(Command::kHeartbeat, wire::Heartbeat{0xfeedface, 12, {3, 1, 2}});
  EXPECT_EQ(got.instance, 0xfeedfaceu);
  EXPECT_EQ(got.last_seq, 12u);
  EXPECT_EQ(got.held, (std::vector<std::uint64_t>{3, 1, 2}));
}

TEST(Codec, RoundTripsDisconnect) {
  const auto got = round_trip(Command::kDisconnect, wire::Disconnect{"shutting down"});
  EXPECT_EQ(got.reason, "shutting down");
}

TEST(Codec, CarriesOneMebibytePayloadByteForByte) {
  const std::string big = pattern(1u << 20, 9);
  round_trip(Command::kResult, wire::ResultBatch{{{1, dpool::Status::kOk, 1, "", "", "h", 1}}},
             {big});
}

// ---- Sending ------------------------------------------------------------------------------

TEST(Codec, DontwaitSendWithNoPeerReturnsFalse) {
  zmq::context_t context;
  zmq::socket_t lonely(context, zmq::socket_type::pair);
  lonely.bind(unique_endpoint());
  std::vector<zmq::message_t> payloads;
  payloads.push_back(frame("payload"));
  EXPECT_FALSE(dpool::send_message(lonely, "", Command::kHeartbeat, wire::Heartbeat{},
                                   std::move(payloads), /*dontwait=*/true));
}

// ---- Routing ids ----------------------------------------------------------------------------

TEST(Codec, RouterSeesRoutingIdAndCanReplyThroughIt) {
  auto s = Sockets::routed("client-7");
  DropCounters drops;
  ASSERT_TRUE(dpool::send_message(s.a, "", Command::kHello, wire::Hello{"h", 1, "n"}));

  auto in = read_one(s.b, true, drops);
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(dpool::identity_of(*in), "client-7");
  EXPECT_EQ(in->command, Command::kHello);
  ASSERT_TRUE(dpool::decode<wire::Hello>(*in, drops, "test").has_value());

  std::vector<zmq::message_t> payloads;
  payloads.push_back(frame("result bytes"));
  ASSERT_TRUE(dpool::send_message(s.b, dpool::identity_of(*in), Command::kAccept,
                                  wire::Accept{{1}}, std::move(payloads)));
  auto out = read_one(s.a, false, drops);
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->command, Command::kAccept);
  EXPECT_EQ(out->identity.size(), 0u);
  ASSERT_EQ(out->payloads.size(), 1u);
  EXPECT_EQ(dpool::view(out->payloads[0]), "result bytes");
  EXPECT_EQ(drops.total(), 0u);
}

TEST(Codec, SendToUnknownRouterPeerReturnsFalse) {
  auto s = Sockets::routed("client-7");
  EXPECT_FALSE(dpool::send_message(s.b, "nobody", Command::kHeartbeat, wire::Heartbeat{}));
}

TEST(Codec, RoutedMessageWithOnlyAHeaderIsAFramingDrop) {
  auto s = Sockets::routed("worker-1");
  DropCounters drops;
  send_raw(s.a, {header(Command::kHeartbeat)});  // the ROUTER adds the id: two frames in all
  EXPECT_FALSE(read_one(s.b, true, drops).has_value());
  EXPECT_EQ(drops.count(DropReason::kFraming), 1u);
  EXPECT_EQ(drops.total(), 1u);
}

// ---- Framing errors -------------------------------------------------------------------------

TEST(Codec, NothingWaitingIsNotADrop) {
  auto s = Sockets::pair();
  DropCounters drops;
  bool got_any = true;
  EXPECT_FALSE(dpool::read_message(s.b, false, drops, &got_any).has_value());
  EXPECT_FALSE(got_any);
  EXPECT_EQ(drops.total(), 0u);
}

TEST(Codec, SingleFrameMessageIsAFramingDrop) {
  expect_dropped({header(Command::kHeartbeat)}, DropReason::kFraming);
}

TEST(Codec, ShortHeaderIsAFramingDrop) {
  expect_dropped({"DP\x01", packed(wire::Heartbeat{})}, DropReason::kFraming);
}

TEST(Codec, LongHeaderIsAFramingDrop) {
  expect_dropped({header(Command::kHeartbeat) + "x", packed(wire::Heartbeat{})},
                 DropReason::kFraming);
}

TEST(Codec, EmptyHeaderIsAFramingDrop) {
  expect_dropped({"", packed(wire::Heartbeat{})}, DropReason::kFraming);
}

TEST(Codec, BadSignatureIsAFramingDrop) {
  std::string bad = header(Command::kHeartbeat);
  bad[0] = 'X';
  expect_dropped({bad, packed(wire::Heartbeat{})}, DropReason::kFraming);
  bad = header(Command::kHeartbeat);
  bad[1] = 'Q';
  expect_dropped({bad, packed(wire::Heartbeat{})}, DropReason::kFraming);
}

TEST(Codec, OtherProtocolVersionIsAVersionDrop) {
  expect_dropped({header(2, 9), packed(wire::Heartbeat{})}, DropReason::kVersion);
  expect_dropped({header(0, 9), packed(wire::Heartbeat{})}, DropReason::kVersion);
}

TEST(Codec, UnknownCommandIsACommandDrop) {
  expect_dropped({header(dpool::kProtocolVersion, 0), packed(wire::Heartbeat{})},
                 DropReason::kCommand);
  expect_dropped({header(dpool::kProtocolVersion, 200), packed(wire::Heartbeat{})},
                 DropReason::kCommand);
  expect_dropped({header(dpool::kProtocolVersion, dpool::kMaxCommand + 1),
                  packed(wire::Heartbeat{})},
                 DropReason::kCommand);
}

TEST(Codec, DropsAreCountedPerReasonAcrossManyMessages) {
  auto s = Sockets::pair();
  DropCounters drops;
  const std::string body = packed(wire::Heartbeat{});
  send_raw(s.a, {header(Command::kHeartbeat)});        // framing
  send_raw(s.a, {"DPX", body});                         // framing
  send_raw(s.a, {header(3, 9), body});                  // version
  send_raw(s.a, {header(dpool::kProtocolVersion, 0), body});    // command
  send_raw(s.a, {header(dpool::kProtocolVersion, 200), body});  // command
  send_raw(s.a, {header(dpool::kProtocolVersion, dpool::kMaxCommand + 1), body});   // command
  dpool::send_message(s.a, "", Command::kAck, wire::Ack{{1}});
  for (int i = 0; i < 6; ++i) EXPECT_FALSE(read_one(s.b, false, drops).has_value()) << i;
  auto ack = read_one(s.b, false, drops);
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->command, Command::kAck);
  EXPECT_EQ(drops.count(DropReason::kFraming), 2u);
  EXPECT_EQ(drops.count(DropReason::kVersion), 1u);
  EXPECT_EQ(drops.count(DropReason::kCommand), 3u);
  EXPECT_EQ(drops.count(DropReason::kBody), 0u);
  EXPECT_EQ(drops.total(), 6u);
}

// ---- Body errors ----------------------------------------------------------------------------

TEST(Codec, BodyThatIsNotMsgpackIsRefused) {
  expect_body_refused("\xc1");            // a byte msgpack never uses
  expect_body_refused("not msgpack at all");  // 'n' is a fixint; the rest is trailing junk
}

TEST(Codec, EmptyBodyIsRefused) { expect_body_refused(""); }

TEST(Codec, TruncatedBodyIsRefused) {
  const std::string whole = packed(wire::Hello{"a-long-host-name", 4242, "a-long-name"});
  expect_body_refused(whole.substr(0, whole.size() - 3));
  expect_body_refused(whole.substr(0, 1));
}

TEST(Codec, BodyWithTrailingBytesIsRefused) {
  expect_body_refused(packed(wire::Hello{"h", 1, "n"}) + "\x01");
}

TEST(Codec, MapBodyIsRefused) {
  expect_body_refused(packed(std::map<std::string, int>{{"host", 1}, {"pid", 2}}));
}

TEST(Codec, ScalarBodyIsRefused) { expect_body_refused(packed(42)); }

TEST(Codec, StringWhereUintExpectedIsRefused) {
  expect_body_refused(packed(std::make_tuple(std::string("h"), std::string("1234"),
                                             std::string("n"))));
}

TEST(Codec, NestedFieldOfWrongTypeIsRefused) {
  // Heartbeat.held must be an array of uints; here it holds a string.
  auto s = Sockets::pair();
  DropCounters drops;
  send_raw(s.a, {header(Command::kHeartbeat),
                 packed(std::make_tuple(1u, 2u, std::vector<std::string>{"x"}))});
  auto m = read_one(s.b, false, drops);
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(dpool::decode<wire::Heartbeat>(*m, drops, "test").has_value());
  EXPECT_EQ(drops.count(DropReason::kBody), 1u);
  EXPECT_EQ(drops.total(), 1u);
}

TEST(Codec, HugeAnnouncedArrayIsRefusedWithoutAllocating) {
  // array32 header announcing 2^32-1 elements, and nothing else: five bytes.
  const std::string hostile("\xdd\xff\xff\xff\xff", 5);
  auto s = Sockets::pair();
  DropCounters drops;
  send_raw(s.a, {header(Command::kHeartbeat), hostile});
  auto m = read_one(s.b, false, drops);
  ASSERT_TRUE(m.has_value());

  g_largest_malloc = 0;
  g_track_malloc = true;
  const auto start = std::chrono::steady_clock::now();
  const auto decoded = dpool::decode<wire::Heartbeat>(*m, drops, "test");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  g_track_malloc = false;

  EXPECT_FALSE(decoded.has_value());
  EXPECT_EQ(drops.count(DropReason::kBody), 1u);
  EXPECT_EQ(drops.total(), 1u);
  EXPECT_LT(elapsed, 500ms);
#if DPOOL_TRACK_MALLOC
  EXPECT_GT(g_largest_malloc.load(), 0u) << "the malloc wrapper is not in use";
  EXPECT_LT(g_largest_malloc.load(), std::size_t{1} << 20)
      << "decode allocated for the announced array before refusing it";
#endif
}

TEST(Codec, HugeAnnouncedStringIsRefused) {
  // str32 header announcing 4 GiB, then nothing.
  expect_body_refused(std::string("\x93\xdb\xff\xff\xff\xff", 6));
}

// ---- Forward compatibility ------------------------------------------------------------------

TEST(Codec, BodyWithExtraTrailingFieldsDecodes) {
  auto s = Sockets::pair();
  DropCounters drops;
  const auto newer = std::make_tuple(std::string("host-n"), 77u, std::string("name-n"),
                                     std::string("a field from a later version"),
                                     std::vector<int>{1, 2, 3});
  send_raw(s.a, {header(Command::kHello), packed(newer)});
  auto m = read_one(s.b, false, drops);
  ASSERT_TRUE(m.has_value());
  auto hello = dpool::decode<wire::Hello>(*m, drops, "test");
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->host, "host-n");
  EXPECT_EQ(hello->pid, 77u);
  EXPECT_EQ(hello->name, "name-n");
  EXPECT_EQ(drops.total(), 0u);
}

TEST(Codec, BodyWithFewerFieldsDecodesWithDefaults) {
  auto s = Sockets::pair();
  DropCounters drops;
  // An older Ready: host, pid, credit only (no functions, no tags).
  send_raw(s.a, {header(Command::kReady), packed(std::make_tuple(std::string("old"), 5u, 8u))});
  // An empty array: every field takes its default.
  send_raw(s.a, {header(Command::kHeartbeat), packed(std::vector<int>{})});

  auto m = read_one(s.b, false, drops);
  ASSERT_TRUE(m.has_value());
  auto ready = dpool::decode<wire::Ready>(*m, drops, "test");
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->host, "old");
  EXPECT_EQ(ready->pid, 5u);
  EXPECT_EQ(ready->credit, 8u);
  EXPECT_TRUE(ready->functions.empty());
  EXPECT_TRUE(ready->tags.empty());

  m = read_one(s.b, false, drops);
  ASSERT_TRUE(m.has_value());
  auto hb = dpool::decode<wire::Heartbeat>(*m, drops, "test");
  ASSERT_TRUE(hb.has_value());
  EXPECT_EQ(hb->instance, 0u);
  EXPECT_EQ(hb->last_seq, 0u);
  EXPECT_TRUE(hb->held.empty());
  EXPECT_EQ(drops.total(), 0u);
}

}  // namespace
