/* The broker's per-client limits and message size limits (docs/protocol.md, "Per-client
 * limits"), driven by hand-written peers that ignore them as a buggy or hostile client would.
 *
 * Covers: the limits announced in the HEARTBEAT that answers HELLO; tasks past the count limit
 * refused with a `rejected` RESULT (QueueFull) that names the limit, neither ACCEPTed nor kept,
 * and counted; results not yet ACKed counting until their ACK; the byte limit, and a task that
 * could never fit (TaskTooLarge); a flood that never ACKs leaving the broker holding no more
 * than the limit; a job's tasks limited apart from its submitter's; REPORT's limits and each
 * session's use; a frame over max_message_size disconnecting its sender while another client
 * keeps working; the decoding limits taken from the config; and the config's refusal of
 * nonsense values, naming the key.
 *
 * The broker under test and the way absences are shown: support/broker_fixture.hpp.
 */
#include <zmq.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpool/broker.hpp"
#include "dpool/codec.hpp"
#include "dpool/config.hpp"
#include "dpool/protocol.hpp"
#include "dpool/quota.hpp"
#include "support/broker_fixture.hpp"
#include "support/config_files.hpp"
#include "support/fake_peer.hpp"

namespace {

using namespace std::chrono_literals;
using dpool::BrokerStats;
using dpool::Command;
using dpool::JobOp;
using dpool::Status;
using dpool::test::BrokerProtocol;
using dpool::test::FakeClient;
namespace wire = dpool::wire;

class BrokerLimits : public BrokerProtocol {
 protected:
  static dpool::BrokerConfig limited(std::uint32_t tasks, std::uint64_t bytes = 1ULL << 30) {
    auto c = default_config();
    c.max_tasks_per_client = tasks;
    c.max_bytes_per_client = bytes;
    return c;
  }
};

/* Tasks first..last of a function no worker offers, one SUBMIT, each payload `size` bytes. */
void submit_range(FakeClient& c, std::uint64_t first, std::uint64_t last, std::size_t size = 1,
                  const std::string& function = "nobody") {
  std::vector<wire::TaskSpec> specs;
  std::vector<std::string> payloads;
  for (auto id = first; id <= last; ++id) {
    specs.push_back({id, function, 0});
    payloads.emplace_back(size, 'x');
  }
  c.submit(specs, payloads);
}

std::set<std::uint64_t> ids(std::uint64_t first, std::uint64_t last) {
  std::set<std::uint64_t> out;
  for (auto id = first; id <= last; ++id) out.insert(id);
  return out;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(BrokerLimits, AnnouncesTheClientLimitsInTheHeartbeatAnsweringHello) {
  auto config = limited(123, 4096);
  config.max_message_size = 1u << 20;
  start(config);
  auto c = client("hello");
  c->hello();
  auto hb = c->expect<wire::Heartbeat>(Command::kHeartbeat);
  ASSERT_TRUE(hb);
  EXPECT_EQ(hb->body.max_tasks, 123u);
  EXPECT_EQ(hb->body.max_bytes, 4096u);
  EXPECT_EQ(hb->body.max_message, 1u << 20);
}

TEST_F(BrokerLimits, RefusesTasksPastTheCountLimitWithAResultNamingTheLimit) {
  start(limited(3));
  auto c = client("greedy");
  c->hello();
  submit_range(*c, 1, 5);
  const auto accepted = c->expect_accepted({1, 2, 3});
  EXPECT_EQ(std::set<std::uint64_t>(accepted.begin(), accepted.end()), ids(1, 3))
      << "refused tasks were ACCEPTed";
  auto refused = c->expect_results({4, 5});
  ASSERT_EQ(refused.size(), 2u);
  for (auto& [id, r] : refused) {
    EXPECT_EQ(r.meta.status, Status::kRejected);
    EXPECT_EQ(r.meta.error_type, dpool::kQueueFull);
    EXPECT_TRUE(contains(r.meta.error_message, "queue full: the broker holds 3 tasks"))
        << r.meta.error_message;
    EXPECT_TRUE(contains(r.meta.error_message, "max_tasks_per_client")) << r.meta.error_message;
  }
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.limited == 2 && s.tasks == 3; }));
}

TEST_F(BrokerLimits, CountsResultsAgainstTheLimitUntilTheyAreAcked) {
  start(limited(2));
  auto c = client("slow-acker");
  c->hello();
  submit_range(*c, 1, 2, 1, "work");
  ASSERT_EQ(c->expect_accepted({1, 2}).size(), 2u);
  auto w = worker("w");
  w->ready(10, {"work"});
  auto leases = w->expect_leases(2);
  ASSERT_EQ(leases.size(), 2u);
  for (auto& [lease, arg] : leases) w->finish(lease, "done");
  ASSERT_EQ(c->expect_results({1, 2}).size(), 2u);
  // Both results wait for their ACK: the broker still holds two of this client's tasks.
  submit_range(*c, 3, 3, 1, "work");
  auto refused = c->expect_results({3});
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[3].meta.error_type, dpool::kQueueFull);
  c->ack({1});
  submit_range(*c, 3, 3, 1, "work");
  EXPECT_EQ(c->expect_accepted({3}), std::vector<std::uint64_t>{3}) << "an ACK did not make room";
}

TEST_F(BrokerLimits, RefusesTasksPastTheByteLimitAndTasksThatCanNeverFit) {
  start(limited(1000, 4096));
  auto c = client("bytes");
  c->hello();
  submit_range(*c, 1, 1, 3000);
  ASSERT_EQ(c->expect_accepted({1}), std::vector<std::uint64_t>{1});
  submit_range(*c, 2, 2, 2000);
  submit_range(*c, 3, 3, 5000);
  auto refused = c->expect_results({2, 3});
  ASSERT_EQ(refused.size(), 2u);
  EXPECT_EQ(refused[2].meta.error_type, dpool::kQueueFull);
  EXPECT_TRUE(contains(refused[2].meta.error_message, "3,000 bytes"))
      << refused[2].meta.error_message;
  EXPECT_TRUE(contains(refused[2].meta.error_message, "4,096 bytes per client"))
      << refused[2].meta.error_message;
  EXPECT_EQ(refused[3].meta.error_type, dpool::kTaskTooLarge);
  EXPECT_TRUE(contains(refused[3].meta.error_message, "max_bytes_per_client"))
      << refused[3].meta.error_message;
  submit_range(*c, 4, 4, 1000);  // still fits beside the first
  EXPECT_EQ(c->expect_accepted({4}), std::vector<std::uint64_t>{4});
}

TEST_F(BrokerLimits, AFloodThatNeverAcksLeavesTheBrokerHoldingOnlyTheLimit) {
  start(limited(10));
  auto flood = client("flood");
  flood->hello();
  for (std::uint64_t batch = 0; batch < 10; ++batch)
    submit_range(*flood, batch * 1000 + 1, batch * 1000 + 1000);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.limited == 9990; }, 10s))
      << "limited " << broker_->stats().limited;
  EXPECT_EQ(broker_->stats().tasks, 10u);
  // Refused again and again (the same ids), the flood still holds nothing more.
  submit_range(*flood, 1, 1000);
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.limited == 9990 + 990; }));
  EXPECT_EQ(broker_->stats().tasks, 10u);
  auto other = client("bystander");
  other->hello();
  EXPECT_TRUE(probe(*other, 1)) << "another client was refused too";
}

TEST_F(BrokerLimits, LimitsAJobApartFromTheSessionThatSubmitsIt) {
  start(limited(3));
  auto c = client("submitter");
  c->hello();
  std::vector<wire::TaskSpec> specs;
  std::vector<std::string> payloads;
  for (std::uint64_t i = 0; i < 5; ++i) {
    wire::TaskSpec s{100 + i, "nobody", 0};
    s.job = "j-limits";
    s.index = i;
    specs.push_back(s);
    payloads.emplace_back("x");
  }
  c->submit(specs, payloads);
  EXPECT_EQ(c->expect_accepted({100, 101, 102}), (std::vector<std::uint64_t>{100, 101, 102}));
  auto refused = c->expect_results({103, 104});
  ASSERT_EQ(refused.size(), 2u);
  EXPECT_TRUE(contains(refused[103].meta.error_message, "job j-limits"))
      << refused[103].meta.error_message;
  c->ack({103, 104});
  // The job's three tasks are not the session's: its own tasks still fit.
  submit_range(*c, 1, 3);
  EXPECT_EQ(c->expect_accepted({1, 2, 3}), (std::vector<std::uint64_t>{1, 2, 3}));
}

TEST_F(BrokerLimits, RefusesATaskThatWouldStartAJobPastMaxJobs) {
  auto config = default_config();
  config.max_jobs = 2;
  start(config);
  auto c = client("many-jobs");
  c->hello();
  auto job_task = [&](std::uint64_t id, const std::string& job) {
    wire::TaskSpec s{id, "nobody", 0};
    s.job = job;
    c->submit({s}, {"x"});
  };
  job_task(1, "j-1");
  job_task(2, "j-2");
  EXPECT_EQ(c->expect_accepted({1, 2}), (std::vector<std::uint64_t>{1, 2}));
  job_task(3, "j-3");
  auto refused = c->expect_results({3});
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[3].meta.error_type, "QueueFull");
  EXPECT_TRUE(contains(refused[3].meta.error_message, "2 detached jobs"))
      << refused[3].meta.error_message;
  job_task(4, "j-1");  // a job already held still takes tasks
  EXPECT_EQ(c->expect_accepted({4}), (std::vector<std::uint64_t>{4}));
  c->send(Command::kJob, wire::JobRequest{9, "j-2", JobOp::kForget, 0});
  ASSERT_TRUE(c->expect<wire::JobInfo>(Command::kJobInfo));
  job_task(5, "j-3");
  EXPECT_EQ(c->expect_accepted({5}), (std::vector<std::uint64_t>{5}))
      << "room again once one is forgotten";
}

TEST_F(BrokerLimits, ReportsTheLimitsAndEachClientsUse) {
  start(limited(50, 1u << 20));
  auto c = client("busy");
  c->hello();
  submit_range(*c, 1, 60, 100);
  ASSERT_EQ(c->expect_results(ids(51, 60)).size(), 10u);
  auto asker = client("asker");
  asker->hello();
  asker->send(Command::kStatus, wire::StatusRequest{7});
  auto report = asker->expect<wire::Report>(Command::kReport);
  ASSERT_TRUE(report);
  const auto& r = report->body;
  EXPECT_EQ(r.max_tasks_per_client, 50u);
  EXPECT_EQ(r.max_bytes_per_client, 1u << 20);
  EXPECT_EQ(r.max_message_size, 1u << 30);
  EXPECT_EQ(r.limited, 10u);
  ASSERT_EQ(r.sessions.size(), 2u);
  EXPECT_EQ(r.sessions[0].host, "test-host");  // the fullest first
  EXPECT_EQ(r.sessions[0].tasks, 50u);
  EXPECT_EQ(r.sessions[0].bytes, 5000u);
  EXPECT_EQ(r.sessions[0].refused, 10u);
  EXPECT_EQ(r.sessions[1].tasks, 0u);
}

/* A DEALER of our own with a socket monitor, to see ZeroMQ drop its connection. */
class MonitoredDealer {
 public:
  MonitoredDealer(zmq::context_t& context, const std::string& endpoint)
      : socket_(context, zmq::socket_type::dealer), events_(context, zmq::socket_type::pair) {
    socket_.set(zmq::sockopt::routing_id, "c-oversized");
    socket_.set(zmq::sockopt::linger, 0);
    const std::string monitor = "inproc://limits-monitor";
    if (zmq_socket_monitor(socket_.handle(), monitor.c_str(),
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0) {
      throw zmq::error_t();
    }
    events_.connect(monitor);
    socket_.connect(endpoint);
  }
  zmq::socket_t& socket() { return socket_; }
  /* Waits for the next event of `kind`; false after `timeout`. */
  bool wait_event(int kind, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{events_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 50ms);
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t event, address;
      (void)events_.recv(event);
      (void)events_.recv(address);
      std::uint16_t id = 0;
      std::memcpy(&id, event.data(), sizeof id);
      if (id == kind) return true;
    }
    return false;
  }

 private:
  zmq::socket_t socket_;
  zmq::socket_t events_;
};

TEST_F(BrokerLimits, AFrameOverTheMessageSizeDisconnectsItsSenderOnly) {
  auto config = default_config();
  config.max_message_size = 64 * 1024;
  start(config);
  auto good = client("good");
  good->hello();
  MonitoredDealer bad(context_, endpoint_);
  ASSERT_TRUE(bad.wait_event(ZMQ_EVENT_CONNECTED, 2s));
  const std::string big(100 * 1024, 'x');
  dpool::send_message(bad.socket(), {}, Command::kSubmit,
                      wire::Submit{{wire::TaskSpec{1, "nobody", 0}}}, [&] {
                        std::vector<zmq::message_t> frames;
                        frames.emplace_back(big.data(), big.size());
                        return frames;
                      }());
  EXPECT_TRUE(bad.wait_event(ZMQ_EVENT_DISCONNECTED, 3s))
      << "a 100 KiB frame did not cost its sender the link";
  EXPECT_TRUE(probe(*good, 1)) << "a legitimate client stopped being served";
  ASSERT_TRUE(wait_stats([](const BrokerStats& s) { return s.clients >= 1; }));
  EXPECT_EQ(broker_->stats().tasks, 1u) << "the oversized task was taken";  // the probe only
  // A frame under the limit goes through.
  submit_range(*good, 2, 2, 60 * 1024);
  EXPECT_EQ(good->expect_accepted({2}), std::vector<std::uint64_t>{2});
}

TEST_F(BrokerLimits, DecodesBodiesWithTheConfiguredLimits) {
  auto config = default_config();
  config.decode_max_array = 1024;
  start(config);
  auto c = client("acker");
  c->hello();
  ASSERT_TRUE(probe(*c, 1));
  const auto before = broker_->stats().dropped;
  std::vector<std::uint64_t> many(2000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = 1000 + i;
  c->ack(many);  // 2000 ids: over this broker's 1024
  ASSERT_TRUE(wait_stats([&](const BrokerStats& s) { return s.dropped == before + 1; }));
  many.resize(1000);
  c->ack(many);
  EXPECT_TRUE(probe(*c, 2));
  EXPECT_EQ(broker_->stats().dropped, before + 1) << "an ACK within the limit was dropped";
}

// ---- Configuration ----------------------------------------------------------------------------

TEST(LimitsConfig, ReadsEveryLimitFromTheBrokerFile) {
  dpool::test::TempDir dir;
  const auto file = dir.write("broker.yaml",
                              "max_tasks_per_client: 100\n"
                              "max_bytes_per_client: 64KiB\n"
                              "max_message_size: 256MiB\n"
                              "decode_max_array: 4096\n"
                              "decode_max_map: 128\n"
                              "decode_max_str: 2MiB\n"
                              "decode_max_depth: 8\n");
  dpool::BrokerConfig c;
  dpool::load_config_file(file, c);
  EXPECT_EQ(c.max_tasks_per_client, 100u);
  EXPECT_EQ(c.max_bytes_per_client, 64u * 1024);
  EXPECT_EQ(c.max_message_size, 256u << 20);
  EXPECT_EQ(c.decode_max_array, 4096u);
  EXPECT_EQ(c.decode_max_map, 128u);
  EXPECT_EQ(c.decode_max_str, 2u << 20);
  EXPECT_EQ(c.decode_max_depth, 8u);
}

TEST(LimitsConfig, DefaultsAreTheDecodersOwn) {
  const dpool::BrokerConfig c;
  const dpool::DecodeLimits d;
  EXPECT_EQ(c.decode_max_array, d.max_array);
  EXPECT_EQ(c.decode_max_map, d.max_map);
  EXPECT_EQ(c.decode_max_str, d.max_str);
  EXPECT_EQ(c.decode_max_depth, d.max_depth);
  EXPECT_EQ(c.max_tasks_per_client, 1'000'000u);
  EXPECT_EQ(c.max_bytes_per_client, 1ULL << 30);
  EXPECT_EQ(c.max_message_size, 1ULL << 30) << "bench/ sends 16 MiB payloads";
}

TEST(LimitsConfig, RefusesNonsenseValuesNamingTheKey) {
  dpool::test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> bad{
      {"max_tasks_per_client: 0", "max_tasks_per_client: must be 1 or more"},
      {"max_tasks_per_client: -5", "max_tasks_per_client"},
      {"max_bytes_per_client: 10", "max_bytes_per_client: must be 1KiB or more"},
      {"max_bytes_per_client: lots", "max_bytes_per_client"},
      {"max_message_size: 1KiB", "max_message_size: must be 64KiB or more"},
      {"decode_max_array: 10", "decode_max_array: must be 1024 or more"},
      {"decode_max_map: 0", "decode_max_map"},
      {"decode_max_str: 1KiB", "decode_max_str"},
      {"decode_max_depth: 1000", "decode_max_depth: must be at most 64"},
  };
  for (const auto& [line, fragment] : bad) {
    SCOPED_TRACE(line);
    const auto file = dir.write("bad.yaml", "bind: tcp://127.0.0.1:0\n" + line + "\n");
    dpool::test::expect_config_error<dpool::BrokerConfig>(file, 2, {fragment});
  }
}

TEST(LimitsConfig, ReadsTheClientsOnFull) {
  dpool::test::TempDir dir;
  dpool::ClientConfig c;
  EXPECT_EQ(c.on_full, dpool::ClientConfig::OnFull::kWait);
  dpool::load_config_file(dir.write("c.yaml", "on_full: error\n"), c);
  EXPECT_EQ(c.on_full, dpool::ClientConfig::OnFull::kError);
  dpool::test::expect_config_error<dpool::ClientConfig>(
      dir.write("bad.yaml", "window: 5\non_full: drop\n"), 2,
      {"on_full: must be wait or error, got 'drop'"});
}

}  // namespace
