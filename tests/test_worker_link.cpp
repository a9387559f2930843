/* The link between a worker host's supervisor and its processes (worker/src/link.hpp): an
 * AF_UNIX stream socket with dpool's own framing in place of a ZeroMQ PAIR.
 *
 * Two kinds of test:
 *   - WorkerLink: the Link class in this process, on a socketpair, so that every way a stream
 *     can cut a message (partial reads and writes, a full socket, the peer gone) and every cap
 *     can be shown directly;
 *   - WorkerLinkHost: a real dpool-worker on a broker played by the test, with tasks that abuse
 *     their link (tests/link_plugin.cpp): the process is killed, its task reported lost, and the
 *     host keeps serving; large payloads cross both ways intact; replacing processes many
 *     times leaks no descriptor.
 */
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "dpool/client.hpp"
#include "dpool/codec.hpp"
#include "dpool/protocol.hpp"
#include "link.hpp"
#include "support/fake_broker.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;
using detail::Link;
using Clock = std::chrono::steady_clock;

namespace {

struct LinkPair {
  std::unique_ptr<Link> a, b;
  explicit LinkPair(detail::LinkLimits limits = {}) {
    auto [x, y] = detail::make_link_pair();
    a = std::make_unique<Link>(std::move(x), limits);
    b = std::make_unique<Link>(std::move(y), limits);
  }
};

/* Writes from `from` (never blocking) and reads at `to` until `want` messages came, or a few
 * seconds passed, or the reader's link is no longer open. */
std::vector<Message> pump(Link& from, Link& to, std::size_t want) {
  std::vector<Message> got;
  const auto deadline = Clock::now() + 20s * kSlow;
  while (got.size() < want && Clock::now() < deadline) {
    EXPECT_TRUE(from.flush(false));
    if (to.receive(got) != Link::State::kOpen) break;
  }
  return got;
}

zmq::message_t frame(const std::string& bytes) {
  return zmq::message_t(bytes.data(), bytes.size());
}

std::string pattern(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 7919) >> 5);
  return s;
}

/* A message's first octets as a hostile child might write them: the prefix and payload sizes. */
std::string prefix(std::uint8_t command, std::uint32_t body,
                   const std::vector<std::uint64_t>& sizes, std::string signature = "DP",
                   std::uint8_t version = kProtocolVersion) {
  std::string s = signature + static_cast<char>(version) + static_cast<char>(command);
  const auto count = static_cast<std::uint32_t>(sizes.size());
  s.append(reinterpret_cast<const char*>(&body), sizeof body);
  s.append(reinterpret_cast<const char*>(&count), sizeof count);
  for (auto size : sizes) s.append(reinterpret_cast<const char*>(&size), sizeof size);
  return s;
}

/* Writes raw octets into the end of a link that `link`'s peer reads. */
void write_raw(int fd, const std::string& bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

}  // namespace

// ---- The Link class, in process --------------------------------------------------------------

TEST(WorkerLink, CarriesMessagesOfEveryShape) {
  LinkPair link;
  link.a->send(Command::kReady, wire::Ready{});
  std::vector<zmq::message_t> payloads;
  for (const auto& p : {std::string(), std::string("hello"), pattern(100'000)})
    payloads.push_back(frame(p));
  wire::TaskBatch batch{0, {{1, 1, "f", 0, 0}, {2, 1, "g", 0, 0}, {3, 1, "h", 0, 0}}};
  link.a->send(Command::kTask, batch, std::move(payloads));
  link.a->send(Command::kDisconnect, wire::Disconnect{"bye"});

  auto got = pump(*link.a, *link.b, 3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].command, Command::kReady);
  EXPECT_TRUE(got[0].payloads.empty());
  EXPECT_EQ(got[1].command, Command::kTask);
  DropCounters drops;
  auto decoded = decode<wire::TaskBatch>(got[1], drops, "test");
  ASSERT_TRUE(decoded);
  ASSERT_EQ(decoded->leases.size(), 3u);
  EXPECT_EQ(decoded->leases[2].function, "h");
  ASSERT_EQ(got[1].payloads.size(), 3u);
  EXPECT_EQ(view(got[1].payloads[0]), "");
  EXPECT_EQ(view(got[1].payloads[1]), "hello");
  EXPECT_EQ(view(got[1].payloads[2]), pattern(100'000));
  EXPECT_EQ(got[2].command, Command::kDisconnect);
  EXPECT_FALSE(link.a->pending());
}

TEST(WorkerLink, ALargePayloadCrossesAFullSocketWithoutBlockingTheWriter) {
  LinkPair link;
  const auto big = pattern(std::size_t{48} << 20);
  std::vector<zmq::message_t> payloads;
  payloads.push_back(frame(big));
  link.a->send(Command::kDone, wire::DoneBatch{{wire::Outcome{}}}, std::move(payloads));
  // Nobody reads yet: the socket takes a few hundred KiB and the rest stays queued.
  ASSERT_TRUE(link.a->flush(false));
  EXPECT_TRUE(link.a->pending());

  auto got = pump(*link.a, *link.b, 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].payloads.size(), 1u);
  EXPECT_EQ(got[0].payloads[0].size(), big.size());  // one frame of the payload's size
  EXPECT_TRUE(view(got[0].payloads[0]) == big);
  EXPECT_FALSE(link.a->pending());
}

TEST(WorkerLink, AMessageArrivingOneOctetAtATimeIsPutBackTogether) {
  // The octets a Link writes for one message, captured from a plain socket.
  auto [mine, theirs] = detail::make_link_pair();
  Link writer(std::move(mine));
  std::vector<zmq::message_t> payloads;
  payloads.push_back(frame("payload"));
  payloads.push_back(frame(""));
  writer.send(Command::kDone, wire::DoneBatch{{wire::Outcome{}, wire::Outcome{}}},
              std::move(payloads));
  ASSERT_TRUE(writer.flush(true));
  std::string bytes(4096, '\0');
  const auto n = ::recv(theirs.get(), bytes.data(), bytes.size(), 0);
  ASSERT_GT(n, 0);
  bytes.resize(static_cast<std::size_t>(n));

  auto [in, reader_end] = detail::make_link_pair();
  Link reader(std::move(reader_end));
  std::vector<Message> got;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    EXPECT_TRUE(got.empty()) << "a message before its last octet, at " << i;
    write_raw(in.get(), bytes.substr(i, 1));
    ASSERT_EQ(reader.receive(got), Link::State::kOpen);
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].command, Command::kDone);
  ASSERT_EQ(got[0].payloads.size(), 2u);
  EXPECT_EQ(view(got[0].payloads[0]), "payload");
  EXPECT_EQ(view(got[0].payloads[1]), "");
}

TEST(WorkerLink, AMessageOverTheCapsOrWithABadHeaderBreaksTheLink) {
  const detail::LinkLimits small{4096, 8, 1u << 20, 2u << 20};
  const auto done = static_cast<std::uint8_t>(Command::kDone);
  const std::pair<std::string, const char*> cases[] = {
      {prefix(done, 10, {}, "XY"), "signature"},
      {prefix(done, 10, {}, "DP", 2), "protocol version 2"},
      {prefix(0, 10, {}), "command 0"},
      {prefix(done, 5000, {}), "a body of 5000 octets"},
      {prefix(done, 10, std::vector<std::uint64_t>(9, 1)), "9 payloads"},
      {prefix(done, 10, {1, (1u << 20) + 1}), "a payload of 1048577 octets"},
      {prefix(done, 10, {1u << 20, 1u << 20, 1}), "payloads of 2097153 octets"},
      {prefix(done, 10, {std::uint64_t{1} << 40}),
       "a payload of 1099511627776"},  // nothing that size is allocated
  };
  for (const auto& [bytes, why] : cases) {
    LinkPair link(small);
    write_raw(link.a->fd(), bytes);
    std::vector<Message> got;
    EXPECT_EQ(link.b->receive(got), Link::State::kBroken) << why;
    EXPECT_NE(link.b->why().find(why), std::string::npos) << link.b->why();
    EXPECT_TRUE(got.empty());
    // Broken stays broken: nothing after it is read.
    EXPECT_EQ(link.b->receive(got), Link::State::kBroken);
  }
}

TEST(WorkerLink, MessagesBeforeABrokenOneAreDelivered) {
  LinkPair link;
  link.a->send(Command::kReady, wire::Ready{});
  ASSERT_TRUE(link.a->flush(true));
  write_raw(link.a->fd(), "garbage, not a message");
  std::vector<Message> got;
  EXPECT_EQ(link.b->receive(got), Link::State::kBroken);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].command, Command::kReady);
}

TEST(WorkerLink, EachSideSeesThePeerGone) {
  {
    LinkPair link;
    link.a.reset();
    std::vector<Message> got;
    EXPECT_EQ(link.b->receive(got), Link::State::kClosed);
    // A write to a peer that is gone fails, without SIGPIPE.
    link.b->send(Command::kReady, wire::Ready{});
    EXPECT_FALSE(link.b->flush(false));
    EXPECT_FALSE(link.b->pending());
  }
  {
    LinkPair link;  // the peer goes in the middle of a message
    const auto part = prefix(static_cast<std::uint8_t>(Command::kDone), 100, {});
    write_raw(link.a->fd(), part + "abc");
    link.a.reset();
    std::vector<Message> got;
    // The first read may stop at what was there; the end of file is seen by the next, as the
    // supervisor's loop polls again.
    auto state = link.b->receive(got);
    if (state == Link::State::kOpen) state = link.b->receive(got);
    EXPECT_EQ(state, Link::State::kClosed);
    EXPECT_TRUE(got.empty());
  }
}

TEST(WorkerLink, BothEndsAreClosedOnExec) {
  auto [a, b] = detail::make_link_pair();
  for (int fd : {a.get(), b.get()}) EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

// ---- A real worker host ----------------------------------------------------------------------

namespace {

/* A worker host with the link-abusing tasks beside the test plugin's. */
struct LinkHost : Host {
  explicit LinkHost(int count, std::vector<std::string> extra = {})
      : Host(count, with_plugin(std::move(extra))) {}
  static std::vector<std::string> with_plugin(std::vector<std::string> extra) {
    extra.insert(extra.end(), {"--plugin", DPOOL_TEST_LINK_PLUGIN});
    return extra;
  }
};

/* The task `key`, a cube, runs and answers: the host still serves. */
void expect_serving(LinkHost& host, std::uint64_t key) {
  host.broker.send_task(lease(key, "cube"), pack_args(3));
  auto d = host.broker.next_outcome();
  ASSERT_TRUE(d) << host.worker.log();
  EXPECT_EQ(d->outcome.task, key);
  EXPECT_EQ(d->outcome.status, Status::kOk) << d->outcome.error_message;
  EXPECT_EQ(unpack_as<long long>(d->payload), 27);
}

/* Runs task 1, which abuses the link, and checks that its process was killed for it. */
void expect_lost_for(LinkHost& host, const std::string& function, const std::string& args,
                     const std::string& why) {
  host.broker.send_task(lease(1, function), args);
  auto d = host.broker.next_outcome();
  ASSERT_TRUE(d) << host.worker.log();
  EXPECT_EQ(d->outcome.status, Status::kLost) << d->outcome.error_message;
  EXPECT_EQ(d->outcome.error_type, "WorkerLost");
  EXPECT_NE(d->outcome.error_message.find(why), std::string::npos) << d->outcome.error_message;
  EXPECT_NE(d->outcome.pid, 0u);
  EXPECT_TRUE(host.worker.running());
}

std::size_t open_descriptors(pid_t pid) {
  std::error_code ec;
  std::size_t n = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace

TEST(WorkerLinkHost, AProcessThatWritesGarbageToItsLinkIsKilledAndItsTaskLost) {
  LinkHost host(1);
  expect_lost_for(host, "link_write", pack_args(std::string("garbage, garbage, garbage"), 60'000),
                  "broke its link to the supervisor: a message without the 'DP' signature");
  expect_serving(host, 2);
  EXPECT_NE(host.worker.log().find("broke its link"), std::string::npos) << host.worker.log();
}

TEST(WorkerLinkHost, AProcessThatAnnouncesAnOversizedPayloadIsKilledAndItsTaskLost) {
  LinkHost host(1);
  const auto huge = prefix(static_cast<std::uint8_t>(Command::kDone), 16, {std::uint64_t{2} << 30});
  expect_lost_for(host, "link_write", pack_args(huge, 60'000),
                  "a payload of 2147483648 octets, over the link's cap of 1");
  expect_serving(host, 2);
}

TEST(WorkerLinkHost, AProcessThatClosesItsLinkIsKilledAndItsTaskLost) {
  LinkHost host(1);
  expect_lost_for(host, "link_close", pack_args(60'000), "closed its link");
  expect_serving(host, 2);
}

TEST(WorkerLinkHost, LargePayloadsCrossBothWaysIntact) {
  LinkHost host(2);
  const std::size_t size = (std::size_t{32} << 20) / kSlow;
  const auto data = pattern(size);
  for (std::uint64_t key = 1; key <= 4; ++key)
    host.broker.send_task(lease(key, "sized"), pack_args(std::uint64_t{size}, data));
  const std::string reversed(data.rbegin(), data.rend());
  for (int i = 0; i < 4; ++i) {
    auto d = host.broker.next_outcome(60s * kSlow);
    ASSERT_TRUE(d) << host.worker.log();
    ASSERT_EQ(d->outcome.status, Status::kOk) << d->outcome.error_message;
    EXPECT_TRUE(unpack_as<std::string>(d->payload) == reversed) << "task " << d->outcome.task;
  }
}

// A process packs a result into a buffer sized from its function's last result (executor.cpp):
// results larger, smaller and empty after a large one must come back whole, in one process.
TEST(WorkerLinkHost, ResultsOfOneFunctionMayGrowAndShrink) {
  LinkHost host(1);
  const std::size_t big = (std::size_t{16} << 20) / kSlow;
  const std::size_t sizes[] = {big, 10, 0, big + 1, big / 2, 3 * big, 1};
  std::uint64_t key = 0;
  for (const auto size : sizes) {
    const auto data = pattern(size);
    host.broker.send_task(lease(++key, "sized"), pack_args(std::uint64_t{size}, data));
    auto d = host.broker.next_outcome(60s * kSlow);
    ASSERT_TRUE(d) << host.worker.log();
    ASSERT_EQ(d->outcome.status, Status::kOk) << d->outcome.error_message;
    EXPECT_TRUE(unpack_as<std::string>(d->payload) == std::string(data.rbegin(), data.rend()))
        << "size " << size;
  }
}

TEST(WorkerLinkHost, ReplacingProcessesManyTimesLeaksNoDescriptor) {
  LinkHost host(2, {"--max-tasks-per-child", "1"});
  std::uint64_t key = 0;
  std::set<std::uint32_t> pids;
  const auto run = [&](int n) {
    for (int i = 0; i < n; ++i) host.broker.send_task(lease(++key, "cube"), pack_args(2));
    for (int i = 0; i < n; ++i) {
      auto d = host.broker.next_outcome();
      ASSERT_TRUE(d) << host.worker.log();
      pids.insert(d->outcome.pid);
    }
  };
  const auto zygote = [&] {
    const auto kids = children_of(host.worker.pid());
    return kids.empty() ? pid_t{-1} : kids.front();
  };
  // Quiet: two processes that have run nothing yet, so neither is about to exit. A process that
  // ran its one task may still be listed while it exits, after its descriptors closed: the
  // supervisor and the zygote then count one link and one pipe fewer than they hold at rest.
  const auto settled = [&] {
    const auto now = task_processes(host.worker.pid());
    return now.size() == 2 && std::none_of(now.begin(), now.end(), [&](pid_t p) {
             return pids.count(static_cast<std::uint32_t>(p)) > 0;
           });
  };
  run(4);
  ASSERT_TRUE(wait_for(settled, 20s * kSlow));
  const auto supervisor_before = open_descriptors(host.worker.pid());
  const auto zygote_before = open_descriptors(zygote());
  run(100 / kSlow);
  EXPECT_EQ(pids.size(), key) << "each task in a process of its own";
  ASSERT_TRUE(wait_for(settled, 20s * kSlow));
  // Replacements may still be on their way: the counts come back, or something leaked. A count
  // taken while a spawn was under way holds that spawn's link for a moment, so "back" means no
  // more than before; a leak would show as one more per replacement, a hundred here.
  EXPECT_TRUE(wait_for(
      [&] { return settled() && open_descriptors(host.worker.pid()) <= supervisor_before; },
      10s * kSlow))
      << open_descriptors(host.worker.pid()) << " descriptors open in the supervisor, "
      << supervisor_before << " before";
  EXPECT_TRUE(wait_for([&] { return settled() && open_descriptors(zygote()) <= zygote_before; },
                       10s * kSlow))
      << open_descriptors(zygote()) << " descriptors open in the zygote, " << zygote_before
      << " before";
}
