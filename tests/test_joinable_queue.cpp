/* dpool::JoinableQueue: put, results as they come, and join() over every producer, in one
 * process and across processes sharing a queue name on one broker. */
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "dpool/dpool.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;

namespace {

long long twice(long long x) { return 2 * x; }
DPOOL_TASK(twice);

long long doze(long long millis) {
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return millis;
}
DPOOL_TASK(doze);

}  // namespace

TEST(JoinableQueue, JoinReturnsOnceEveryPutTaskIsDone) {
  Pool pool(2);
  JoinableQueue<long long> q(pool, doze);
  for (int i = 0; i < 10; ++i) q.put(30);
  EXPECT_GT(q.unfinished(), 0u);
  q.join();
  EXPECT_EQ(q.unfinished(), 0u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(q.get(), 30);
  EXPECT_FALSE(q.get(10ms).has_value());
}

TEST(JoinableQueue, ResultsComeAsTasksFinishFromManyProducers) {
  Pool pool(2);
  JoinableQueue<long long> q(pool, twice);
  std::vector<std::thread> producers;
  for (int t = 0; t < 4; ++t) {
    producers.emplace_back([&, t] {
      for (long long i = 0; i < 50; ++i) q.put(t * 100 + i);
    });
  }
  for (auto& p : producers) p.join();
  std::multiset<long long> got;
  for (int i = 0; i < 200; ++i) got.insert(q.get());
  q.join();
  std::multiset<long long> want;
  for (long long t = 0; t < 4; ++t) {
    for (long long i = 0; i < 50; ++i) want.insert(2 * (t * 100 + i));
  }
  EXPECT_EQ(got, want);
}

long long fails(long long) { throw std::runtime_error("no"); }
DPOOL_TASK(fails);

TEST(JoinableQueue, AFailedTaskCountsAsDoneAndItsGetThrows) {
  Pool pool(1);
  JoinableQueue<long long> q(pool, fails);
  q.join();  // nothing put yet: returns at once
  q.put(1);
  q.join();
  EXPECT_THROW(q.get(), RemoteError);
  EXPECT_THROW(q.put(std::string("not a number")), ArgumentError);
  EXPECT_EQ(q.unfinished(), 0u);
}

TEST(JoinableQueue, JoinWaitsForTasksThatOtherProducersPutUnderTheSameName) {
  auto broker = BrokerProcess::start();
  // A process for each slow task and one for the probe below, which so never waits behind them.
  auto worker = start_worker(broker.endpoint, 5);
  Options options;
  options.broker = broker.endpoint;
  Pool producer(options);
  Pool joiner(options);
  JoinableQueue<long long> put_side(producer, "slow_square", "shared-queue");
  JoinableQueue<long long> join_side(joiner, "slow_square", "shared-queue");
  for (long long i = 0; i < 4; ++i) put_side.put(i, 600);
  // A later task's result proves the broker has taken the four puts (one connection, in order).
  ASSERT_EQ(producer.apply<long long>("square", 3LL), 9);
  const auto start = std::chrono::steady_clock::now();
  join_side.join();  // this side put nothing: it waits for the other producer's tasks
  EXPECT_GE(std::chrono::steady_clock::now() - start, 500ms);
  put_side.join();
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(put_side.get(5s).has_value());
}
