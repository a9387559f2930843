/* Task policy through dpool::Pool on its embedded cluster: Options::task and Pool::with().
 *
 * Covers: retries after an exception until the budget is spent, with the history of failed
 * attempts in the RemoteError; a hard time limit that kills a hanging task, fails it as a
 * time-out (or retries it with a time-out budget) and leaves the pool serving; a task needing
 * tags that no worker has fails at its deadline saying so; options out of range are refused
 * before anything is sent; a view's policy does not leak into the pool's other calls.
 */
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "dpool/dpool.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace std::chrono_literals;

namespace {

long long square(long long x) { return x * x; }
DPOOL_TASK(square);

long long hang(long long millis) {
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return millis;
}
DPOOL_TASK(hang);

/* Throws until it has been called `failures` times for `counter` (a file counting calls). */
long long fail_first(const std::string& counter, long long failures) {
  long long calls = 0;
  std::ifstream(counter) >> calls;
  std::ofstream(counter) << ++calls;
  if (calls <= failures) throw std::runtime_error("call " + std::to_string(calls) + " fails");
  return calls;
}
DPOOL_TASK(fail_first);

class PoolPolicy : public ::testing::Test {
 protected:
  std::string counter(const std::string& name) { return dir_.path() + "/" + name; }
  test::TempDir dir_;
};

TEST_F(PoolPolicy, RetriesAnExceptionWithinItsBudget) {
  Pool pool(2);
  auto patient = pool.with({.retries = 2, .retry_delay = 10ms});
  EXPECT_EQ(patient.apply(fail_first, counter("a"), 2LL), 3) << "two failures, then the third call";

  try {
    (void)pool.with({.retries = 1}).apply(fail_first, counter("b"), 5LL);
    FAIL() << "the budget of one retry should have run out";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), Errc::kRemote);
    EXPECT_EQ(e.attempts(), 2u);
    ASSERT_EQ(e.history().size(), 2u);
    EXPECT_NE(e.history()[0].message.find("call 1 fails"), std::string::npos);
    EXPECT_NE(e.history()[1].message.find("call 2 fails"), std::string::npos);
    EXPECT_FALSE(e.history()[1].host.empty());
  }
  // The pool's own default (no retries) is untouched by the views.
  EXPECT_THROW((void)pool.apply(fail_first, counter("c"), 1LL), RemoteError);
}

TEST_F(PoolPolicy, AHardTimeLimitKillsTheTaskAndThePoolKeepsServing) {
  Pool pool(1);
  const auto start = std::chrono::steady_clock::now();
  try {
    (void)pool.with({.timeout = 300ms}).apply(hang, 30000LL);
    FAIL() << "the task should have been killed at its time limit";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), Errc::kTimeout);
    EXPECT_EQ(e.type(), "Timeout");
    EXPECT_EQ(e.attempts(), 1u);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s)
      << "killed long before the task would end";
  EXPECT_EQ(pool.apply(square, 7LL), 49) << "a new process serves after the kill";

  // With a time-out budget the task runs again, and fails for good when that is spent too.
  try {
    (void)pool.with({.timeout = 200ms, .timeout_retries = 1}).apply(hang, 30000LL);
    FAIL();
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), Errc::kTimeout);
    EXPECT_EQ(e.attempts(), 2u);
    EXPECT_EQ(e.history().size(), 2u);
  }
  // A limit that the task stays within changes nothing.
  EXPECT_EQ(pool.with({.timeout = 10s}).apply(hang, 10LL), 10);
}

TEST_F(PoolPolicy, ATaskNeedingTagsNoWorkerHasFailsAtItsDeadline) {
  Pool pool(1);
  try {
    (void)pool.with({.needs = {{"gpu", "1"}}, .expires = 500ms}).apply(square, 3LL);
    FAIL() << "no embedded worker has gpu=1";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), Errc::kTimeout);
    EXPECT_EQ(e.type(), "Expired");
    EXPECT_NE(e.message().find("gpu=1"), std::string::npos) << e.message();
  }
  EXPECT_EQ(pool.apply(square, 3LL), 9);
}

TEST_F(PoolPolicy, RefusesOptionsOutOfRangeBeforeSending) {
  Pool pool(1);
  EXPECT_THROW((void)pool.with({.priority = 10}).apply_async(square, 1LL), Error);
  EXPECT_THROW((void)pool.with({.retry_backoff = 0.5}).apply_async(square, 1LL), Error);
  EXPECT_THROW((void)pool.with({.timeout = -1ms}).apply_async(square, 1LL), Error);
  EXPECT_EQ(pool.with({.priority = 9}).map(square, std::vector<long long>{1, 2, 3}),
            (std::vector<long long>{1, 4, 9}));
}

}  // namespace
