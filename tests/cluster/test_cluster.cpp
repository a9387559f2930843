/* dpool across hosts: a broker host, three worker hosts and a client host, each a network
 * namespace on one bridge (cluster.hpp), real TCP between them. Each test builds its own
 * cluster and breaks one thing in it mid-job: a worker host's cable, a worker host's processes
 * (frozen), the broker (killed). Whatever breaks, every task's result must reach the caller
 * exactly once, correct, and the broken part must come back and get work again.
 *
 * Where namespaces cannot be made (not root, no `ip`, no netns support) every test reports
 * SKIPPED with the reason. docs/cluster-tests.md describes the topology and each test.
 */
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <thread>

#include "cluster/cluster.hpp"
#include "support/cli.hpp"

using namespace dpool::cluster;

namespace {

constexpr auto kJobLimit = 60s * kSlowdown;       // a job, start to end
constexpr auto kNoticeLimit = 10s * kSlowdown;    // the broker noticing a lost host
// A host whose cable is back reconnects on its next TCP retry: seconds, not milliseconds.
constexpr auto kRejoinLimit = 30s * kSlowdown;

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = why_unavailable()) GTEST_SKIP() << *why;
    remove_stale_namespaces();
    try {
      cluster_.emplace(3);
    } catch (const Unavailable& e) {
      GTEST_SKIP() << e.what();
    }
  }

  /* The broker and three worker hosts, each registered. */
  void start(std::vector<std::string> broker_flags = {}) {
    cluster().start_broker(std::move(broker_flags));
    cluster().start_workers();
    for (const auto& w : cluster().workers()) {
      ASSERT_TRUE(cluster().wait_registered(w, 1, kNoticeLimit)) << w << " did not register\n"
                                                                 << cluster().logs();
    }
  }

  /* Waits until `job` has delivered `n` results. */
  void wait_delivered(const Job& job, std::size_t n) {
    ASSERT_TRUE(dpool::test::wait_for([&] { return job.delivered() >= n; }, kJobLimit))
        << job.delivered() << " delivered\n" << job.output() << cluster().logs();
  }

  /* Runs a job to its end and checks it; returns how many tasks each host ran. */
  std::map<std::string, std::size_t> finish(Job& job, long tasks) {
    EXPECT_TRUE(job.finish(kJobLimit)) << job.output() << cluster().logs();
    return check_deliveries(cluster(), job.deliveries(), tasks);
  }

  /* A short job; true if `worker` ran some of it. */
  bool gets_work(const std::string& worker) {
    auto job = cluster().start_job(120, 10);
    return finish(job, 120)[worker] > 0;
  }

  Cluster& cluster() { return *cluster_; }

 private:
  std::optional<Cluster> cluster_;
};

std::size_t retried(const std::vector<Delivery>& deliveries) {
  std::size_t n = 0;
  for (const auto& d : deliveries) n += d.attempts > 1;
  return n;
}

TEST_F(ClusterTest, AJobFromTheClientHostRunsOnAllThreeWorkerHosts) {
  start();
  const long tasks = 300;
  auto job = cluster().start_job(tasks, 10);
  const auto by_host = finish(job, tasks);
  for (const auto& w : cluster().workers())
    EXPECT_GT(by_host.count(w) ? by_host.at(w) : 0, 0u) << w << " ran nothing";

  // The broker, asked from the client host, sees the same three hosts at work.
  const auto status = cluster().status();
  ASSERT_EQ(status["workers"].size(), 3u) << status.dump();
  for (const auto& w : cluster().workers()) {
    const auto pid = static_cast<unsigned>(cluster().worker_pid(w));
    const auto it =
        std::find_if(status["workers"].begin(), status["workers"].end(),
                     [&](const auto& s) { return s["pid"].template get<unsigned>() == pid; });
    ASSERT_NE(it, status["workers"].end()) << w << " missing from " << status.dump();
    EXPECT_GT((*it)["done"].get<unsigned long long>(), 0u) << w;
  }

  // The command line works across hosts too.
  const auto call = cluster().cli({"call", "where_square", "7", "0"});
  EXPECT_EQ(call.exit_code, 0) << call.output;
  EXPECT_EQ(call.output.rfind("[49,", 0), 0u) << call.output;

  // Nothing of the test subnet leaked into the namespace the test runs in.
  const auto leaked = ip({"-o", "addr", "show", "to", cluster().topology().subnet()});
  EXPECT_EQ(leaked.exit_code, 0) << leaked.output;
  EXPECT_EQ(leaked.output, "");
}

TEST_F(ClusterTest, ACutLinkHasItsTasksRunElsewhereAndTheHostRejoinsWhenItIsBack) {
  start();
  const long tasks = 600;
  auto job = cluster().start_job(tasks, 20);
  wait_delivered(job, 60);
  cluster().topology().set_link("w1", false);
  ASSERT_TRUE(cluster().wait_lost("w1", kNoticeLimit)) << cluster().logs();

  finish(job, tasks);
  // The leases the cut host held ran again (attempt 2), on the hosts that could still answer.
  const auto deliveries = job.deliveries();
  EXPECT_GT(retried(deliveries), 0u) << "no task of the cut host was run again elsewhere";
  for (const auto& d : deliveries) {
    if (d.attempts > 1) {
      EXPECT_NE(cluster().host_of(d.netns), "w1") << "task " << d.index;
    }
  }

  cluster().topology().set_link("w1", true);
  ASSERT_TRUE(cluster().wait_registered("w1", 2, kRejoinLimit)) << cluster().logs();
  EXPECT_TRUE(gets_work("w1")) << "the host is back but gets no work\n" << cluster().logs();
}

TEST_F(ClusterTest, AFrozenWorkerHostLosesNoTaskAndDeliversNoneTwice) {
  start();
  const long tasks = 600;
  auto job = cluster().start_job(tasks, 20);
  wait_delivered(job, 60);
  cluster().freeze("w2");
  // Frozen past the broker's patience: its leases go to the others while it still holds them.
  const bool noticed = cluster().wait_lost("w2", kNoticeLimit);
  cluster().thaw("w2");
  ASSERT_TRUE(noticed) << cluster().logs();

  finish(job, tasks);  // the thawed host's late results must not reach the caller again
  EXPECT_GT(retried(job.deliveries()), 0u) << "no task of the frozen host was run again elsewhere";
  ASSERT_TRUE(cluster().wait_registered("w2", 2, kRejoinLimit)) << cluster().logs();
  EXPECT_TRUE(gets_work("w2")) << "the thawed host gets no work\n" << cluster().logs();
}

TEST_F(ClusterTest, ACutClientLinkDelaysResultsButLosesAndDoublesNone) {
  start();
  const long tasks = 600;
  auto job = cluster().start_job(tasks, 20);
  wait_delivered(job, 60);
  cluster().topology().set_link("client", false);
  // The outage is the scenario, not a wait for something: longer than every expiry on both
  // sides, so the broker resends unACKed results and the client unACCEPTed tasks meanwhile.
  std::this_thread::sleep_for(kHeartbeat * 10);
  cluster().topology().set_link("client", true);
  finish(job, tasks);
}

bool broker_has_data_dir() {
  const auto help = run_command({DPOOL_BROKER_BIN, "--help"});
  return help.output.find("--data-dir") != std::string::npos;
}

/* The broker killed mid-job (SIGKILL) and started again on the same address, with --data-dir
 * (GetParam() true; SKIPPED while the broker has no such option) or without. */
class BrokerRestartTest : public ClusterTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    if (GetParam() && !broker_has_data_dir())
      GTEST_SKIP() << "dpool-broker has no --data-dir option yet";
    ClusterTest::SetUp();
  }
  [[nodiscard]] std::vector<std::string> broker_flags() const {
    return GetParam() ? std::vector<std::string>{"--data-dir", data_.path()}
                      : std::vector<std::string>{};
  }

 private:
  dpool::test::TempDir data_;
};

/* Either way the client resubmits what it has no result for and the worker hosts register
 * again, so the job completes, each result delivered once. */
TEST_P(BrokerRestartTest, TheJobCompletesWhenTheBrokerIsKilledAndStartedAgain) {
  start(broker_flags());
  const long tasks = 600;
  auto job = cluster().start_job(tasks, 20);
  wait_delivered(job, 100);
  cluster().kill_broker();
  cluster().start_broker(broker_flags());

  for (const auto& w : cluster().workers()) {
    EXPECT_TRUE(cluster().wait_registered(w, 1, kRejoinLimit)) << w << " did not come back\n"
                                                               << cluster().logs();
  }
  finish(job, tasks);
  EXPECT_EQ(cluster().status()["workers"].size(), 3u);
}

/* A detached job has no client left to resubmit it: only the broker's --data-dir can carry it
 * over a restart. With it the job completes; without it `dpool wait` says in one line that
 * the broker has no such job, instead of waiting forever. */
TEST_P(BrokerRestartTest, ADetachedJobOutlivesARestartOnlyWithTheDataDir) {
  start(broker_flags());
  const long tasks = 200;
  dpool::test::TempDir dir;
  std::string lines;
  for (long i = 0; i < tasks; ++i) lines += "[" + std::to_string(i) + ", 20]\n";
  const auto args = dir.write("args", lines);
  const auto submitted = cluster().cli({"submit", "--function", "where_square", "--args", args});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.output;
  const auto id = submitted.output.substr(0, submitted.output.find('\n'));
  cluster().kill_broker();
  cluster().start_broker(broker_flags());

  const auto waited =
      cluster().cli({"wait", id, "--timeout", std::to_string(40 * kSlowdown)}, kJobLimit);
  if (!GetParam()) {
    EXPECT_NE(waited.exit_code, 0) << waited.output;
    EXPECT_NE(waited.output.find("no job " + id), std::string::npos) << waited.output;
    return;
  }
  ASSERT_EQ(waited.exit_code, 0) << waited.output << cluster().logs();
  const auto result = cluster().cli({"result", id});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto values = dpool::test::lines_of(result.output);
  ASSERT_EQ(values.size(), static_cast<std::size_t>(tasks)) << result.output;
  for (long i = 0; i < tasks; ++i) {
    EXPECT_EQ(values[static_cast<std::size_t>(i)].rfind("[" + std::to_string(i * i) + ",", 0), 0u)
        << values[static_cast<std::size_t>(i)];
  }
}

std::string restart_name(const ::testing::TestParamInfo<bool>& p) {
  return p.param ? "WithDataDir" : "WithoutDataDir";
}

INSTANTIATE_TEST_SUITE_P(Cluster, BrokerRestartTest, ::testing::Values(false, true), restart_name);

}  // namespace
