/* End to end on loopback, with real processes: a dpool-broker, worker hosts running
 * tests/test_worker.cpp, and a dpool::Client in the test process. Covers correct results at
 * volume and at 1, 2 and 4 worker processes, remote errors, waiting for a worker, long tasks
 * kept while their worker lives, and an unreachable broker. */
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <future>
#include <map>
#include <set>

#include "support/collector.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;

namespace {

TaskResult run_one(Client& client, const std::string& function, std::string args,
                   std::chrono::milliseconds timeout = 30s) {
  auto promise = std::make_shared<std::promise<TaskResult>>();
  auto future = promise->get_future();
  client.submit(function, std::move(args),
                [promise](TaskResult&& r) { promise->set_value(std::move(r)); });
  if (future.wait_for(timeout) != std::future_status::ready)
    throw std::runtime_error("no result in time");
  return future.get();
}

void run_squares(const std::string& endpoint, std::size_t n) {
  Collector results(n);
  Client client(client_config(endpoint));
  for (std::size_t i = 0; i < n; ++i) {
    client.submit("square", pack_args(static_cast<long long>(i)), results.slot(i));
  }
  ASSERT_TRUE(results.wait_all(120s)) << results.done() << " of " << n << " results arrived";
  EXPECT_EQ(results.not_exactly_once(), 0u);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(results.result(i).as<long long>("square"), static_cast<long long>(i * i))
        << "task " << i;
  }
}

}  // namespace

TEST(EndToEnd, ComputesAHundredThousandSquaresOnTwoWorkerProcesses) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 2);
#ifdef DPOOL_SANITIZED
  run_squares(broker.endpoint, 20000);
#else
  run_squares(broker.endpoint, 100000);
#endif
}

class EndToEndScaling : public ::testing::TestWithParam<int> {};

TEST_P(EndToEndScaling, ComputesEverySquareExactlyOnce) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, GetParam());
  run_squares(broker.endpoint, 5000);
}

INSTANTIATE_TEST_SUITE_P(Processes, EndToEndScaling, ::testing::Values(1, 2, 4));

TEST(EndToEnd, TwoWorkerHostsShareTheWork) {
  auto broker = BrokerProcess::start();
  auto w1 = start_worker(broker.endpoint, 1);
  auto w2 = start_worker(broker.endpoint, 1);
  const std::size_t n = 400;
  Collector results(n);
  Client client(client_config(broker.endpoint));
  for (std::size_t i = 0; i < n; ++i)
    client.submit("slow_square", pack_args(static_cast<long long>(i), 2), results.slot(i));
  ASSERT_TRUE(results.wait_all(60s));
  std::set<std::uint32_t> pids;
  for (std::size_t i = 0; i < n; ++i) pids.insert(results.result(i).meta.pid);
  EXPECT_EQ(pids.size(), 2u) << "both hosts' processes should have run tasks";
}

TEST(EndToEnd, RemoteExceptionCarriesTypeMessageHostAndPid) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 1);
  Client client(client_config(broker.endpoint));
  auto r = run_one(client, "fail", pack_args(std::string("no such shelf")));
  try {
    (void)r.as<int>("fail");
    FAIL() << "a failed task must throw";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), Errc::kRemote);
    EXPECT_EQ(e.type(), "std::out_of_range");
    EXPECT_EQ(e.message(), "no such shelf");
    EXPECT_EQ(e.function(), "fail");
    EXPECT_FALSE(e.host().empty());
    EXPECT_GT(e.pid(), 0u);
    EXPECT_EQ(e.attempts(), 1u);
  }
}

TEST(EndToEnd, ArgumentsOfTheWrongTypeGiveAnArgumentError) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 1);
  Client client(client_config(broker.endpoint));
  auto r = run_one(client, "square", pack_args(std::string("seven")));
  ASSERT_EQ(r.meta.status, Status::kError);
  EXPECT_EQ(r.meta.error_type, "dpool::ArgumentError");
  EXPECT_NE(r.meta.error_message.find("square expects (long long)"), std::string::npos)
      << r.meta.error_message;
  auto wrong_count = run_one(client, "add", pack_args(1));
  EXPECT_EQ(wrong_count.meta.error_type, "dpool::ArgumentError");
  // The worker is unharmed.
  EXPECT_EQ(run_one(client, "add", pack_args(2, 3)).as<long long>("add"), 5);
}

TEST(EndToEnd, BuiltinsEchoSleepAndExecOnlyWhereAllowed) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 1, 200ms, {"--allow-exec"});
  Client client(client_config(broker.endpoint));
  EXPECT_EQ(run_one(client, "echo", pack_args(std::string("hi"))).as<std::string>("echo"), "hi");
  EXPECT_DOUBLE_EQ(run_one(client, "sleep", pack_args(0.01)).as<double>("sleep"), 0.01);
  auto r = run_one(client, "exec",
                   pack_args(std::string("sh"), std::string("-c"),
                             std::string("echo out; echo err >&2; exit 3")));
  ASSERT_TRUE(r.ok()) << r.meta.error_message;
  auto handle = msgpack::unpack(r.bytes().data(), r.bytes().size());
  std::map<std::string, msgpack::object> out;
  handle.get().convert(out);
  EXPECT_EQ(out["exit_code"].as<int>(), 3);
  EXPECT_EQ(out["stdout"].as<std::string>(), "out\n");
  EXPECT_EQ(out["stderr"].as<std::string>(), "err\n");
  // Without --allow-exec a worker does not offer exec at all.
  auto plain = Process({DPOOL_WORKER_BIN, "--broker", broker.endpoint, "--processes", "1"});
  worker.kill();
  auto promise = std::make_shared<std::promise<TaskResult>>();
  auto future = promise->get_future();
  client.submit("exec", pack_args(std::string("true")),
                [promise](TaskResult&& t) { promise->set_value(std::move(t)); });
  EXPECT_EQ(future.wait_for(1500ms), std::future_status::timeout)
      << "exec ran on a worker without --allow-exec";
}

TEST(EndToEnd, TaskForAFunctionNoWorkerOffersWaitsForOne) {
  auto broker = BrokerProcess::start();
  auto plain = Process({DPOOL_WORKER_BIN, "--broker", broker.endpoint, "--processes", "1"});
  Client client(client_config(broker.endpoint));
  auto promise = std::make_shared<std::promise<TaskResult>>();
  auto future = promise->get_future();
  client.submit("square", pack_args(9),
                [promise](TaskResult&& r) { promise->set_value(std::move(r)); });
  // The stock worker has no 'square': the task waits, and the broker says why.
  EXPECT_TRUE(wait_for(
      [&] {
        return broker.process.log().find("no connected worker offers 'square'") !=
               std::string::npos;
      },
      20s))
      << broker.process.log();
  EXPECT_EQ(future.wait_for(0ms), std::future_status::timeout);
  auto worker = start_worker(broker.endpoint, 1);
  ASSERT_EQ(future.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(future.get().as<long long>("square"), 81);
}

TEST(EndToEnd, ALongTaskIsNotRedeliveredWhileItsWorkerIsAlive) {
  // Heartbeats every 50 ms: a lease tied to a timer would expire 10 times over.
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 50ms);
  auto worker = start_worker(broker.endpoint, 1, 50ms);
  Client client(client_config(broker.endpoint, 50ms));
  auto r = run_one(client, "slow_square", pack_args(7, 1500));
  EXPECT_EQ(r.as<long long>("slow_square"), 49);
  EXPECT_EQ(r.meta.attempts, 1u);
}

TEST(EndToEnd, AnUnreachableBrokerFailsTasksWithinTheConnectTimeout) {
  auto config = client_config("tcp://127.0.0.1:1");
  config.connect_timeout = 1s;
  Client client(config);
  const auto start = std::chrono::steady_clock::now();
  auto r = run_one(client, "square", pack_args(1), 10s);
  EXPECT_EQ(r.meta.status, Status::kUnreachable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_THROW((void)r.as<int>("square"), Error);
}

TEST(EndToEnd, DestroyingTheClientCompletesItsWaitingTasksAsCancelled) {
  Collector results(3);
  {
    auto config = client_config("tcp://127.0.0.1:1");
    Client client(config);
    for (std::size_t i = 0; i < 3; ++i) client.submit("square", pack_args(1), results.slot(i));
  }
  ASSERT_EQ(results.done(), 3u);
  EXPECT_EQ(results.result(0).meta.status, Status::kCancelled);
}

TEST(EndToEnd, BrokerAndWorkerHostExitCleanlyOnSigterm) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 2);
  Client client(client_config(broker.endpoint));
  ASSERT_EQ(run_one(client, "square", pack_args(3)).as<long long>("square"), 9);
  const auto worker_pid = worker.pid();
  auto children = task_processes(worker_pid);
  worker.signal(SIGTERM);
  auto ws = worker.wait(10s);
  ASSERT_TRUE(ws.has_value()) << "worker host did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*ws) && WEXITSTATUS(*ws) == 0) << worker.log();
  for (auto child : children)
    EXPECT_NE(::kill(child, 0), 0) << "child " << child << " outlived its host";
  broker.process.signal(SIGTERM);
  auto bs = broker.process.wait(10s);
  ASSERT_TRUE(bs.has_value()) << "broker did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*bs) && WEXITSTATUS(*bs) == 0) << broker.process.log();
}
