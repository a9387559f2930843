/* A worker host's idle process takes over tasks queued behind a busy one's running task
 * (worker/src/supervisor.cpp, take_over; the `skip` range in worker/src/slots.hpp).
 *
 * SkipRange: the index arithmetic, which wraps at 2^32. TakeOver: a real worker host (dpool-
 * worker with the test plugin) against a broker played by the test. Every task here logs its
 * key to a file as it starts (log_and_nap), so a task run twice, by the process it was taken
 * from and by the one that took it, shows there even though the host reports it once.
 */
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "dpool/client.hpp"
#include "dpool/protocol.hpp"
#include "slots.hpp"
#include "support/fake_broker.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;
using dpool::detail::in_range;
using dpool::detail::precedes;
using dpool::detail::SlotState;

TEST(SkipRange, CountsFromTheFirstIndexUpToTheLastOneExcluded) {
  EXPECT_TRUE(in_range(5, 5, 8));
  EXPECT_TRUE(in_range(7, 5, 8));
  EXPECT_FALSE(in_range(8, 5, 8));
  EXPECT_FALSE(in_range(4, 5, 8));
  EXPECT_FALSE(in_range(5, 5, 5)) << "an empty range skips nothing";
  EXPECT_TRUE(precedes(4, 5));
  EXPECT_FALSE(precedes(5, 5));
  EXPECT_FALSE(precedes(6, 5));
}

TEST(SkipRange, WrapsAroundTheTopOfTheIndexes) {
  constexpr std::uint32_t kTop = 0xffffffffu;
  EXPECT_TRUE(in_range(kTop, kTop - 1, 2));
  EXPECT_TRUE(in_range(0, kTop - 1, 2));
  EXPECT_TRUE(in_range(1, kTop - 1, 2));
  EXPECT_FALSE(in_range(2, kTop - 1, 2));
  EXPECT_FALSE(in_range(kTop - 2, kTop - 1, 2));
  EXPECT_TRUE(precedes(kTop, 0));
  EXPECT_FALSE(precedes(0, kTop));
}

TEST(SkipRange, ASlotSkipsWhatItWasLastTold) {
  SlotState slot;
  EXPECT_FALSE(slot.skips(0)) << "a fresh slot skips nothing";
  slot.set_skip(3, 6);
  EXPECT_FALSE(slot.skips(2));
  EXPECT_TRUE(slot.skips(3));
  EXPECT_TRUE(slot.skips(5));
  EXPECT_FALSE(slot.skips(6));
  slot.set_skip(0xfffffffeu, 1);
  EXPECT_TRUE(slot.skips(0));
  EXPECT_FALSE(slot.skips(3));
}

namespace {

/* How many times each key was logged as started. */
std::map<std::uint64_t, int> runs_logged(const std::string& path) {
  std::map<std::uint64_t, int> runs;
  std::ifstream in(path);
  for (std::uint64_t key = 0; in >> key;) ++runs[key];
  return runs;
}

/* Sends tasks keyed `first`, `first` + 1, ..., each a log_and_nap of the given length, in one
 * TASK. */
void send_naps(FakeBroker& broker, const std::string& log, std::uint64_t first,
               const std::vector<int>& millis) {
  std::vector<wire::Lease> leases;
  std::vector<std::string> payloads;
  for (std::size_t i = 0; i < millis.size(); ++i) {
    const auto key = first + i;
    leases.push_back(lease(key, "log_and_nap"));
    payloads.push_back(pack_args(log, static_cast<long long>(key), millis[i]));
  }
  broker.send_tasks(leases, payloads);
}

/* Every one of the host's processes has started and run naps of `millis`: tasks sent from
 * now on are dealt to all at once, and the host's mean run time is about `millis`. A process
 * slow to start (a loaded machine) leaves its rounds to the others, so rounds go on until each
 * has been seen running one. */
void warm_up(Host& host, const std::string& log, int millis = 2) {
  std::set<int> seen;
  for (std::uint64_t round = 0; seen.size() < static_cast<std::size_t>(host.processes); ++round) {
    ASSERT_LT(round, 50u) << "only " << seen.size() << " processes ran tasks\n"
                          << host.worker.log();
    // Keys apart from the tests'.
    send_naps(host.broker, log, 1'000'000 + 20 * round, std::vector<int>(20, millis));
    for (int i = 0; i < 20; ++i) {
      auto d = host.broker.next_outcome();
      ASSERT_TRUE(d.has_value()) << host.worker.log();
      seen.insert(unpack_as<int>(d->payload));
    }
  }
}

/* The next `n` outcomes, each a success, their tasks appended to `order`. */
void collect(Host& host, int n, std::vector<std::uint64_t>& order) {
  for (int i = 0; i < n; ++i) {
    auto d = host.broker.next_outcome();
    ASSERT_TRUE(d.has_value()) << host.worker.log();
    EXPECT_EQ(d->outcome.status, Status::kOk) << d->outcome.error_message;
    order.push_back(d->outcome.task);
  }
}

/* Six tasks in one TASK to two processes: a 1.5 s one and five naps of `quick` ms. They are
 * dealt in rounds, so two quick ones queue behind the long one; the other process runs its
 * three and then, idle, takes those two over instead of leaving them to wait 1.5 s. */
void expect_taken_over(Host& host, const std::string& log, int quick) {
  send_naps(host.broker, log, 1, {1500, quick, quick, quick, quick, quick});
  std::vector<std::uint64_t> order;
  std::map<std::uint64_t, int> pid_of;
  for (int i = 0; i < 6; ++i) {
    auto d = host.broker.next_outcome();
    ASSERT_TRUE(d.has_value()) << host.worker.log();
    ASSERT_EQ(d->outcome.status, Status::kOk) << d->outcome.error_message;
    order.push_back(d->outcome.task);
    pid_of[d->outcome.task] = unpack_as<int>(d->payload);
  }
  EXPECT_EQ(order.back(), 1u) << "a quick task waited behind the long one";
  EXPECT_EQ(std::set<std::uint64_t>(order.begin(), order.end()).size(), 6u);
  for (std::uint64_t key = 2; key <= 6; ++key) EXPECT_NE(pid_of[key], pid_of[1]) << "task " << key;
  for (const auto& [key, runs] : runs_logged(log)) {
    EXPECT_EQ(runs, 1) << "task " << key << " ran " << runs << " times";
  }
}

}  // namespace

/* Tasks of 2 ms of late: the idle process takes over at once. */
TEST(TakeOver, TasksQueuedBehindALongOneRunOnAnIdleProcess) {
  TempDir dir;
  const auto log = dir.path() + "/runs";
  Host host(2);
  ASSERT_NO_FATAL_FAILURE(warm_up(host, log));
  expect_taken_over(host, log, 2);
}

/* Tasks of no time of late: a queue is taken from only once its running call has run 1 ms, and
 * the host wakes for that moment by itself. Heartbeats every 10 s, so that no other wake-up
 * comes before the long task ends. */
TEST(TakeOver, AmongQuickTasksALongOneLosesItsQueueOnceItHasRunAMillisecond) {
  TempDir dir;
  const auto log = dir.path() + "/runs";
  Host host(2, {"--heartbeat-interval", "10000"});
  ASSERT_NO_FATAL_FAILURE(warm_up(host, log, 0));
  expect_taken_over(host, log, 0);
}

namespace {

/* A process held stopped (SIGSTOP) while in scope, so that it starts what it is dealt late;
 * continued however the scope is left, a failed assertion included. */
class Stopped {
 public:
  explicit Stopped(pid_t pid) : pid_(pid), ok_(::kill(pid, SIGSTOP) == 0) {}
  ~Stopped() { ::kill(pid_, SIGCONT); }
  Stopped(const Stopped&) = delete;
  Stopped& operator=(const Stopped&) = delete;
  [[nodiscard]] bool ok() const { return ok_; }

 private:
  pid_t pid_;
  bool ok_;
};

/* A process that starts its long task late, after its sibling ran its own share of naps of
 * `quick` ms and went idle, still loses its queue as soon as that task runs: its start wakes
 * nobody, so the host must look again by itself. The late start is made certain by stopping
 * the process that is dealt first (slot 0) until its sibling is done. Heartbeats every 10 s,
 * so that no other wake-up comes before the long task ends. */
void expect_late_starter_loses_queue(int quick) {
  TempDir dir;
  const auto log = dir.path() + "/runs";
  Host host(2, {"--heartbeat-interval", "10000"});
  ASSERT_NO_FATAL_FAILURE(warm_up(host, log, quick));
  send_naps(host.broker, log, 100, {quick, quick});  // dealt one each, slot 0 first
  pid_t first = 0;
  for (int i = 0; i < 2; ++i) {
    auto d = host.broker.next_outcome();
    ASSERT_TRUE(d.has_value()) << host.worker.log();
    if (d->outcome.task == 100) first = static_cast<pid_t>(d->outcome.pid);
  }
  ASSERT_GT(first, 0);
  std::vector<std::uint64_t> order;
  {
    const Stopped stopped(first);
    ASSERT_TRUE(stopped.ok());
    send_naps(host.broker, log, 1, {1500, quick, quick, quick, quick, quick});  // 1, 3, 5 to it
    ASSERT_NO_FATAL_FAILURE(collect(host, 3, order));
  }
  EXPECT_EQ(std::set<std::uint64_t>(order.begin(), order.end()),
            (std::set<std::uint64_t>{2, 4, 6}));
  ASSERT_NO_FATAL_FAILURE(collect(host, 3, order));
  EXPECT_EQ(order.back(), 1u) << "tasks 3 and 5 waited behind the long one";
  for (const auto& [key, runs] : runs_logged(log)) {
    EXPECT_EQ(runs, 1) << "task " << key << " ran " << runs << " times";
  }
}

}  // namespace

/* Among tasks of no time, a running call is taken from once it has run 1 ms. */
TEST(TakeOver, AProcessThatStartsItsLongTaskLateStillLosesItsQueue) {
  expect_late_starter_loses_queue(0);
}

/* Among tasks of 2 ms, at once: but not before the process has started one, and what it
 * has not started cannot be taken, only recalled. (A slow build, as under a sanitizer, makes
 * naps of no time look this long.) */
TEST(TakeOver, AProcessThatStartsLateAmongLongerTasksStillLosesItsQueue) {
  expect_late_starter_loses_queue(2);
}

/* Tasks taken over earlier may still be queued ahead of the busy process when it gets more
 * and more are taken: the new skip range must still cover the earlier ones. Two processes:
 * A runs a 1.5 s task with x2 queued behind it, which B takes. Then q1..q4 are dealt, q2 and
 * q4 to A, and B takes them too; A, still in its long task, must skip x2 as well as them. */
TEST(TakeOver, TasksTakenEarlierStaySkippedWhenMoreAreTaken) {
  TempDir dir;
  const auto log = dir.path() + "/runs";
  Host host(2);
  ASSERT_NO_FATAL_FAILURE(warm_up(host, log));
  send_naps(host.broker, log, 1, {1500, 1, 1, 1});  // L, x1, x2, x3
  std::vector<std::uint64_t> order;
  ASSERT_NO_FATAL_FAILURE(collect(host, 3, order));
  send_naps(host.broker, log, 11, {1, 1, 1, 1});  // q1..q4
  ASSERT_NO_FATAL_FAILURE(collect(host, 5, order));
  EXPECT_EQ(order.back(), 1u) << "a quick task waited behind the long one";
  const auto runs = runs_logged(log);
  for (std::uint64_t key : {1, 2, 3, 4, 11, 12, 13, 14}) {
    const auto it = runs.find(key);
    EXPECT_EQ(it == runs.end() ? 0 : it->second, 1) << "task " << key;
  }
}

/* Waves of tasks of mixed lengths, some sent while the last wave still runs, on three
 * processes: processes go idle beside busy ones again and again, in every phase of a task's
 * start. Whatever is taken over, and whenever, each task starts once and is reported once. */
TEST(TakeOver, UnderChurnEveryTaskRunsOnceAndIsReportedOnce) {
  TempDir dir;
  const auto log = dir.path() + "/runs";
  Host host(3);
  ASSERT_NO_FATAL_FAILURE(warm_up(host, log));
  std::mt19937 random(7);
  std::uniform_int_distribution<int> quick(0, 3);
  std::uint64_t next = 1;
  std::size_t sent = 0;
  std::map<std::uint64_t, int> reported;
  for (int wave = 0; wave < 24; ++wave) {
    // Naps of up to 3 ms behind a longer task, or 100 of no time at all: the processes report
    // those in batches, so the host's view of how far each got is often behind.
    std::vector<int> millis{wave % 3 == 0 ? 40 : 15};
    if (wave % 4 < 2) {
      for (int i = 0; i < 11; ++i) millis.push_back(quick(random));
    } else {
      millis.assign(100, 0);
    }
    send_naps(host.broker, log, next, millis);
    next += millis.size();
    sent += millis.size();
    // Every other wave goes out while the one before still runs.
    if (wave % 2 == 0) continue;
    while (reported.size() < sent) {
      auto d = host.broker.next_outcome();
      ASSERT_TRUE(d.has_value()) << reported.size() << " of " << sent << " reported\n"
                                 << host.worker.log();
      EXPECT_EQ(d->outcome.status, Status::kOk)
          << "task " << d->outcome.task << ": " << d->outcome.error_message << host.worker.log();
      ++reported[d->outcome.task];
    }
  }
  ASSERT_EQ(reported.size(), sent);
  for (const auto& [key, times] : reported) {
    EXPECT_EQ(times, 1) << "task " << key << " reported " << times << " times";
  }
  const auto runs = runs_logged(log);
  for (std::uint64_t key = 1; key < next; ++key) {
    const auto it = runs.find(key);
    EXPECT_EQ(it == runs.end() ? 0 : it->second, 1) << "task " << key;
  }
}
