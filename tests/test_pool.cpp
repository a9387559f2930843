/* dpool::Pool end to end: the embedded cluster forks this test program, so the tasks below
 * run in its worker processes exactly as a user's program's would. Covers every call of the
 * Pool API, its futures, failures, cancellation, lifetime, and a remote pool on a broker. */
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <ranges>
#include <set>
#include <thread>

#include "dpool/dpool.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;

namespace {

long long square(long long x) { return x * x; }
DPOOL_TASK(square);

long long add(long long a, long long b) { return a + b; }
DPOOL_TASK(add);

long long nap(long long millis) {
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return millis;
}
DPOOL_TASK(nap);

/* nap, after leaving a marker file: a test can wait for the task to have started. */
long long nap_marked(const std::string& marker, long long millis) {
  std::ofstream(marker) << "started";
  return nap(millis);
}
DPOOL_TASK(nap_marked);

long long fail_on_five(long long x) {
  if (x == 5) throw std::invalid_argument("five is not allowed");
  return x;
}
DPOOL_TASK(fail_on_five);

int whoami() { return static_cast<int>(::getpid()); }
DPOOL_TASK(whoami);

std::string g_initialized = "no";
void initialize(const std::string& value) { g_initialized = value; }
std::string initialized() { return g_initialized; }
DPOOL_TASK(initialized);

/* Dies the first time it runs for a marker path, succeeds after. */
long long die_once(const std::string& marker, long long x) {
  if (::access(marker.c_str(), F_OK) != 0) {
    std::ofstream(marker) << "x";
    ::kill(::getpid(), SIGKILL);
  }
  return x;
}
DPOOL_TASK(die_once);

void nothing() {}
DPOOL_TASK(nothing);

long long not_registered(long long x) { return x; }

std::vector<long long> iota(long long n) {
  std::vector<long long> v(static_cast<std::size_t>(n));
  for (long long i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

}  // namespace

TEST(Pool, MapReturnsEveryResultInInputOrder) {
  Pool pool(2);
  const auto xs = iota(1000);
  const auto ys = pool.map(square, xs);
  ASSERT_EQ(ys.size(), xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(ys[i], xs[i] * xs[i]);
  EXPECT_EQ(pool.map(square, xs, 1), ys);      // one item a chunk
  EXPECT_EQ(pool.map(square, xs, 5000), ys);   // one chunk for all
  EXPECT_TRUE(pool.map(square, std::vector<long long>{}).empty());
}

TEST(Pool, CallsByNameMatchCallsByPointer) {
  Pool pool(2);
  const auto xs = iota(100);
  EXPECT_EQ(pool.map<long long>("square", xs), pool.map(square, xs));
  EXPECT_EQ(pool.apply<long long>("add", 2LL, 3LL), 5);
}

TEST(Pool, StarmapUnpacksTuplesIntoArguments) {
  Pool pool(2);
  std::vector<std::tuple<long long, long long>> pairs;
  for (long long i = 0; i < 50; ++i) pairs.emplace_back(i, 2 * i);
  const auto sums = pool.starmap(add, pairs);
  for (long long i = 0; i < 50; ++i) EXPECT_EQ(sums[static_cast<std::size_t>(i)], 3 * i);
}

TEST(Pool, ImapYieldsInOrderAndImapUnorderedYieldsEveryResult) {
  Pool pool(2);
  const auto xs = iota(500);
  long long expected = 0;
  for (long long y : pool.imap(square, xs)) {
    EXPECT_EQ(y, expected * expected);
    ++expected;
  }
  EXPECT_EQ(expected, 500);
  std::multiset<long long> got;
  for (long long y : pool.imap_unordered(square, xs, 7)) got.insert(y);
  std::multiset<long long> want;
  for (auto x : xs) want.insert(x * x);
  EXPECT_EQ(got, want);
}

TEST(Pool, ImapReadsAnEndlessInputLazily) {
  Options options;
  options.processes = 2;
  options.imap_window = 64;
  Pool pool(options);
  long long n = 0;
  for (long long y : pool.imap(square, std::views::iota(0LL))) {
    ASSERT_EQ(y, n * n);
    if (++n == 2000) break;  // an eager read of the input would never get here
  }
  EXPECT_EQ(n, 2000);
}

TEST(Pool, ApplyAsyncRunsItsCallbackOrItsErrorCallback) {
  Pool pool(2);
  EXPECT_EQ(pool.apply(square, 12), 144);
  std::atomic<long long> got{0};
  std::atomic<bool> failed{false};
  auto ok =
      pool.apply_async(Callbacks<long long>{[&](const long long& v) { got = v; }, {}}, square, 9);
  auto bad = pool.apply_async(
      Callbacks<long long>{{}, [&](const std::exception_ptr& e) {
                             try {
                               std::rethrow_exception(e);
                             } catch (const RemoteError& r) {
                               failed = r.type() == "std::invalid_argument";
                             }
                           }},
      fail_on_five, 5);
  EXPECT_EQ(ok.get(), 81);
  EXPECT_THROW(bad.get(), RemoteError);
  EXPECT_TRUE(wait_for([&] { return got == 81 && failed; }, 5s));
  EXPECT_TRUE(ok.successful());
  EXPECT_FALSE(bad.successful());
}

TEST(Pool, AsyncResultWaitsWithTimeouts) {
  Pool pool(1);
  auto r = pool.apply_async(nap, 400);
  EXPECT_FALSE(r.ready());
  EXPECT_THROW((void)r.successful(), Error);
  EXPECT_FALSE(r.wait(20ms));
  try {
    (void)r.get(20ms);
    FAIL() << "get(timeout) must throw before the result is in";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kTimeout);
  }
  EXPECT_EQ(r.get(10s), 400);
  EXPECT_TRUE(r.ready());
}

TEST(Pool, FuturesReportDoneExceptionAndResult) {
  Pool pool(2);
  auto f = pool.submit(square, 6);
  auto g = pool.submit(fail_on_five, 5);
  EXPECT_EQ(f.result(10s), 36);
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.exception(), nullptr);
  ASSERT_NE(g.exception(10s), nullptr);
  EXPECT_THROW(g.result(), RemoteError);
  std::atomic<int> callbacks{0};
  f.add_done_callback([&](const Future<long long>&) { ++callbacks; });  // already done: runs now
  EXPECT_EQ(callbacks, 1);
  auto v = pool.submit(nothing);
  v.result(10s);
}

TEST(Pool, CancelStopsQueuedAndRunningTasks) {
  TempDir dir;
  const auto marker = dir.path() + "/started";
  Pool pool(1);
  const auto second_marker = dir.path() + "/second-started";
  // One function for both, so that they run in the order submitted (FIFO within a function).
  auto running = pool.submit(nap_marked, marker, 5000LL);
  auto queued = pool.submit(nap_marked, second_marker, 5000LL);
  ASSERT_TRUE(wait_for([&] { return std::filesystem::exists(marker); }, 30s))
      << "the first task never started";
  EXPECT_TRUE(queued.cancel());
  EXPECT_TRUE(queued.cancelled());
  EXPECT_FALSE(std::filesystem::exists(second_marker)) << "the queued task ran";
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(running.cancel());
  EXPECT_TRUE(running.cancelled());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s)
      << "a running task must be stopped, not awaited";
  EXPECT_THROW(running.result(), Error);
  // The pool goes on working.
  EXPECT_EQ(pool.apply(square, 3), 9);
  auto finished = pool.submit(square, 4);
  finished.wait();
  EXPECT_FALSE(finished.cancel());
}

TEST(Pool, AsCompletedYieldsFuturesAsTheyFinish) {
  Pool pool(3);
  std::vector<Future<long long>> fs{pool.submit(nap, 600), pool.submit(nap, 10),
                                    pool.submit(nap, 300)};
  std::vector<long long> order;
  for (const auto& f : as_completed(fs)) order.push_back(f.result());
  EXPECT_EQ(order, (std::vector<long long>{10, 300, 600}));
}

TEST(Pool, WaitReturnsOnFirstCompletedFirstExceptionOrAll) {
  Pool pool(3);
  std::vector<Future<long long>> fs{pool.submit(nap, 800), pool.submit(nap, 10),
                                    pool.submit(fail_on_five, 5)};
  auto first = wait(fs, ReturnWhen::kFirstCompleted);
  EXPECT_GE(first.done.size(), 1u);
  auto exception = wait(fs, ReturnWhen::kFirstException);
  EXPECT_TRUE(std::any_of(exception.done.begin(), exception.done.end(),
                          [](const auto& f) { return f.exception() != nullptr; }));
  EXPECT_FALSE(exception.not_done.empty());
  auto all = wait(fs);
  EXPECT_EQ(all.done.size(), 3u);
  EXPECT_TRUE(all.not_done.empty());
  auto none =
      wait(std::vector<Future<long long>>{pool.submit(nap, 2000)}, ReturnWhen::kAllCompleted, 50ms);
  EXPECT_EQ(none.not_done.size(), 1u);
}

TEST(Pool, OneFailingItemDoesNotLoseTheOthers) {
  Pool pool(2);
  const auto xs = iota(20);
  try {
    (void)pool.map(fail_on_five, xs, 4);
    FAIL() << "map must surface the failure";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.type(), "std::invalid_argument");
    EXPECT_EQ(e.message(), "five is not allowed");
    EXPECT_EQ(e.function(), "fail_on_five");
    EXPECT_GT(e.pid(), 0u);
    EXPECT_FALSE(e.host().empty());
  }
  std::vector<long long> ok;
  int failures = 0;
  auto results = pool.imap(fail_on_five, xs, 4);
  for (auto it = results.begin(); it != results.end(); ++it) {
    try {
      ok.push_back(*it);
    } catch (const RemoteError&) {
      ++failures;
    }
  }
  EXPECT_EQ(failures, 1);
  EXPECT_EQ(ok.size(), 19u);
}

TEST(Pool, ArgumentsThatDoNotFitAreRefusedBeforeSending) {
  Pool pool(1);
  EXPECT_THROW((void)pool.apply<long long>("square", std::string("seven")), ArgumentError);
  EXPECT_THROW((void)pool.apply<long long>("add", 1LL), ArgumentError);
  EXPECT_THROW((void)pool.map<long long>("square", std::vector<std::string>{"a", "b"}),
               ArgumentError);
  try {
    (void)pool.map(not_registered, iota(3));
    FAIL() << "an unregistered function must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kUsage);
  }
}

TEST(Pool, InitializerRunsInEveryWorkerProcessBeforeItsFirstTask) {
  Options options;
  options.processes = 2;
  options.initializer = [] { initialize("ready"); };
  Pool pool(options);
  const auto got = pool.starmap(initialized, std::vector<std::tuple<>>(20), 1);
  for (const auto& v : got) EXPECT_EQ(v, "ready");
}

TEST(Pool, MaxTasksPerChildReplacesProcessesWithoutStallingWork) {
  Options options;
  options.processes = 2;
  options.max_tasks_per_child = 5;
  Pool pool(options);
  std::set<int> pids;
  for (int v : pool.starmap(whoami, std::vector<std::tuple<>>(60), 1)) pids.insert(v);
  EXPECT_GE(pids.size(), 60u / 5u);
}

TEST(Pool, AWorkerProcessKilledMidMapCostsOneAttemptNotThePool) {
  TempDir dir;
  Pool pool(2);
  std::vector<std::tuple<std::string, long long>> args;
  for (long long i = 0; i < 40; ++i)
    args.emplace_back(dir.path() + "/marker-" + std::to_string(i % 3), i);
  const auto ys = pool.starmap(die_once, args, 1);
  for (long long i = 0; i < 40; ++i) EXPECT_EQ(ys[static_cast<std::size_t>(i)], i);
  EXPECT_EQ(pool.apply(square, 5), 25);
}

TEST(Pool, OnePoolServesSeveralThreadsAtOnce) {
  Pool pool(2);
  std::vector<std::thread> threads;
  std::atomic<int> right{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<long long> xs(300);
      for (long long i = 0; i < 300; ++i) xs[static_cast<std::size_t>(i)] = i + t * 1000;
      const auto ys = pool.map(square, xs);
      bool all = true;
      for (std::size_t i = 0; i < xs.size(); ++i) all = all && ys[i] == xs[i] * xs[i];
      right += all;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(right, 4);
}

TEST(Pool, CloseRefusesNewTasksAndJoinWaitsForOutstandingOnes) {
  Pool pool(2);
  EXPECT_THROW(pool.join(), Error);  // joining an open pool is a usage error, as in Python
  auto r = pool.apply_async(nap, 200);
  pool.close();
  EXPECT_THROW((void)pool.apply_async(square, 1), Error);
  pool.join();
  EXPECT_TRUE(r.ready());
  EXPECT_EQ(r.get(), 200);
}

TEST(Pool, TerminateCancelsOutstandingWork) {
  Pool pool(1);
  std::vector<AsyncResult<long long>> rs;
  for (int i = 0; i < 5; ++i) rs.push_back(pool.apply_async(nap, 3000));
  const auto start = std::chrono::steady_clock::now();
  pool.terminate();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  for (auto& r : rs) {
    ASSERT_TRUE(r.ready());
    EXPECT_FALSE(r.successful());
  }
}

TEST(Pool, TheDestructorWaitsForOutstandingTasks) {
  AsyncResult<long long> r;
  {
    Pool pool(1);
    r = pool.apply_async(nap, 300);
  }
  ASSERT_TRUE(r.ready());
  EXPECT_EQ(r.get(), 300);
}

TEST(Pool, ARemotePoolRunsTheSameCallsOnABroker) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 2);
  Options options;
  options.broker = broker.endpoint;
  Pool pool(options);
  const auto xs = iota(200);
  const auto ys = pool.map<long long>("square", xs);
  for (std::size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(ys[i], xs[i] * xs[i]);
  EXPECT_EQ(pool.apply<long long>("add", 40LL, 2LL), 42);
  // Options that only an embedded cluster can honour are refused, not silently ignored.
  options.processes = 3;
  EXPECT_THROW(Pool{options}, Error);
}
