/* Failures with real processes on loopback: worker processes and whole worker hosts killed or
 * frozen mid-run, a task that kills its worker every time, the broker killed and restarted.
 * In every case each task's completion must run exactly once, with the right value. */
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <future>

#include "support/collector.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;

namespace {

void expect_squares(Collector& results, std::size_t n,
                    const std::string& function = "slow_square") {
  EXPECT_EQ(results.not_exactly_once(), 0u);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(results.result(i).ok())
        << "task " << i << ": " << results.result(i).meta.error_message;
    ASSERT_EQ(results.result(i).as<long long>(function), static_cast<long long>(i * i))
        << "task " << i;
  }
}

void submit_squares(Client& client, Collector& results, std::size_t n, int millis) {
  for (std::size_t i = 0; i < n; ++i) {
    client.submit("slow_square", pack_args(static_cast<long long>(i), millis), results.slot(i));
  }
}

}  // namespace

TEST(Failures, EveryResultArrivesOnceWhenAWorkerProcessIsKilledMidRun) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 2);
  const std::size_t n = 3000;
  Collector results(n);
  Client client(client_config(broker.endpoint));
  submit_squares(client, results, n, 1);
  ASSERT_TRUE(wait_for([&] { return results.done() >= 300; }, 60s));
  auto children = task_processes(worker.pid());
  ASSERT_EQ(children.size(), 2u);
  ::kill(children[0], SIGKILL);
  ASSERT_TRUE(results.wait_all(120s)) << results.done() << " of " << n;
  expect_squares(results, n);
  // The supervisor replaced the child.
  EXPECT_TRUE(wait_for([&] { return task_processes(worker.pid()).size() == 2; }, 10s));
}

TEST(Failures, AWholeWorkerHostKilledHasItsTasksRunElsewhere) {
  auto broker = BrokerProcess::start();
  auto doomed = start_worker(broker.endpoint, 2);
  auto survivor = start_worker(broker.endpoint, 2);
  const std::size_t n = 2000;
  Collector results(n);
  Client client(client_config(broker.endpoint));
  submit_squares(client, results, n, 2);
  ASSERT_TRUE(wait_for([&] { return results.done() >= 200; }, 60s));
  doomed.kill();  // the supervisor; its children follow it (PR_SET_PDEATHSIG)
  ASSERT_TRUE(results.wait_all(120s)) << results.done() << " of " << n;
  expect_squares(results, n);
  EXPECT_NE(broker.process.log().find("no heartbeat"), std::string::npos) << broker.process.log();
}

TEST(Failures, ATaskThatKillsItsWorkerEveryTimeFailsAfterTheAttemptLimit) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 2);
  const std::size_t n = 50;
  Collector results(n + 1);
  Client client(client_config(broker.endpoint));
  for (std::size_t i = 0; i < n; ++i)
    client.submit("slow_square", pack_args(static_cast<long long>(i), 1), results.slot(i));
  client.submit("crash_always", pack_args(1), results.slot(n));
  ASSERT_TRUE(results.wait_all(60s)) << results.done() << " of " << n + 1;
  expect_squares(results, n);
  auto& lost = results.result(n);
  ASSERT_EQ(lost.meta.status, Status::kLost);
  EXPECT_EQ(lost.meta.error_type, "WorkerLost");
  EXPECT_EQ(lost.meta.attempts, 3u);
  EXPECT_NE(lost.meta.error_message.find("3 attempts"), std::string::npos)
      << lost.meta.error_message;
  EXPECT_NE(lost.meta.error_message.find("SIGKILL"), std::string::npos) << lost.meta.error_message;
  try {
    (void)lost.as<int>("crash_always");
    FAIL() << "expected a RemoteError";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), Errc::kWorkerLost);
  }
}

TEST(Failures, ATaskThatKillsItsWorkerOnceSucceedsOnItsSecondAttempt) {
  TempDir dir;
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 1);
  Collector results(1);
  Client client(client_config(broker.endpoint));
  client.submit("crash_once_per_file", pack_args(dir.path() + "/marker", 42), results.slot(0));
  ASSERT_TRUE(results.wait_all(30s));
  EXPECT_EQ(results.result(0).as<int>("crash_once_per_file"), 42);
  EXPECT_EQ(results.result(0).meta.attempts, 2u);
}

TEST(Failures, TheRunCompletesWhenTheBrokerIsKilledAndRestarted) {
  auto broker = BrokerProcess::start();
  const auto endpoint = broker.endpoint;
  auto worker = start_worker(endpoint, 2);
  const std::size_t n = 3000;
  Collector results(n);
  Client client(client_config(endpoint));
  submit_squares(client, results, n, 1);
  ASSERT_TRUE(wait_for([&] { return results.done() >= 300; }, 60s));
  broker.process.kill();
  broker = BrokerProcess::start(endpoint);  // same address: the peers reconnect by themselves
  ASSERT_TRUE(results.wait_all(120s)) << results.done() << " of " << n << "\n"
                                      << broker.process.log();
  expect_squares(results, n);
}

TEST(Failures, AFrozenWorkerHostLosesItsLeasesAndItsLateResultsAreDropped) {
  auto broker = BrokerProcess::start();
  auto frozen = start_worker(broker.endpoint, 1);
  auto other = start_worker(broker.endpoint, 1);
  const std::size_t n = 400;
  Collector results(n);
  Client client(client_config(broker.endpoint));
  submit_squares(client, results, n, 5);
  ASSERT_TRUE(wait_for([&] { return results.done() >= 20; }, 60s));
  frozen.signal(SIGSTOP);
  for (auto child : task_processes(frozen.pid())) ::kill(child, SIGSTOP);
  // Long enough for the broker to declare it dead (expiry 600 ms) and requeue its leases.
  ASSERT_TRUE(wait_for(
      [&] { return broker.process.log().find("no heartbeat") != std::string::npos; }, 10s));
  for (auto child : task_processes(frozen.pid())) ::kill(child, SIGCONT);
  frozen.signal(SIGCONT);
  ASSERT_TRUE(results.wait_all(120s)) << results.done() << " of " << n;
  expect_squares(results, n);
  // The thawed host registers again and gets work once more.
  const std::string registered = "pid " + std::to_string(frozen.pid()) + " registered";
  EXPECT_TRUE(wait_for([&] {
    const auto log = broker.process.log();
    const auto first = log.find(registered);
    return first != std::string::npos && log.find(registered, first + 1) != std::string::npos;
  }, 10s)) << broker.process.log();
}
