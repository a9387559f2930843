/* Worker hosts that never break: hard time limits, chunk items retried in place, the stderr
 * tail of a dead process, max_memory_per_child, deaths by SIGKILL nobody here sent, and the
 * drain on SIGTERM.
 *
 * Two kinds of test, both on real worker processes (dpool-worker with the test plugin):
 *   - WorkerLimits: the worker talks to a broker played by the test (a ROUTER socket), so each
 *     test sees exactly the outcomes, heartbeats and DISCONNECT the worker sends;
 *   - WorkerLimitsEndToEnd: a real dpool-broker and dpool::Client, to show that every task of
 *     a job still completes exactly once when a worker drains or is killed mid-job.
 * Timings are asserted with generous bounds only (shared machines, sanitizers); the lateness
 * of time-limit kills is printed for whoever wants to know it.
 */
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "dpool/client.hpp"
#include "dpool/codec.hpp"
#include "dpool/protocol.hpp"
#include "support/collector.hpp"
#include "support/fake_broker.hpp"
#include "support/process.hpp"
#include "stderr_tail.hpp"

using namespace dpool;
using namespace dpool::test;
using Clock = std::chrono::steady_clock;

namespace {

/* Packs a chunk's payload: an array of argument arrays, each already packed by pack_args. */
std::string pack_chunk(const std::vector<std::string>& calls) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> packer(out);
  packer.pack_array(static_cast<std::uint32_t>(calls.size()));
  for (const auto& c : calls) out.write(c.data(), c.size());
  return {out.data(), out.size()};
}

/* Sends task 1, a call that runs for a minute, and waits until it has started. */
bool start_long_task(Host& host, const TempDir& dir) {
  const auto started = dir.path() + "/long-task-started";
  host.broker.send_task(lease(1, "slow_once"), pack_args(started, 60'000));
  return wait_for([&] { return std::filesystem::exists(started); }, 20s * kSlow);
}

int exit_code(const std::optional<int>& status) {
  if (!status) return -1;
  return WIFEXITED(*status) ? WEXITSTATUS(*status) : 128 + WTERMSIG(*status);
}

}  // namespace

// ---- The stderr tail, in process ----------------------------------------------------------

TEST(WorkerLimits, TheStderrTailKeepsTheLastTwentyLinesAndAtMostFourKiB) {
  detail::StderrTail tail;
  tail.append("one\nt");
  tail.append("wo\n");
  EXPECT_EQ(tail.text(), "one\ntwo\n");
  for (int i = 0; i < 100; ++i) tail.append("line " + std::to_string(i) + "\n");
  auto text = tail.text();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 20) << text;
  EXPECT_EQ(text.rfind("line 80\n", 0), 0u) << text;
  // Long lines: at most 4 KiB, starting at a line start.
  detail::StderrTail wide;
  for (int i = 0; i < 10; ++i) wide.append(std::to_string(i) + std::string(999, 'x') + "\n");
  text = wide.text();
  EXPECT_LE(text.size(), 4096u);
  EXPECT_EQ(text.rfind("6xxx", 0), 0u) << text.substr(0, 10);
  // One line longer than the tail: its end.
  detail::StderrTail huge;
  huge.append(std::string(100'000, 'y') + "END");
  EXPECT_EQ(huge.text().size(), 4096u);
  EXPECT_EQ(huge.text().substr(4093), "END");
}

// ---- Time limits ------------------------------------------------------------------------

TEST(WorkerLimits, ATaskPastItsTimeLimitIsKilledAndTheWorkerKeepsServing) {
  Host host(1);
  const auto sent = Clock::now();
  host.broker.send_tasks({lease(1, "nap_ms", 300), lease(2, "nap_ms"), lease(3, "nap_ms", 10'000)},
                         {pack_args(60'000), pack_args(1), pack_args(2)});
  std::map<std::uint64_t, FakeBroker::Done> by_task;
  for (int i = 0; i < 3; ++i) {
    auto d = host.broker.next_outcome();
    ASSERT_TRUE(d) << host.worker.log();
    by_task[d->outcome.task] = *d;
  }
  const auto& d = by_task[1];
  const auto late = std::chrono::duration_cast<std::chrono::milliseconds>(d.at - sent) - 300ms;
  std::printf("time limit 300 ms: outcome %lld ms after it\n",
              static_cast<long long>(late.count()));
  EXPECT_EQ(d.outcome.status, Status::kTimeout);
  EXPECT_EQ(d.outcome.error_type, "Timeout");
  EXPECT_NE(d.outcome.error_message.find("over its 0.3 s time limit"), std::string::npos)
      << d.outcome.error_message;
  EXPECT_NE(d.outcome.pid, 0u);
  EXPECT_TRUE(d.payload.empty());
  EXPECT_LT(late, 5s * kSlow) << "the kill came far too late";
  // The tasks queued behind it run, uncharged, in the process that replaced it at once.
  for (std::uint64_t t : {2, 3}) {
    EXPECT_EQ(by_task[t].outcome.status, Status::kOk) << by_task[t].outcome.error_message;
    EXPECT_NE(unpack_as<int>(by_task[t].payload), static_cast<int>(d.outcome.pid));
  }
  EXPECT_TRUE(host.worker.running());
}

TEST(WorkerLimits, TheLimitOfAChunkAppliesToEachItem) {
  Host host(1);
  // Three items of 400 ms each: 1.2 s in all, but each under its 1 s limit.
  host.broker.send_task(lease(1, "nap_ms", 1000, 3),
                        pack_chunk({pack_args(400), pack_args(400), pack_args(400)}));
  auto ok = host.broker.next_outcome();
  ASSERT_TRUE(ok) << host.worker.log();
  EXPECT_EQ(ok->outcome.status, Status::kOk) << ok->outcome.error_message;

  // The second item hangs: the chunk is killed in it.
  host.broker.send_task(lease(2, "nap_ms", 1000, 3),
                        pack_chunk({pack_args(10), pack_args(60'000), pack_args(10)}));
  auto d = host.broker.next_outcome();
  ASSERT_TRUE(d) << host.worker.log();
  EXPECT_EQ(d->outcome.status, Status::kTimeout);
  EXPECT_NE(d->outcome.error_message.find("in item 2 of 3"), std::string::npos)
      << d->outcome.error_message;
  EXPECT_NE(d->outcome.error_message.find("1 s time limit per item"), std::string::npos)
      << d->outcome.error_message;
}

// ---- Chunk items retried in place ----------------------------------------------------------

TEST(WorkerLimits, AChunkItemThatThrowsIsRunAgainInPlaceUpToTheRetries) {
  Host host(1);
  auto l = lease(1, "flaky", 0, 3);
  l.retries = 2;
  l.retry_delay_ms = 20;
  // Item 1 fails twice then succeeds; item 2 fails five times (more than 1 + 2 runs); item 3
  // never fails.
  const auto start = Clock::now();
  host.broker.send_task(l,
                        pack_chunk({pack_args(std::string("a"), 2), pack_args(std::string("b"), 5),
                                    pack_args(std::string("c"), 0)}));
  auto d = host.broker.next_outcome();
  ASSERT_TRUE(d) << host.worker.log();
  ASSERT_EQ(d->outcome.status, Status::kOk) << d->outcome.error_message;
  // Pauses of 20 and 40 ms before the retries of each failing item.
  EXPECT_GE(d->at - start, 100ms);
  auto items = msgpack::unpack(d->payload.data(), d->payload.size());
  const auto& array = items.get().via.array;
  ASSERT_EQ(array.size, 3u);
  EXPECT_EQ(array.ptr[0].via.array.ptr[0].as<int>(), 0);
  EXPECT_EQ(array.ptr[0].via.array.ptr[1].as<int>(), 3);  // the third call succeeded
  EXPECT_EQ(array.ptr[1].via.array.ptr[0].as<int>(), 1);
  EXPECT_NE(array.ptr[1].via.array.ptr[2].as<std::string>().find("b failed on call 3"),
            std::string::npos);
  EXPECT_EQ(array.ptr[2].via.array.ptr[0].as<int>(), 0);
  EXPECT_EQ(array.ptr[2].via.array.ptr[1].as<int>(), 1);
}

// ---- Crashes: stderr tail, SIGKILL from elsewhere ---------------------------------------------

TEST(WorkerLimits, ACrashOutcomeCarriesTheLastLinesTheProcessWroteToStderr) {
  Host host(1);
  host.broker.send_task(lease(1, "scream_and_abort"),
                        pack_args(std::string("the-last-words-of-task-1")));
  auto d = host.broker.next_outcome();
  ASSERT_TRUE(d) << host.worker.log();
  EXPECT_EQ(d->outcome.status, Status::kLost);
  EXPECT_EQ(d->outcome.error_type, "WorkerLost");
  EXPECT_NE(d->outcome.error_message.find("SIGABRT"), std::string::npos)
      << d->outcome.error_message;
  const auto& tail = d->outcome.stderr_tail;
  EXPECT_NE(tail.find("the-last-words-of-task-1\n"), std::string::npos) << tail;
  EXPECT_NE(tail.find("noise line 30\n"), std::string::npos) << tail;
  EXPECT_EQ(tail.find("noise line 1\n"), std::string::npos)
      << "the tail keeps the last lines only:\n"
      << tail;
  EXPECT_LE(tail.size(), 4096u);
  // The child's stderr still reaches the worker's own.
  EXPECT_TRUE(wait_for(
      [&] { return host.worker.log().find("the-last-words-of-task-1") != std::string::npos; }, 5s));
}

TEST(WorkerLimits, ATimedOutOutcomeCarriesTheStderrTailToo) {
  Host host(1);
  host.broker.send_task(lease(1, "scream_and_nap", 500),
                        pack_args(std::string("still-working-on-it"), 60'000));
  auto d = host.broker.next_outcome();
  ASSERT_TRUE(d) << host.worker.log();
  EXPECT_EQ(d->outcome.status, Status::kTimeout);
  EXPECT_NE(d->outcome.stderr_tail.find("still-working-on-it\n"), std::string::npos)
      << d->outcome.stderr_tail;
  // What an earlier process of the same slot wrote is not this one's tail.
  host.broker.send_task(lease(2, "nap_ms", 300), pack_args(60'000));
  auto quiet = host.broker.next_outcome();
  ASSERT_TRUE(quiet) << host.worker.log();
  EXPECT_EQ(quiet->outcome.status, Status::kTimeout);
  EXPECT_EQ(quiet->outcome.stderr_tail.find("still-working-on-it"), std::string::npos)
      << quiet->outcome.stderr_tail;
}

TEST(WorkerLimits, ASigkillTheSupervisorDidNotSendIsReportedAsAPossibleOutOfMemoryKill) {
  TempDir dir;
  Host host(1);
  ASSERT_TRUE(start_long_task(host, dir)) << host.worker.log();
  const auto children = task_processes(host.worker.pid());
  ASSERT_EQ(children.size(), 1u);
  ::kill(children[0], SIGKILL);
  auto d = host.broker.next_outcome();
  ASSERT_TRUE(d) << host.worker.log();
  EXPECT_EQ(d->outcome.status, Status::kLost);
  // No cgroup counted an out-of-memory kill, so it can only be a guess.
  EXPECT_EQ(d->outcome.error_type, "WorkerLost");
  EXPECT_NE(d->outcome.error_message.find(
                "killed by signal 9 (SIGKILL), possibly by the kernel's out-of-memory killer"),
            std::string::npos)
      << d->outcome.error_message;
}

// ---- Memory -----------------------------------------------------------------------------------

namespace {

/* A memory cgroup of our own (v1 controller or v2) limited to `bytes` without swap, removed
 * at the end; path() is "" where this host does not let us make one (not root, no
 * delegation), and the test that needs it skips. */
class LimitedCgroup {
 public:
  explicit LimitedCgroup(std::uint64_t bytes) {
    std::ifstream self("/proc/self/cgroup");
    for (std::string line; std::getline(self, line) && path_.empty();) {
      const bool v1 = line.find(":memory:") != std::string::npos, v2 = line.rfind("0::", 0) == 0;
      const auto base = v1 ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup";
      const auto dir = base + line.substr(line.find(':', line.find(':') + 1) + 1) + "/dpool-test-" +
                       std::to_string(::getpid());
      if ((!v1 && !v2) || !std::filesystem::create_directory(dir, error_)) continue;
      path_ = dir;
      const bool limited =
          write(v1 ? "memory.limit_in_bytes" : "memory.max", std::to_string(bytes));
      if (!v1) write("memory.swap.max", "0");
      if (!limited) path_.clear(), std::filesystem::remove(dir, error_);
    }
  }
  ~LimitedCgroup() {  // a cgroup goes once its last process has
    if (!path_.empty())
      wait_for([&] { return std::filesystem::remove(path_, error_) || error_.value() != EBUSY; },
               10s);
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  bool write(const std::string& file, const std::string& value) {
    return bool(std::ofstream(path_ + "/" + file) << value << std::flush);
  }
  std::string path_;
  std::error_code error_;
};

}  // namespace

TEST(WorkerLimits, AProcessTheKernelKillsForMemoryIsReportedAsOutOfMemory) {
  LimitedCgroup cgroup(kSlow > 1 ? 768u << 20 : 256u << 20);
  if (cgroup.path().empty()) GTEST_SKIP() << "no memory cgroup of our own on this host";
  FakeBroker broker;
  // The whole worker host in the cgroup from its start: the shell moves itself, then execs.
  Process worker({"/bin/sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"", cgroup.path(),
                  DPOOL_WORKER_BIN, "--broker", broker.endpoint(), "--processes", "1", "--plugin",
                  DPOOL_TEST_PLUGIN});
  ASSERT_TRUE(broker.wait_ready()) << worker.log();
  broker.send_task(lease(1, "hold_memory"), pack_args(2048));
  auto d = broker.next_outcome();
  ASSERT_TRUE(d) << worker.log();
  EXPECT_EQ(d->outcome.status, Status::kLost);
  EXPECT_EQ(d->outcome.error_type, "OutOfMemory") << d->outcome.error_message;
  EXPECT_NE(d->outcome.error_message.find("killed by the kernel for memory"), std::string::npos);
  worker.kill();
}

TEST(WorkerLimits, AProcessPastMaxMemoryPerChildIsReplacedAfterItsRunningTask) {
  // The limit sits well above a fresh process's footprint (larger under sanitizers) and well
  // below what task 1 keeps. Task 1's outcome reaches the supervisor either while the process
  // runs task 2 (which then finishes there) or just before it starts it (task 2 then goes to
  // the successor): a loaded machine decides which. Either way nothing is killed or lost, and
  // the three tasks queued last run on the successor, which stays (under the limit).
  Host host(1, {"--max-memory-per-child", kSlow > 1 ? "400MiB" : "150MiB", "--prefetch", "4"});
  host.broker.send_tasks({lease(1, "hold_memory"), lease(2, "nap_ms"), lease(3, "nap_ms"),
                          lease(4, "nap_ms"), lease(5, "nap_ms")},
                         {pack_args(kSlow > 1 ? 600 : 300), pack_args(1000 * kSlow), pack_args(1),
                          pack_args(2), pack_args(3)});
  std::map<std::uint64_t, int> pid_of;
  for (int i = 0; i < 5; ++i) {
    auto d = host.broker.next_outcome();
    ASSERT_TRUE(d) << host.worker.log();
    ASSERT_EQ(d->outcome.status, Status::kOk)
        << d->outcome.task << ": " << d->outcome.error_message;
    pid_of[d->outcome.task] = unpack_as<int>(d->payload);
  }
  for (std::uint64_t t : {3, 4, 5}) EXPECT_NE(pid_of[t], pid_of[1]) << t;
  EXPECT_NE(host.worker.log().find("over max_memory_per_child"), std::string::npos)
      << host.worker.log();
  host.broker.send_task(lease(6, "nap_ms"), pack_args(1));
  auto d = host.broker.next_outcome();
  ASSERT_TRUE(d) << host.worker.log();
  EXPECT_EQ(unpack_as<int>(d->payload), pid_of[5]);
}

// ---- Drain ------------------------------------------------------------------------------------

TEST(WorkerLimits, SigtermDrainsHandsBackUnstartedTasksAndFinishesTheRunningOne) {
  TempDir dir;
  const auto started = dir.path() + "/started";
  Host host(1, {"--prefetch", "2"});
  host.broker.send_tasks({lease(1, "slow_once"), lease(2, "nap_ms"), lease(3, "nap_ms")},
                         {pack_args(started, 1500 * kSlow), pack_args(1), pack_args(2)});
  // Task 1 runs, 2 and 3 wait behind it.
  ASSERT_TRUE(wait_for([&] { return std::filesystem::exists(started); }, 20s * kSlow))
      << host.worker.log();
  host.worker.signal(SIGTERM);
  auto hb = host.broker.next_draining_heartbeat();
  ASSERT_TRUE(hb) << host.worker.log();
  EXPECT_EQ(std::set<std::uint64_t>(hb->held.begin(), hb->held.end()),
            (std::set<std::uint64_t>{1, 2, 3}));
  // A TASK the broker sent before it heard goes straight back.
  host.broker.send_task(lease(4, "nap_ms"), pack_args(1));
  std::map<std::uint64_t, wire::Outcome> by_task;
  for (int i = 0; i < 4; ++i) {
    auto d = host.broker.next_outcome();
    ASSERT_TRUE(d) << host.worker.log();
    by_task[d->outcome.task] = d->outcome;
  }
  EXPECT_EQ(by_task[1].status, Status::kOk) << by_task[1].error_message;
  for (std::uint64_t t : {2, 3, 4}) {
    EXPECT_EQ(by_task[t].status, Status::kReturned) << t;
    EXPECT_EQ(by_task[t].attempt, 1u);
  }
  EXPECT_TRUE(host.broker.wait_disconnect(10s * kSlow));
  EXPECT_EQ(exit_code(host.worker.wait(10s * kSlow)), 0) << host.worker.log();
  const auto log = host.worker.log();
  EXPECT_NE(log.find("draining: 1 tasks running, 2 handed back"), std::string::npos) << log;
  EXPECT_NE(log.find("drained in"), std::string::npos) << log;
}

TEST(WorkerLimits, PastTheDrainTimeoutTheRunningTasksAreKilled) {
  TempDir dir;
  Host host(1, {"--drain-timeout", "500ms"});
  ASSERT_TRUE(start_long_task(host, dir)) << host.worker.log();
  const auto start = Clock::now();
  host.worker.signal(SIGTERM);
  EXPECT_TRUE(host.broker.wait_disconnect(10s * kSlow));
  EXPECT_EQ(exit_code(host.worker.wait(10s * kSlow)), 0) << host.worker.log();
  EXPECT_GE(Clock::now() - start, 400ms);
  EXPECT_LT(Clock::now() - start, 10s * kSlow);
  EXPECT_NE(host.worker.log().find("drain timeout (500ms) passed"), std::string::npos)
      << host.worker.log();
}

TEST(WorkerLimits, ADrainTimeoutOfZeroStopsAtOnce) {
  TempDir dir;
  Host host(1, {"--drain-timeout", "0s"});
  ASSERT_TRUE(start_long_task(host, dir)) << host.worker.log();
  host.worker.signal(SIGTERM);
  EXPECT_TRUE(host.broker.wait_disconnect(10s * kSlow));
  EXPECT_EQ(exit_code(host.worker.wait(10s * kSlow)), 0) << host.worker.log();
}

TEST(WorkerLimits, AnIdleWorkerDrainsAtOnce) {
  Host host(2);
  host.worker.signal(SIGINT);
  EXPECT_TRUE(host.broker.wait_disconnect(10s * kSlow));
  EXPECT_EQ(exit_code(host.worker.wait(10s * kSlow)), 0) << host.worker.log();
}

// ---- End to end, with a real broker ------------------------------------------------------------

namespace {

TaskOptions with_timeout(std::chrono::milliseconds t) {
  TaskOptions o;
  o.timeout = t;
  return o;
}

/* One attempt only: a hand-back or a drain that cost an attempt would fail the task. */
TaskOptions one_attempt() {
  TaskOptions o;
  o.max_attempts = 1;
  return o;
}

/* Submits a call that runs for a minute the first time, and waits until it has started. */
bool submit_long_task(Client& client, Collector& results, const TempDir& dir) {
  const auto marker = dir.path() + "/started";
  client.submit("slow_once", pack_args(marker, 60'000), results.slot(0), one_attempt());
  return wait_for([&] { return std::filesystem::exists(marker); }, 30s * kSlow);
}

}  // namespace

TEST(WorkerLimitsEndToEnd, TimeOutsAndCrashesReachTheClientWithTheStderrTail) {
  auto broker = BrokerProcess::start();
  auto worker = start_limits_worker(broker.endpoint, 1);
  Client client(client_config(broker.endpoint));
  Collector results(3);
  client.submit("scream_and_nap", pack_args(std::string("still-busy"), 60'000), results.slot(0),
                with_timeout(300ms));
  client.submit("scream_and_abort", pack_args(std::string("famous-last-words")), results.slot(1),
                one_attempt());
  client.submit("nap_ms", pack_args(1), results.slot(2), with_timeout(10s));
  ASSERT_TRUE(results.wait_all(30s * kSlow)) << worker.log();
  EXPECT_EQ(results.not_exactly_once(), 0u);
  const std::pair<Status, const char*> expected[] = {{Status::kTimeout, "still-busy"},
                                                     {Status::kLost, "famous-last-words"}};
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& meta = results.result(i).meta;
    EXPECT_EQ(meta.status, expected[i].first) << meta.error_message;
    ASSERT_FALSE(meta.history.empty()) << "no attempt record";
    EXPECT_NE(meta.history.back().stderr_tail.find(expected[i].second), std::string::npos)
        << meta.history.back().stderr_tail;
  }
  EXPECT_EQ(results.result(2).meta.status, Status::kOk) << results.result(2).meta.error_message;
}

TEST(WorkerLimitsEndToEnd, AWorkerDrainingMidJobLosesNothing) {
  auto broker = BrokerProcess::start();
  auto first = start_limits_worker(broker.endpoint, 2, {"--prefetch", "3"});
  const std::size_t n = 60;
  Collector results(n);
  Client client(client_config(broker.endpoint));
  for (std::size_t i = 0; i < n; ++i) {
    client.submit("slow_echo", pack_args(static_cast<long long>(i), 100), results.slot(i),
                  one_attempt());
  }
  ASSERT_TRUE(wait_for([&] { return results.done() >= 6; }, 60s * kSlow));
  first.signal(SIGTERM);
  EXPECT_EQ(exit_code(first.wait(30s * kSlow)), 0) << first.log();
  EXPECT_NE(first.log().find("handed back"), std::string::npos) << first.log();
  // A restarted worker takes what the first one handed back or never got.
  auto second = start_limits_worker(broker.endpoint, 2);
  ASSERT_TRUE(results.wait_all(120s * kSlow)) << results.done() << " of " << n << "\n"
                                              << broker.process.log();
  EXPECT_EQ(results.not_exactly_once(), 0u);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(results.result(i).ok()) << i << ": " << results.result(i).meta.error_message;
    EXPECT_EQ(results.result(i).as<long long>("slow_echo"), static_cast<long long>(i));
  }
}

TEST(WorkerLimitsEndToEnd, PastTheDrainTimeoutTheKilledTaskCompletesElsewhere) {
  TempDir dir;
  auto broker = BrokerProcess::start();
  auto draining = start_limits_worker(broker.endpoint, 1, {"--drain-timeout", "500ms"});
  Client client(client_config(broker.endpoint));
  Collector results(1);
  ASSERT_TRUE(submit_long_task(client, results, dir)) << draining.log();
  auto other = start_limits_worker(broker.endpoint, 1);
  const auto start = Clock::now();
  draining.signal(SIGTERM);
  EXPECT_EQ(exit_code(draining.wait(30s * kSlow)), 0) << draining.log();
  EXPECT_LT(Clock::now() - start, 20s * kSlow);
  ASSERT_TRUE(results.wait_all(60s * kSlow)) << broker.process.log();
  // The killed task ran again on the other worker, uncharged (one attempt was all it had).
  ASSERT_TRUE(results.result(0).ok()) << results.result(0).meta.error_message;
  const auto pid = static_cast<pid_t>(results.result(0).as<int>("slow_once"));
  const auto others = task_processes(other.pid());
  EXPECT_NE(std::find(others.begin(), others.end(), pid), others.end());
}

TEST(WorkerLimitsEndToEnd, ASecondSigtermStopsAtOnceAndTheTaskCompletesElsewhere) {
  TempDir dir;
  auto broker = BrokerProcess::start();
  auto draining = start_limits_worker(broker.endpoint, 1);
  Client client(client_config(broker.endpoint));
  Collector results(1);
  ASSERT_TRUE(submit_long_task(client, results, dir)) << draining.log();
  auto other = start_limits_worker(broker.endpoint, 1);
  draining.signal(SIGTERM);
  ASSERT_TRUE(
      wait_for([&] { return draining.log().find("draining:") != std::string::npos; }, 10s * kSlow));
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(draining.running()) << "the first SIGTERM waits for the running task";
  const auto second = Clock::now();
  draining.signal(SIGTERM);
  EXPECT_EQ(exit_code(draining.wait(10s * kSlow)), 0) << draining.log();
  EXPECT_LT(Clock::now() - second, 10s * kSlow);
  ASSERT_TRUE(results.wait_all(60s * kSlow)) << broker.process.log();
  EXPECT_TRUE(results.result(0).ok()) << results.result(0).meta.error_message;
}
