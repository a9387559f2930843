/* Hostile peers (docs/protocol.md, section 7): a broker under attack still serves a real job,
 * exactly once and correctly, counts what it dropped, and keeps its memory and its log bounded.
 *
 * Real processes: a dpool-broker, a worker host running tests/test_worker.cpp, and a
 * dpool::Client in this process running a job of a few thousand tasks. While the job runs,
 * attackers on threads of this process hit the broker's port (support/hostile.hpp):
 *   - malformed dpool messages of every kind (framing, version, command, body, payload count)
 *     and well-formed ones out of order, from a peer that never said HELLO or READY;
 *   - a registered worker that forges outcomes for every task key near the job's, both for
 *     tasks it never had and for leases the real worker holds, and a client that ACKs and
 *     cancels the job's task ids from its own session;
 *   - 64 MiB frames and bodies with strings over the decode limit;
 *   - hundreds of connections opened and dropped (some at once, some mid-message, some after
 *     HELLO or READY), and raw TCP connections below ZMTP: random bytes, a bad greeting, a frame
 *     cut off or announcing 64 MiB, half a greeting left hanging.
 * Task keys are consecutive from a random start, so a decoy task leased to the forging worker
 * just before the job tells it where the job's keys are.
 *
 * Every attacker finishes a first round before the job is submitted and goes on until the job
 * is done, so the whole job runs under fire. Afterwards: the broker is alive and answers a fresh
 * client, every drop reason sent shows in its log's counters ("[n reason drops so far]"), those
 * lines stay rate-limited, and its resident memory stayed under a generous bound. Sanitizer
 * builds (DPOOL_SANITIZED) run fewer tasks and connections: the same attacks, less volume.
 */
#include <signal.h>

#include <deque>
#include <functional>
#include <future>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "support/collector.hpp"
#include "support/fake_peer.hpp"
#include "support/hostile.hpp"
#include "support/process.hpp"

namespace dpool::test {
namespace {

using namespace hostile;

#ifdef DPOOL_SANITIZED
constexpr std::size_t kTasks = 1000;
constexpr std::size_t kConnections = 200;
constexpr std::uint64_t kRssLimitKib = 1536 * 1024;  // ASan's shadow and quarantine included
// A sanitized broker checks a forged DONE ten to twenty times slower while the attackers'
// own sending costs them little more: paced as in a plain build, they left the job 48 of
// 1,000 results in two minutes under ThreadSanitizer on two cores.
constexpr int kPaceFactor = 20;
#else
constexpr std::size_t kTasks = 3000;
constexpr std::size_t kConnections = 500;
constexpr std::uint64_t kRssLimitKib = 384 * 1024;
constexpr int kPaceFactor = 1;
#endif
constexpr auto kHeartbeat = 200ms;
constexpr std::size_t kHangers = 50;        // raw TCP connections left hanging mid-greeting
constexpr std::size_t kHuge = 64u << 20;     // an oversized frame
constexpr std::size_t kForgedPerDone = 512;  // outcomes in one forged DONE

/* Attackers on threads of their own. Each is a function that attacks in rounds and calls
 * `more(pause)` after each: that counts the round, paces the attacker (so that the machine's
 * cores still run the job), and says whether to go on. */
class Attackers {
 public:
  using More = std::function<bool(std::chrono::milliseconds)>;
  Attackers() = default;
  Attackers(const Attackers&) = delete;
  Attackers& operator=(const Attackers&) = delete;
  ~Attackers() { stop(); }

  void spawn(const std::string& name, std::function<void(const More&)> attack) {
    auto* rounds = &rounds_.emplace_back(0);
    threads_.emplace_back([this, name, attack = std::move(attack), rounds] {
      const More more = [this, rounds](std::chrono::milliseconds pause) {
        rounds->fetch_add(1);
        std::this_thread::sleep_for(pause * kPaceFactor);
        return !stop_.load();
      };
      try {
        attack(more);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "attacker " << name << " failed: " << e.what();
        rounds->fetch_add(1);  // do not keep the test waiting for it
      }
    });
  }
  /* Waits until every attacker has finished one round. */
  bool wait_first_rounds(std::chrono::milliseconds timeout) {
    return wait_for(
        [this] {
          return std::all_of(rounds_.begin(), rounds_.end(),
                             [](const auto& r) { return r.load() > 0; });
        },
        timeout);
  }
  void stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::atomic<bool> stop_{false};
  std::deque<std::atomic<std::uint64_t>> rounds_;
  std::vector<std::thread> threads_;
};

int port_of(const std::string& endpoint) {
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

/* Malformed messages from a peer with a session of sorts, and messages out of order from one
 * that never introduced itself. */
void send_malformed(const std::string& endpoint, zmq::context_t& context,
                    const Attackers::More& more) {
  auto garbage = dealer(context, endpoint, "hostile-garbage");
  auto stranger = dealer(context, endpoint, "hostile-stranger");
  const auto malformed = malformed_messages();
  const auto out_of_order = out_of_order_messages();
  do {
    for (const auto& [reason, frames] : malformed) send_frames(garbage, frames);
    for (const auto& frames : out_of_order) send_frames(stranger, frames);
    // Each connection's messages are read in order: an answer means the round was read.
    send_frames(garbage, {header(Command::kStatus), pack(wire::StatusRequest{7})});
    EXPECT_TRUE(await_command(garbage, Command::kReport, 60s));
    send_frames(stranger, {header(Command::kHeartbeat), pack(wire::Heartbeat{})});
    EXPECT_TRUE(await_command(stranger, Command::kDisconnect, 60s));
  } while (more(5ms));
}

/* Outcomes for every key in [first, last) but the decoy's own, at attempts 1 and 2 and with
 * every status a worker sends: ok ones carry a wrong value, which the job's check would see. */
std::uint64_t forge_outcomes(FakeWorker& forger, std::uint64_t first, std::uint64_t last,
                             std::uint64_t own) {
  static constexpr Status kStatuses[] = {Status::kOk,      Status::kError,     Status::kLost,
                                         Status::kTimeout, Status::kCancelled, Status::kReturned};
  std::uint64_t messages = 0;
  wire::DoneBatch batch;
  std::vector<std::string> payloads;
  auto flush = [&] {
    forger.send(Command::kDone, batch, payloads);
    ++messages;
    batch.outcomes.clear();
    payloads.clear();
  };
  for (std::uint64_t key = first; key < last; ++key) {
    if (key == own) continue;
    for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
      wire::Outcome o;
      o.task = key;
      o.attempt = attempt;
      o.status = kStatuses[(key + attempt) % std::size(kStatuses)];
      o.pid = 666;
      batch.outcomes.push_back(o);
      payloads.push_back(o.status == Status::kOk ? pack(-1LL) : std::string());
      if (batch.outcomes.size() == kForgedPerDone) flush();
    }
  }
  if (!batch.outcomes.empty()) flush();
  return messages;
}

/* A registered worker forging outcomes around the job's keys, a client acknowledging and
 * cancelling the job's ids in its own session, and a peer that mixes both roles. */
void forge(const std::string& endpoint, zmq::context_t& context, FakeWorker& forger,
           FakeClient& bait, std::uint64_t decoy_key, std::atomic<std::uint64_t>& forged,
           const Attackers::More& more) {
  auto mixed = dealer(context, endpoint, "hostile-mixed");
  std::vector<std::uint64_t> job_ids;
  for (std::uint64_t id = 0; id <= kTasks + 8; ++id) job_ids.push_back(id);
  wire::Outcome odd;
  odd.task = decoy_key + 1;
  odd.attempt = 1;
  odd.status = static_cast<Status>(9);  // no such status
  const auto one_forged = pack(wire::DoneBatch{{odd}});
  wire::Ready decoy_ready;
  decoy_ready.host = forger.host();
  decoy_ready.credit = 1;
  decoy_ready.functions = {"hostile-decoy"};
  do {
    forged += forge_outcomes(forger, decoy_key - 4, decoy_key + kTasks + 64, decoy_key);
    forger.send(Command::kDone, wire::DoneBatch{{odd}}, {""});                  // body
    forger.send(Command::kDone, wire::DoneBatch{{odd, odd}}, {std::string()});  // payloads
    bait.ack(job_ids);
    bait.send(Command::kCancel, wire::Cancel{job_ids});
    wire::Ready ready;
    ready.host = "hostile-mixed";
    ready.credit = 1;
    send_frames(mixed, {header(Command::kReady), pack(ready)});
    send_frames(mixed, {header(Command::kHello), pack(wire::Hello{"hostile-mixed", 1, "mixed"})});
    send_frames(mixed, {header(Command::kDone), one_forged, ""});
    send_frames(mixed, {header(Command::kDisconnect), pack(wire::Disconnect{"gone"})});
    send_frames(mixed, {header(Command::kDone), one_forged, ""});  // unregistered now
    drain(mixed);
    // Paced by the broker, not by this machine: its heartbeats come from its loop, which reads
    // what the forger sent in order (a READY from a known worker keeps its leases).
    forger.send(Command::kReady, decoy_ready);
    forger.wait_ticks(2, 60s);
  } while (more(10ms));
}

/* Bodies whose strings exceed the decode limit every round, and every 20th round 64 MiB
 * frames: alone, as a payload the body does not list, and as a body. */
void send_oversized(const std::string& endpoint, zmq::context_t& context,
                    const Attackers::More& more) {
  auto big = dealer(context, endpoint, "hostile-big");
  const std::string huge(kHuge, 'x');
  const auto long_host = pack(wire::Hello{std::string((1u << 20) + 1, 'h'), 1, "big"});
  std::size_t round = 0;
  do {
    if (round++ % 20 == 0) {
      send_frames(big, {huge});
      send_frames(big, {header(Command::kSubmit), pack(wire::Submit{}), huge});
      send_frames(big, {header(Command::kHello), huge});
    }
    send_frames(big, {header(Command::kHello), long_host});
    // Paced by the broker's answer (none if a message size limit cut the connection).
    send_frames(big, {header(Command::kStatus), pack(wire::StatusRequest{round})});
    (void)await_command(big, Command::kReport, 10s);
  } while (more(20ms));
}

/* Connections opened and dropped in batches (one a round) until stopped, and at least
 * kConnections of them: at once, after a message, mid-message, after HELLO or READY (once the
 * broker answered them). Counts the HELLOs and READYs sent and the broker's answers. */
void storm(const std::string& endpoint, zmq::context_t& context, const Attackers::More& more,
           std::pair<std::size_t, std::size_t>& introduced_answered) {
  constexpr std::size_t kBatch = 50;
  const auto malformed = malformed_messages();
  wire::Ready ready;
  ready.host = "hostile-storm";
  ready.credit = 1;  // and no functions: it must never be leased the job's tasks
  auto& [introduced, answered] = introduced_answered;
  for (std::size_t start = 0;; start += kBatch) {
    std::vector<zmq::socket_t> peers;
    std::vector<std::size_t> awaiting;  // indexes into peers that wait for an answer
    for (std::size_t i = start; i < start + kBatch; ++i) {
      const auto variant = i % 6;
      const bool introduces = variant == 1 || variant == 2;
      auto s = dealer(context, endpoint, "hostile-storm-" + std::to_string(i),
                      introduces ? 1000ms : 0ms);
      if (variant == 1)
        send_frames(s, {header(Command::kHello), pack(wire::Hello{"storm", 1, "storm"})});
      if (variant == 2) send_frames(s, {header(Command::kReady), pack(ready)});
      if (variant == 3) send_frames(s, malformed[i % malformed.size()].second);
      if (variant == 4) send_frames(s, {header(Command::kStatus), pack(wire::StatusRequest{i})});
      if (variant == 5)
        s.send(zmq::buffer(header(Command::kHello)), zmq::send_flags::sndmore);  // never ends
      if (introduces) {
        awaiting.push_back(peers.size());
        ++introduced;
      }
      peers.push_back(std::move(s));
    }
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (auto i : awaiting) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      peers[i].set(zmq::sockopt::rcvtimeo, static_cast<int>(std::max<long long>(1, left.count())));
      zmq::message_t reply;
      if (peers[i].recv(reply)) ++answered;
    }
    peers.clear();  // every socket of the batch closes
    if (!more(20ms) && start + kBatch >= kConnections) break;
  }
}

/* Below ZMTP: random bytes, a greeting with an unknown mechanism, a message cut off after its
 * first frame, a frame announcing 64 MiB and sending three bytes, half a greeting left open. */
void send_raw_tcp(int port, const Attackers::More& more) {
  std::mt19937 random(8);
  std::vector<RawTcp> hanging;
  std::string bad_mechanism = zmtp_greeting();
  bad_mechanism.replace(12, 7, "GARBAGE");
  const auto hello = pack(wire::Hello{"tcp", 1, "tcp"});
  std::size_t n = 0;
  do {
    std::string noise(1 + random() % 4096, '\0');
    // Never 0xff: that would announce 8-octet ZMTP 1.0 sizes, which make ZeroMQ try to allocate
    // them, and sanitizers abort a process on an impossible allocation before ZeroMQ can refuse it.
    for (auto& c : noise) c = static_cast<char>(random() % 255);
    RawTcp(port).send(noise);
    RawTcp(port).send(bad_mechanism);
    const auto handshake = zmtp_greeting() + zmtp_ready("hostile-tcp-" + std::to_string(++n));
    RawTcp(port).send(handshake + zmtp_frame(header(Command::kHello), true) +
                      zmtp_frame(hello, false).substr(0, hello.size() / 2));
    const auto handshake2 = zmtp_greeting() + zmtp_ready("hostile-tcp-" + std::to_string(++n));
    RawTcp(port).send(handshake2 + zmtp_frame(header(Command::kHello), true) +
                      zmtp_frame("abc", false, false, kHuge));
    if (hanging.size() < kHangers) {
      RawTcp t(port);
      t.send(zmtp_greeting().substr(0, 5));
      hanging.push_back(std::move(t));
    }
  } while (more(10ms));
}

/* One task on a fresh client: the broker still serves newcomers. */
long long square_on_fresh_client(const std::string& endpoint) {
  Client client(client_config(endpoint));
  std::promise<TaskResult> promise;
  auto future = promise.get_future();
  client.submit("square", pack_args(7LL),
                [&promise](TaskResult&& r) { promise.set_value(std::move(r)); });
  if (future.wait_for(30s) != std::future_status::ready)
    throw std::runtime_error("no result in time");
  return future.get().as<long long>("square");
}

TEST(HostilePeers, TheBrokerSurvivesCountsItsDropsAndTheJobCompletesExactlyOnce) {
  const auto started = std::chrono::steady_clock::now();
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", kHeartbeat);
  auto worker = start_worker(broker.endpoint, 2, kHeartbeat);
  zmq::context_t context(1);

  // The decoy: a worker offering a function only the bait asks for, so it gets one lease.
  FakeWorker forger(context, broker.endpoint, "hostile-forger", kHeartbeat);
  forger.ready(1, {"hostile-decoy"});
  FakeClient bait(context, broker.endpoint, "hostile-bait", kHeartbeat);
  bait.hello();
  bait.submit(1, "hostile-decoy", pack_args());
  const auto decoy = forger.expect_leases(1, 10s);
  ASSERT_EQ(decoy.size(), 1u) << broker.process.log();
  const auto decoy_key = decoy[0].first.task;

  std::atomic<std::uint64_t> forged{0};
  std::pair<std::size_t, std::size_t> storm_answers;  // written by its attacker, read after stop()
  Attackers attackers;
  attackers.spawn("malformed",
                  [&](const auto& more) { send_malformed(broker.endpoint, context, more); });
  attackers.spawn("forger", [&](const auto& more) {
    forge(broker.endpoint, context, forger, bait, decoy_key, forged, more);
  });
  attackers.spawn("oversized",
                  [&](const auto& more) { send_oversized(broker.endpoint, context, more); });
  attackers.spawn("storm", [&](const auto& more) {
    storm(broker.endpoint, context, more, storm_answers);
  });
  attackers.spawn("raw-tcp",
                  [&](const auto& more) { send_raw_tcp(port_of(broker.endpoint), more); });
  ASSERT_TRUE(attackers.wait_first_rounds(120s));

  Collector results(kTasks);
  Client client(client_config(broker.endpoint));
  const auto submitted = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < kTasks; ++i) {
    client.submit("slow_square", pack_args(static_cast<long long>(i), 1), results.slot(i));
  }
  std::uint64_t peak_kib = 0;
  const bool complete = wait_for([&] {
    peak_kib = std::max(peak_kib, rss_kib(broker.process.pid()));
    return results.done() >= kTasks;
  }, 120s);
  const auto job_time = std::chrono::steady_clock::now() - submitted;
  attackers.stop();

  // The job: every result once, each the right one, whatever was forged meanwhile.
  ASSERT_TRUE(complete) << results.done() << " of " << kTasks << " results arrived";
  EXPECT_EQ(results.not_exactly_once(), 0u);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < kTasks; ++i) {
    const auto& r = results.result(i);
    if (!r.ok() || r.as<long long>("slow_square") != static_cast<long long>(i * i)) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "results not ok or not the task's own value";

  // The broker: alive, answering a newcomer, having counted what it refused.
  ASSERT_TRUE(broker.process.running()) << broker.process.log();
  EXPECT_EQ(square_on_fresh_client(broker.endpoint), 49);
  EXPECT_GE(storm_answers.first, kConnections / 3);
  EXPECT_EQ(storm_answers.second, storm_answers.first)
      << "every HELLO and READY of the storm is answered";
  Client observer(client_config(broker.endpoint));
  auto report_future = observer.status();
  ASSERT_EQ(report_future.wait_for(30s), std::future_status::ready);
  const auto report = report_future.get();
  EXPECT_GE(report.dropped, forged.load()) << "each forged DONE costs at least one counted drop";

  // By reason: each one's first drop is logged with its count (later ones at most once a second).
  const std::set<std::string> reasons{"framing",  "version",      "command", "body",
                                      "payloads", "unknown-peer", "stale"};
  LoggedDrops logged;
  const bool all_logged = wait_for([&] {
    logged = logged_drops(broker.process.log());
    return std::all_of(reasons.begin(), reasons.end(),
                       [&](const auto& r) { return logged.count[r] > 0; });
  }, 5s);
  EXPECT_TRUE(all_logged) << broker.process.log().substr(0, 20000);
  std::uint64_t logged_sum = 0;
  for (const auto& [reason, n] : logged.count) logged_sum += n;
  EXPECT_LE(logged_sum, report.dropped);
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started)
          .count();
  for (const auto& [reason, lines] : logged.lines) {
    EXPECT_LE(lines, static_cast<std::uint64_t>(seconds) + 2)
        << reason << " drops must be logged at most once a second";
  }
  const auto log_size = broker.process.log().size();
  EXPECT_LT(log_size, 1u << 20) << "the attack set the log's pace";

  // Memory: bounded while under attack and after it.
  EXPECT_GT(peak_kib, 0u);
  EXPECT_LT(peak_kib, kRssLimitKib);
  EXPECT_LT(rss_kib(broker.process.pid()), kRssLimitKib);
  RecordProperty("broker_peak_rss_kib", std::to_string(peak_kib));
  RecordProperty("forged_done_messages", std::to_string(forged.load()));
  std::printf(
      "job %.2f s under attack; broker peak RSS %llu KiB, %llu forged DONEs, %llu drops, log %zu "
      "bytes\n",
      std::chrono::duration<double>(job_time).count(), static_cast<unsigned long long>(peak_kib),
      static_cast<unsigned long long>(forged.load()),
      static_cast<unsigned long long>(report.dropped), log_size);
}

/* A worker's host name is the peer's own text, and a peer may register and leave as fast as
 * it can send: neither may forge a line of the broker's log or set its size. */
TEST(HostilePeers, AWorkerCannotForgeOrFloodTheBrokerLogWithItsRegistrations) {
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", kHeartbeat);
  zmq::context_t context(1);
  auto peer = dealer(context, broker.endpoint, "hostile-registrations");
  wire::Ready ready;
  ready.host =
      "h\n2001-01-01T00:00:00.000 broker[1] warning dropped a message (auth) from x: forged "
      "[999 auth drops so far]\n" +
      std::string(64u << 10, 'h');
  ready.credit = 1;
  constexpr int kRegistrations = 200;
  for (int i = 0; i < kRegistrations; ++i) {
    send_frames(peer, {header(Command::kReady), pack(ready)});
    send_frames(peer, {header(Command::kDisconnect), pack(wire::Disconnect{"again"})});
  }
  // The broker answers in order: the REPORT comes after it handled every registration.
  send_frames(peer, {header(Command::kStatus), pack(wire::StatusRequest{1})});
  ASSERT_TRUE(await_command(peer, Command::kReport, 30s)) << "no REPORT";
  const auto log = broker.process.log();
  EXPECT_EQ(logged_drops(log).count.count("auth"), 0u) << "a log line forged by a host name";
  EXPECT_LT(log.size(), 32u << 10)
      << kRegistrations << " registrations of a 64 KiB host name made a log of " << log.size()
      << " bytes";
  // The lines left out are said by the next one let through, in a later second.
  const bool said = wait_for([&] {
    send_frames(peer, {header(Command::kReady), pack(ready)});
    send_frames(peer, {header(Command::kDisconnect), pack(wire::Disconnect{"again"})});
    return broker.process.log().find("not logged]") != std::string::npos;
  }, 10s);
  EXPECT_TRUE(said) << broker.process.log().substr(0, 4000);
}

}  // namespace
}  // namespace dpool::test

namespace dpool::test {
namespace {

/* Registered workers that write DONEs faster than the broker can check them (each holds 512
 * forged outcomes): what waits for the broker is bounded per connection (its receive queue
 * holds 100 messages, then TCP pushes back on that peer alone), not by its memory. Without
 * that bound the broker reached 760 MB here in 4 s when it fell behind; with it, about
 * 4 x 100 x 0.5 MB. */
TEST(HostilePeers, AFloodingPeerIsHeldBackNotBuffered) {
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", kHeartbeat);
  zmq::context_t context(1);
  // Several connections: the broker reads them in turn, so the backlog a slow read lets
  // pile up grows with their number.
  constexpr int kFlooders = 4;
  std::vector<zmq::socket_t> floods;
  for (int f = 0; f < kFlooders; ++f) {
    auto& flood = floods.emplace_back(
        flooder(context, broker.endpoint, "w-hostile-flood-" + std::to_string(f)));
    wire::Ready ready;
    ready.host = "flood";
    ready.credit = 1;
    ready.functions = {"nothing_here"};
    send_frames(flood, {header(Command::kReady), pack(ready)});
  }
  wire::DoneBatch batch;
  for (std::uint64_t k = 0; k < kForgedPerDone; ++k) {
    wire::Outcome o;
    o.task = (k + 1) * 7919;
    o.attempt = 1;
    o.status = Status::kError;
    o.error_message = std::string(1024, 'e');
    batch.outcomes.push_back(o);
  }
  std::vector<std::string> frames{header(Command::kDone), pack(batch)};
  frames.resize(2 + kForgedPerDone);  // one empty payload per outcome
  const auto message_bytes = frames[1].size();
  std::uint64_t sent = 0, peak_kib = 0;
  const auto end = std::chrono::steady_clock::now() + 4s;
  while (std::chrono::steady_clock::now() < end) {
    for (auto& flood : floods) {
      // A message is taken whole or not at all (HWM is checked on its first frame).
      bool all = true;
      for (std::size_t i = 0; i < frames.size() && all; ++i) {
        const auto flags =
            i + 1 == frames.size() ? zmq::send_flags::none : zmq::send_flags::sndmore;
        all = flood.send(zmq::buffer(frames[i]), flags).has_value();
      }
      if (all) ++sent;
    }
    peak_kib = std::max(peak_kib, rss_kib(broker.process.pid()));
  }
  std::printf("flood: %llu DONEs of %zu KiB sent; broker peak RSS %llu KiB\n",
              static_cast<unsigned long long>(sent), message_bytes >> 10,
              static_cast<unsigned long long>(peak_kib));
  EXPECT_LT(peak_kib, kRssLimitKib) << sent << " DONEs sent";
  auto other = dealer(context, broker.endpoint, "another-client");
  send_frames(other, {header(Command::kStatus), pack(wire::StatusRequest{1})});
  EXPECT_TRUE(await_command(other, Command::kReport, 30s)) << "another peer is still answered";
}

}  // namespace
/* Peers that ask and never read: each sends STATUS as fast as the broker takes it, while its
 * own socket reads nothing (a one-message queue, a 4 KiB kernel buffer). Idle sessions make
 * each REPORT a few KiB. With no bound on what waits to be sent, every REPORT stayed in the
 * broker: 470 MB after 4 s, and growing. Now at most 1,000 messages wait per peer (30 MB
 * here), the rest are counted as unsent, and another peer is still answered. */
TEST(HostilePeers, APeerThatAsksAndNeverReadsIsNotQueuedForWithoutEnd) {
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", kHeartbeat);
  zmq::context_t context(1);
  constexpr int kIdleSessions = 300;  // rows of every REPORT
  std::vector<zmq::socket_t> idle;
  for (int i = 0; i < kIdleSessions; ++i) {
    idle.push_back(dealer(context, broker.endpoint, "idle-session-" + std::to_string(i)));
    send_frames(idle.back(),
                {header(Command::kHello), pack(wire::Hello{"idle-host", 1000u + i, "idle"})});
  }
  auto probe = dealer(context, broker.endpoint, "sendq-probe");
  send_frames(probe, {header(Command::kStatus), pack(wire::StatusRequest{1})});
  ASSERT_TRUE(await_command(probe, Command::kReport, 30s));

  constexpr int kAskers = 4;
  std::vector<zmq::socket_t> askers;
  for (int a = 0; a < kAskers; ++a) {
    askers.push_back(flooder(context, broker.endpoint, "never-reads-" + std::to_string(a), false));
  }
  const auto request = pack(wire::StatusRequest{2});
  const auto status = header(Command::kStatus);
  // Flood for 4 s past the moment the broker first refused a send (a sanitized broker answers
  // ten times slower, so filling the askers' queues takes it longer), at most 60 s.
  std::uint64_t sent = 0, peak_kib = 0;
  const auto started = std::chrono::steady_clock::now();
  auto end = started + 60s;
  auto next_probe = started;
  bool filled = false;
  for (auto now = started; now < end; now = std::chrono::steady_clock::now()) {
    for (auto& s : askers) {
      for (int i = 0; i < 64; ++i) {
        if (!s.send(zmq::buffer(status), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
          break;
        s.send(zmq::buffer(request), zmq::send_flags::none);
        ++sent;
      }
    }
    peak_kib = std::max(peak_kib, rss_kib(broker.process.pid()));
    if (peak_kib >= kRssLimitKib) break;  // unbounded after all: no need to wait for the deadline
    if (!filled && now >= next_probe) {
      send_frames(probe, {header(Command::kStatus), pack(wire::StatusRequest{3})});
      next_probe = now + 250ms;
    }
    if (auto r = await_body<wire::Report>(probe, Command::kReport, 0ms);
        r && r->unsent > 0 && !filled) {
      filled = true;
      end = std::min(end, now + 4s);
    }
    std::this_thread::sleep_for(1ms);
  }
  // Another peer is still answered, behind whatever the askers sent last.
  send_frames(probe, {header(Command::kStatus), pack(wire::StatusRequest{4})});
  const auto report = await_body<wire::Report>(probe, Command::kReport, 30s);
  peak_kib = std::max(peak_kib, rss_kib(broker.process.pid()));
  std::printf("never-reading askers: %llu STATUS sent in %.1f s; broker peak RSS %llu KiB\n",
              static_cast<unsigned long long>(sent),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
              static_cast<unsigned long long>(peak_kib));
  ASSERT_TRUE(report) << "another peer is still answered";
  EXPECT_TRUE(filled) << sent << " STATUS sent: the askers' queues never filled";
  EXPECT_GT(report->unsent, 0u);
  EXPECT_LT(peak_kib, kRssLimitKib) << sent << " STATUS sent";
  EXPECT_TRUE(broker.process.running()) << broker.process.log();
}

}  // namespace dpool::test
