/* Detached jobs and STATUS through dpool::Client, against a real dpool-broker and worker host
 * (docs/protocol.md, "Detached jobs"): a job outlives the client that submitted it, its
 * results come back in order to any client, it can be cancelled and forgotten, a submitter
 * that leaves before sealing does not leave anyone waiting forever, and finished jobs expire.
 */
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "support/collector.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;

namespace {

constexpr auto kAnswer = 20s;

/* Submits `count` tasks of `function` with arguments args(i) into `job`; waits for the broker
 * to hold each (a job task completes on ACCEPT). */
template <class Args>
void put(Client& client, const std::string& job, const std::string& function, std::uint64_t count,
         Args args, std::uint64_t first = 0) {
  std::vector<std::future<TaskResult>> accepted;
  for (std::uint64_t i = first; i < first + count; ++i) {
    auto promise = std::make_shared<std::promise<TaskResult>>();
    accepted.push_back(promise->get_future());
    TaskOptions options;
    options.job = job;
    options.index = i;
    client.submit(
        function, args(i), [promise](TaskResult&& r) { promise->set_value(std::move(r)); },
        options);
  }
  for (auto& a : accepted) {
    ASSERT_EQ(a.wait_for(kAnswer), std::future_status::ready);
    auto r = a.get();
    ASSERT_TRUE(r.ok()) << r.meta.error_type << ": " << r.meta.error_message;
  }
}

auto squares_of_index = [](std::uint64_t i) { return pack_args(static_cast<long long>(i)); };

wire::JobInfo info(Client& client, const std::string& job, JobOp op = JobOp::kInfo,
                   std::uint64_t total = 0) {
  auto f = client.job(job, op, total);
  if (f.wait_for(kAnswer) != std::future_status::ready)
    throw std::runtime_error("no JOB_INFO in time");
  return f.get();
}

bool wait_done(Client& client, const std::string& job, std::chrono::milliseconds timeout = 60s) {
  return wait_for([&] {
    auto i = info(client, job);
    return i.sealed && i.finished == i.total;
  }, timeout);
}

/* Every result of a finished job, read page by page from the start. */
std::vector<std::pair<wire::JobResult, std::string>> read_all(Client& client,
                                                              const std::string& job,
                                                              std::uint32_t page_size = 1000) {
  std::vector<std::pair<wire::JobResult, std::string>> out;
  std::uint64_t next = 0;
  for (;;) {
    auto f = client.fetch(job, next, page_size);
    if (f.wait_for(kAnswer) != std::future_status::ready)
      throw std::runtime_error("no FETCHED in time");
    auto page = f.get();
    if (!page.meta.found) throw std::runtime_error("job not found");
    if (page.meta.results.empty()) return out;
    for (std::size_t i = 0; i < page.meta.results.size(); ++i) {
      out.emplace_back(page.meta.results[i], page.values[i].to_string());
    }
    next = page.meta.next;
  }
}

long long value_of(const std::string& bytes) {
  return msgpack::unpack(bytes.data(), bytes.size()).get().as<long long>();
}

}  // namespace

TEST(Jobs, OutliveTheirSubmitterAndComeBackInOrderToAnotherClient) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 2);
  constexpr std::uint64_t n = 3000;
  {
    Client submitter(client_config(broker.endpoint));
    put(submitter, "squares-1", "square", n, squares_of_index);
    const auto sealed = info(submitter, "squares-1", JobOp::kSeal, n);
    EXPECT_TRUE(sealed.sealed);
    EXPECT_EQ(sealed.total, n);
    EXPECT_EQ(sealed.function, "square");
  }  // the submitter is gone
  Client reader(client_config(broker.endpoint));
  ASSERT_TRUE(wait_done(reader, "squares-1"));
  const auto results = read_all(reader, "squares-1", 700);  // pages that do not divide n
  ASSERT_EQ(results.size(), n);
  for (std::uint64_t i = 0; i < n; ++i) {
    ASSERT_EQ(results[i].first.index, i);
    ASSERT_EQ(results[i].first.meta.status, Status::kOk);
    ASSERT_EQ(value_of(results[i].second), static_cast<long long>(i * i)) << "position " << i;
  }
  // Reading does not consume: a second reader sees the same.
  EXPECT_EQ(read_all(reader, "squares-1").size(), n);
  const auto done = info(reader, "squares-1");
  EXPECT_EQ(done.failed, 0u);
  EXPECT_GT(done.expires_in_ms, 23u * 3600 * 1000);  // the default TTL is a day
}

TEST(Jobs, ResultsAreReadInOrderWhileTheJobRuns) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 2);
  Client client(client_config(broker.endpoint));
  // Later positions finish first: a page holds only the results without a gap before them.
  put(client, "ordered", "slow_square", 6, [](std::uint64_t i) {
    return pack_args(static_cast<long long>(i), static_cast<int>(600 - 100 * i));
  });
  (void)info(client, "ordered", JobOp::kSeal, 6);
  std::uint64_t next = 0;
  ASSERT_TRUE(wait_for([&] {
    auto page = client.fetch("ordered", next).get();
    for (const auto& r : page.meta.results) {
      EXPECT_EQ(r.index, next);
      ++next;
    }
    return next == 6;
  }, 30s));
}

TEST(Jobs, FailuresAreKeptPerPosition) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 1);
  Client client(client_config(broker.endpoint));
  put(client, "mixed", "square", 2, squares_of_index);
  put(
      client, "mixed", "fail", 1, [](std::uint64_t) { return pack_args(std::string("no good")); },
      2);
  (void)info(client, "mixed", JobOp::kSeal, 3);
  ASSERT_TRUE(wait_done(client, "mixed"));
  const auto i = info(client, "mixed");
  EXPECT_EQ(i.failed, 1u);
  const auto results = read_all(client, "mixed");
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[2].first.meta.status, Status::kError);
  EXPECT_EQ(results[2].first.meta.error_message, "no good");
}

TEST(Jobs, ASealedJobTakesNoMoreTasksAndBadIdsAreRefused) {
  auto broker = BrokerProcess::start();
  Client client(client_config(broker.endpoint));
  put(client, "closed", "square", 1, squares_of_index);
  (void)info(client, "closed", JobOp::kSeal, 1);
  auto refused = [&](const std::string& job, std::uint64_t index) {
    std::promise<TaskResult> p;
    auto f = p.get_future();
    TaskOptions options;
    options.job = job;
    options.index = index;
    client.submit(
        "square", pack_args(1LL), [&p](TaskResult&& r) { p.set_value(std::move(r)); }, options);
    EXPECT_EQ(f.wait_for(kAnswer), std::future_status::ready);
    return f.get();
  };
  const auto late = refused("closed", 1);
  EXPECT_EQ(late.meta.status, Status::kRejected);
  EXPECT_EQ(late.meta.error_type, "JobSealed");
  EXPECT_EQ(refused("closed", 0).meta.status, Status::kOk) << "a task sent again is still accepted";
  EXPECT_EQ(refused("no spaces allowed", 0).meta.error_type, "InvalidJobId");
  EXPECT_EQ(refused(std::string(65, 'x'), 0).meta.error_type, "InvalidJobId");
  EXPECT_FALSE(info(client, "never-submitted").found);
}

TEST(Jobs, CancelEndsQueuedAndRunningTasks) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 1);
  Client client(client_config(broker.endpoint));
  put(client, "long", "slow_square", 20,
      [](std::uint64_t i) { return pack_args(static_cast<long long>(i), 60000); });
  (void)info(client, "long", JobOp::kSeal, 20);
  ASSERT_TRUE(wait_for([&] { return info(client, "long").running > 0; }, 20s));
  const auto cancelled = info(client, "long", JobOp::kCancel);
  EXPECT_EQ(cancelled.note, "cancelled");
  ASSERT_TRUE(wait_done(client, "long", 20s)) << "the running task's cancellation must come back";
  const auto i = info(client, "long");
  EXPECT_EQ(i.cancelled, 20u);
  for (const auto& [r, value] : read_all(client, "long"))
    EXPECT_EQ(r.meta.status, Status::kCancelled);
}

TEST(Jobs, ASubmitterThatLeavesBeforeSealingEndsTheJobWithANote) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 1);
  {
    Client submitter(client_config(broker.endpoint));
    put(submitter, "half", "square", 5, squares_of_index);
  }  // gone without SEAL
  Client client(client_config(broker.endpoint));
  ASSERT_TRUE(wait_done(client, "half", 20s));
  const auto i = info(client, "half");
  EXPECT_EQ(i.total, 5u);
  EXPECT_NE(i.note.find("submitter left"), std::string::npos) << i.note;
}

TEST(Jobs, ForgetAndExpiry) {
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 200ms, {"--job-ttl", "1s"});
  auto worker = start_worker(broker.endpoint, 1);
  Client client(client_config(broker.endpoint));
  put(client, "kept", "square", 3, squares_of_index);
  (void)info(client, "kept", JobOp::kSeal, 3);
  put(client, "dropped", "square", 3, squares_of_index);
  (void)info(client, "dropped", JobOp::kSeal, 3);
  EXPECT_FALSE(info(client, "dropped", JobOp::kForget).found);
  EXPECT_FALSE(info(client, "dropped").found);
  ASSERT_TRUE(wait_done(client, "kept"));
  EXPECT_TRUE(wait_for([&] { return !info(client, "kept").found; }, 20s))
      << "a finished job expires after its TTL";
}

TEST(Status, ReportsWorkersQueuesJobsAndRate) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 2, 200ms, {"--tag", "zone=test"});
  Client client(client_config(broker.endpoint));
  put(client, "status-job", "square", 50, squares_of_index);
  (void)info(client, "status-job", JobOp::kSeal, 50);
  ASSERT_TRUE(wait_done(client, "status-job"));
  // Tasks for a function nobody offers wait, and show up as such.
  client.submit("nobody-offers-this", pack_args(1), [](TaskResult&&) {});
  wire::Report r;
  ASSERT_TRUE(wait_for([&] {
    r = client.status().get();
    return std::any_of(r.functions.begin(), r.functions.end(),
                       [](auto& f) { return f.name == "nobody-offers-this"; });
  }, 20s));
  EXPECT_EQ(r.version, DPOOL_VERSION);
  EXPECT_GT(r.uptime_ms, 0u);
  ASSERT_EQ(r.workers.size(), 1u);
  EXPECT_EQ(r.workers[0].processes, 2u);
  EXPECT_EQ(r.workers[0].done, 50u);
  EXPECT_EQ(r.workers[0].tags.at("zone"), "test");
  EXPECT_NE(std::find(r.workers[0].functions.begin(), r.workers[0].functions.end(), "square"),
            r.workers[0].functions.end());
  for (const auto& f : r.functions) {
    if (f.name == "nobody-offers-this") {
      EXPECT_EQ(f.queued, 1u);
      EXPECT_EQ(f.workers, 0u);
    }
    if (f.name == "square") {
      EXPECT_EQ(f.workers, 1u);
    }
  }
  ASSERT_EQ(r.jobs.size(), 1u);
  EXPECT_EQ(r.jobs[0].job, "status-job");
  EXPECT_EQ(r.jobs[0].finished, 50u);
  EXPECT_GE(r.completed, 50u);
  EXPECT_GT(r.rate, 0.0);
}

TEST(Status, AnUnreachableBrokerFailsTheRequest) {
  auto config = client_config("tcp://127.0.0.1:1");
  config.connect_timeout = 500ms;
  Client client(config);
  auto f = client.status();
  ASSERT_EQ(f.wait_for(kAnswer), std::future_status::ready);
  try {
    (void)f.get();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUnreachable);
  }
}
