/* Per-client limits end to end: a real dpool-broker started with small limits, worker hosts
 * running tests/test_worker.cpp, and a dpool::Client in the test process.
 *
 * Covers: a client that submits 50 times its broker's task limit waits for room and gets every
 * result exactly once, without the broker ever refusing one (the client keeps within the limits
 * it was told); on_full: error failing the excess at once with "queue full" and the limit; the
 * byte limit both ways, and a task larger than the limit failing in either mode; `dpool status`
 * (text and --json) showing the limits and each client's use.
 */
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <future>
#include <string>
#include <vector>

#include "dpool/client.hpp"
#include "dpool/quota.hpp"
#include "support/cli.hpp"
#include "support/collector.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;

namespace {

#ifdef DPOOL_SANITIZED
constexpr std::size_t kMany = 2000;
#else
constexpr std::size_t kMany = 5000;
#endif

ClientConfig config_for(const std::string& endpoint, ClientConfig::OnFull on_full) {
  auto c = client_config(endpoint);
  c.on_full = on_full;
  return c;
}

wire::Report status_of(Client& client) {
  auto report = client.status();
  if (report.wait_for(10s) != std::future_status::ready)
    throw std::runtime_error("no REPORT in time");
  return report.get();
}

/* Indexes whose result is not ok, after all of them arrived. */
std::vector<std::size_t> failures(Collector& results, std::size_t n) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < n; ++i) {
    if (!results.result(i).ok()) out.push_back(i);
  }
  return out;
}

}  // namespace

TEST(Limits, AClientFarPastTheTaskLimitWaitsAndGetsEveryResultExactlyOnce) {
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 200ms, {"--max-tasks-per-client", "100"});
  auto worker = start_worker(broker.endpoint, 2);
  Collector results(kMany);
  Client client(config_for(broker.endpoint, ClientConfig::OnFull::kWait));
  for (std::size_t i = 0; i < kMany; ++i)
    client.submit("square", pack_args(static_cast<long long>(i)), results.slot(i));
  ASSERT_TRUE(results.wait_all(120s)) << results.done() << " of " << kMany << " results arrived";
  EXPECT_EQ(results.not_exactly_once(), 0u);
  for (std::size_t i = 0; i < kMany; ++i) {
    ASSERT_EQ(results.result(i).as<long long>("square"), static_cast<long long>(i * i))
        << "task " << i;
  }
  const auto report = status_of(client);
  EXPECT_EQ(report.max_tasks_per_client, 100u);
  EXPECT_EQ(report.limited, 0u) << "the client sent past the limits it was told";
}

TEST(Limits, OnFullErrorFailsTheExcessAtOnceNamingTheLimit) {
  // No worker: the first 100 tasks stay queued, so exactly the other 200 are past the limit.
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 200ms, {"--max-tasks-per-client", "100"});
  const std::size_t n = 300;
  Collector results(n);  // before the client, whose destructor completes what is left
  Client client(config_for(broker.endpoint, ClientConfig::OnFull::kError));
  for (std::size_t i = 0; i < n; ++i)
    client.submit("square", pack_args(static_cast<long long>(i)), results.slot(i));
  ASSERT_TRUE(wait_for([&] { return results.done() >= 200; }, 20s))
      << results.done() << " failed at once";
  EXPECT_EQ(results.done(), 200u);
  const auto failed = failures(results, n);
  ASSERT_EQ(failed.size(), 200u);
  EXPECT_EQ(failed.front(), 100u) << "the tasks that fit are the first ones";
  const auto& r = results.result(failed.front());
  EXPECT_EQ(r.meta.status, Status::kRejected);
  EXPECT_EQ(r.meta.error_type, kQueueFull);
  EXPECT_EQ(r.meta.error_message,
            "queue full: the broker holds 100 tasks of this client (its limit per client is 100, "
            "max_tasks_per_client)");
  try {
    r.throw_if_failed("square");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kRejected);
    EXPECT_NE(std::string(e.what()).find("queue full"), std::string::npos) << e.what();
  }
  const auto report = status_of(client);
  EXPECT_EQ(report.limited, 0u) << "the client sent what it knew would be refused";
  ASSERT_FALSE(report.sessions.empty());
  EXPECT_EQ(report.sessions.front().tasks, 100u);
  EXPECT_EQ(client.pending(), 100u);
}

TEST(Limits, TheByteLimitMakesAClientWaitAndEveryResultArrives) {
  auto broker =
      BrokerProcess::start("tcp://127.0.0.1:0", 200ms, {"--max-bytes-per-client", "64KiB"});
  auto worker = start_worker(broker.endpoint, 2);
  const std::size_t n = 200;
  Collector results(n);
  Client client(config_for(broker.endpoint, ClientConfig::OnFull::kWait));
  for (std::size_t i = 0; i < n; ++i) {
    client.submit("echo", pack_args(std::string(10000, static_cast<char>('a' + i % 26))),
                  results.slot(i));
  }
  ASSERT_TRUE(results.wait_all(60s)) << results.done() << " of " << n << " results arrived";
  EXPECT_EQ(results.not_exactly_once(), 0u);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(results.result(i).as<std::string>("echo"),
              std::string(10000, static_cast<char>('a' + i % 26)));
  }
}

TEST(Limits, TheByteLimitFailsTheExcessInErrorModeAndTooLargeTasksAlways) {
  auto broker =
      BrokerProcess::start("tcp://127.0.0.1:0", 200ms, {"--max-bytes-per-client", "64KiB"});
  // 10,004 bytes each once packed: six fit in 64 KiB, the other four do not.
  const std::size_t n = 10;
  Collector results(n + 1);  // before the client, whose destructor completes what is left
  Client client(config_for(broker.endpoint, ClientConfig::OnFull::kError));
  for (std::size_t i = 0; i < n; ++i)
    client.submit("echo", pack_args(std::string(10000, 'x')), results.slot(i));
  client.submit("echo", pack_args(std::string(100000, 'x')), results.slot(n));
  ASSERT_TRUE(wait_for([&] { return results.done() >= 5; }, 20s))
      << results.done() << " failed at once";
  const auto failed = failures(results, n);
  EXPECT_EQ(failed, (std::vector<std::size_t>{6, 7, 8, 9}));
  ASSERT_FALSE(failed.empty());
  EXPECT_EQ(results.result(failed.front()).meta.error_type, kQueueFull);
  EXPECT_NE(results.result(failed.front()).meta.error_message.find("65,536 bytes per client"),
            std::string::npos)
      << results.result(failed.front()).meta.error_message;
  EXPECT_EQ(results.result(n).meta.error_type, kTaskTooLarge);

  // Waiting does not make a task fit that never can.
  Collector big(1);
  Client waiting(config_for(broker.endpoint, ClientConfig::OnFull::kWait));
  waiting.submit("echo", pack_args(std::string(100000, 'x')), big.slot(0));
  ASSERT_TRUE(big.wait_all(20s));
  EXPECT_EQ(big.result(0).meta.error_type, kTaskTooLarge);
  EXPECT_NE(big.result(0).meta.error_message.find("max_bytes_per_client"), std::string::npos);
}

TEST(Limits, StatusShowsTheLimitsAndEachClientsUse) {
  auto broker =
      BrokerProcess::start("tcp://127.0.0.1:0", 200ms,
                           {"--max-tasks-per-client", "100", "--max-bytes-per-client", "1MiB"});
  Client client(config_for(broker.endpoint, ClientConfig::OnFull::kWait));
  for (std::size_t i = 0; i < 150; ++i)
    client.submit("square", pack_args(static_cast<long long>(i)), [](TaskResult&&) {});
  ASSERT_TRUE(wait_for(
      [&] {
        return !status_of(client).sessions.empty() &&
               status_of(client).sessions.front().tasks == 100;
      },
      20s));

  const auto text = run_dpool({"status", "--broker", broker.endpoint});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("limits per client: 100 tasks, 1MiB"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("HELD"), std::string::npos) << text.out;

  const auto json = run_dpool({"status", "--json", "--broker", broker.endpoint});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["limits"]["tasks_per_client"], 100);
  EXPECT_EQ(j["limits"]["bytes_per_client"], 1 << 20);
  EXPECT_EQ(j["limits"]["message_size"], 1 << 30);
  ASSERT_GE(j["sessions"].size(), 1u);
  EXPECT_EQ(j["sessions"][0]["tasks"], 100);
  EXPECT_EQ(j["sessions"][0]["name"], "client");
  EXPECT_GT(j["sessions"][0]["bytes"].get<std::uint64_t>(), 0u);
}
