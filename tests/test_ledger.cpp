/* The broker's task ledger (ledger.hpp), on its own: no sockets.
 *
 * Covers every transition of the state table (lease, finish, worker lost, lost in transit,
 * drop), the attempt limit, events refused in the wrong state, round-robin fairness between
 * clients of one function, lazy skipping of dropped tasks with exact queue counts, function
 * interning, independence of per-function queues, and payloads carried through all of it:
 * small ones copied into the task's record, large ones kept and shared (task.hpp), and task
 * pointers that stay valid while the ledger grows and shrinks around them.
 */
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "ledger.hpp"

namespace {

using dpool::detail::FunctionId;
using dpool::detail::kInlinePayload;
using dpool::detail::Ledger;
using dpool::detail::PeerHandle;
using dpool::detail::Task;
using dpool::detail::TaskEvent;
using dpool::detail::TaskKey;
using dpool::detail::TaskState;
using dpool::detail::Transition;

constexpr PeerHandle kClientA = 1;
constexpr PeerHandle kClientB = 2;
constexpr PeerHandle kWorker = 100;

zmq::message_t bytes(std::string_view s) { return zmq::message_t(s.data(), s.size()); }

std::string_view view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

/* Leases everything queued for `f`, returning the keys in lease order. */
std::vector<TaskKey> drain(Ledger& ledger, FunctionId f) {
  std::vector<TaskKey> keys;
  while (Task* t = ledger.lease_next(f, kWorker)) keys.push_back(t->key);
  return keys;
}

TEST(Ledger, AddLeaseFinishRemovesTheTask) {
  Ledger ledger;
  const auto f = ledger.function_id("add");
  const std::string payload(1000, 'p');  // large enough that ZeroMQ does not inline it
  const TaskKey key = ledger.add(kClientA, 41, f, 3, bytes(payload));

  EXPECT_EQ(ledger.size(), 1u);
  EXPECT_EQ(ledger.queued(f), 1u);
  EXPECT_EQ(ledger.queued_total(), 1u);
  Task* queued = ledger.find(key);
  ASSERT_NE(queued, nullptr);
  EXPECT_EQ(queued->state, TaskState::kQueued);
  EXPECT_EQ(queued->attempt, 0u);
  EXPECT_EQ(queued->client, kClientA);
  EXPECT_EQ(queued->client_id, 41u);
  EXPECT_EQ(queued->max_attempts, 3u);

  Task* t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->key, key);
  EXPECT_EQ(t->state, TaskState::kLeased);
  EXPECT_EQ(t->attempt, 1u);
  EXPECT_EQ(t->worker, kWorker);
  EXPECT_EQ(t->payload(), payload);
  EXPECT_EQ(ledger.queued(f), 0u);
  EXPECT_EQ(ledger.queued_total(), 0u);
  EXPECT_EQ(ledger.size(), 1u);

  EXPECT_EQ(ledger.apply(*t, TaskEvent::kFinish), Transition::kRemoved);
  EXPECT_EQ(ledger.find(key), nullptr);
  EXPECT_EQ(ledger.size(), 0u);
  EXPECT_EQ(ledger.lease_next(f, kWorker), nullptr);
}

TEST(Ledger, LeaseNextOnEmptyQueueReturnsNull) {
  Ledger ledger;
  const auto f = ledger.function_id("idle");
  EXPECT_EQ(ledger.lease_next(f, kWorker), nullptr);
  EXPECT_EQ(ledger.queued(f), 0u);
}

TEST(Ledger, TasksOfOneClientLeaseInSubmissionOrder) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  std::vector<TaskKey> added;
  for (int i = 0; i < 5; ++i) added.push_back(ledger.add(kClientA, i, f, 3, bytes("x")));
  EXPECT_EQ(drain(ledger, f), added);
}

TEST(Ledger, WorkerLostRequeuesAtTheFrontAndCountsLost) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  const TaskKey first = ledger.add(kClientA, 1, f, 3, bytes("first"));
  const TaskKey second = ledger.add(kClientA, 2, f, 3, bytes("second"));
  const TaskKey third = ledger.add(kClientA, 3, f, 3, bytes("third"));

  Task* t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->key, first);
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kWorkerLost), Transition::kQueued);
  EXPECT_EQ(t->state, TaskState::kQueued);
  EXPECT_EQ(t->lost, 1u);
  EXPECT_EQ(t->attempt, 1u);
  EXPECT_EQ(ledger.queued(f), 3u);
  EXPECT_EQ(ledger.queued_total(), 3u);

  // The requeued task is leased before the others; losing `second` likewise puts it ahead of
  // `third`.
  Task* again = ledger.lease_next(f, kWorker);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->key, first) << "a requeued task is first in line";
  EXPECT_EQ(again->attempt, 2u);
  EXPECT_EQ(again->payload(), "first");
  Task* next = ledger.lease_next(f, kWorker);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->key, second);
  EXPECT_EQ(ledger.apply(*next, TaskEvent::kWorkerLost), Transition::kQueued);
  EXPECT_EQ(drain(ledger, f), (std::vector<TaskKey>{second, third}));
}

TEST(Ledger, WorkerLostOnLastAllowedAttemptExhaustsTheTask) {
  Ledger ledger;
  const auto f = ledger.function_id("crashy");
  const TaskKey key = ledger.add(kClientA, 7, f, 3, bytes("boom"));

  for (std::uint32_t attempt = 1; attempt <= 2; ++attempt) {
    Task* t = ledger.lease_next(f, kWorker);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->attempt, attempt);
    EXPECT_EQ(ledger.apply(*t, TaskEvent::kWorkerLost), Transition::kQueued);
    EXPECT_EQ(t->lost, attempt);
  }
  Task* t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->attempt, 3u);
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kWorkerLost), Transition::kExhausted);
  EXPECT_EQ(ledger.find(key), nullptr);
  EXPECT_EQ(ledger.size(), 0u);
  EXPECT_EQ(ledger.queued(f), 0u);
  EXPECT_EQ(ledger.queued_total(), 0u);
  EXPECT_EQ(ledger.lease_next(f, kWorker), nullptr);
}

TEST(Ledger, LostInTransitRequeuesWithoutChargingButTheNextLeaseCountsAnAttempt) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  const TaskKey key = ledger.add(kClientA, 1, f, 1, bytes("payload"));
  const TaskKey other = ledger.add(kClientA, 2, f, 1, bytes("other"));

  // max_attempts 1: a charged loss would exhaust it; lost in transit never does.
  for (std::uint32_t attempt = 1; attempt <= 5; ++attempt) {
    Task* t = ledger.lease_next(f, kWorker);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->key, key) << "requeued at the front";
    EXPECT_EQ(t->attempt, attempt);
    EXPECT_EQ(ledger.apply(*t, TaskEvent::kLostInTransit), Transition::kQueued);
    EXPECT_EQ(t->state, TaskState::kQueued);
    EXPECT_EQ(t->lost, 0u);
    EXPECT_EQ(ledger.queued(f), 2u);
  }
  Task* t = ledger.find(key);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->payload(), "payload");
  EXPECT_EQ(drain(ledger, f), (std::vector<TaskKey>{key, other}));
}

TEST(Ledger, ClientsOfOneFunctionAreServedInTurn) {
  Ledger ledger;
  const auto f = ledger.function_id("shared");
  for (int i = 0; i < 1000; ++i) ledger.add(kClientA, i, f, 3, bytes("a"));
  for (int i = 0; i < 10; ++i) ledger.add(kClientB, i, f, 3, bytes("b"));
  EXPECT_EQ(ledger.queued(f), 1010u);

  int b_leases = 0;
  for (int i = 0; i < 20; ++i) {
    Task* t = ledger.lease_next(f, kWorker);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->client, i % 2 == 0 ? kClientA : kClientB) << "lease " << i;
    EXPECT_EQ(t->client_id, static_cast<std::uint64_t>(i / 2)) << "lease " << i;
    if (t->client == kClientB) ++b_leases;
  }
  EXPECT_EQ(b_leases, 10);
  EXPECT_EQ(ledger.queued(f), 990u);
  Task* t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->client, kClientA) << "B has nothing left";
}

TEST(Ledger, DroppedQueuedTaskIsSkippedAndCountsStayExact) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  const TaskKey k1 = ledger.add(kClientA, 1, f, 3, bytes("1"));
  const TaskKey k2 = ledger.add(kClientA, 2, f, 3, bytes("2"));
  const TaskKey k3 = ledger.add(kClientB, 3, f, 3, bytes("3"));
  const TaskKey k4 = ledger.add(kClientA, 4, f, 3, bytes("4"));

  Task* t = ledger.find(k1);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kDrop), Transition::kRemoved);
  t = ledger.find(k3);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kDrop), Transition::kRemoved);
  EXPECT_EQ(ledger.find(k1), nullptr);
  EXPECT_EQ(ledger.size(), 2u);
  EXPECT_EQ(ledger.queued(f), 2u);
  EXPECT_EQ(ledger.queued_total(), 2u);

  Task* first = ledger.lease_next(f, kWorker);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->key, k2);
  EXPECT_EQ(ledger.queued(f), 1u);
  EXPECT_EQ(ledger.queued_total(), 1u);
  EXPECT_EQ(drain(ledger, f), (std::vector<TaskKey>{k4}));
  EXPECT_EQ(ledger.queued(f), 0u);
  EXPECT_EQ(ledger.queued_total(), 0u);
  EXPECT_EQ(ledger.lease_next(f, kWorker), nullptr);
}

TEST(Ledger, DroppingEveryQueuedTaskEmptiesTheQueueAndItRefillsLater) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  std::vector<TaskKey> keys;
  for (int i = 0; i < 4; ++i) keys.push_back(ledger.add(kClientA, i, f, 3, bytes("x")));
  for (auto k : keys) ledger.apply(*ledger.find(k), TaskEvent::kDrop);
  EXPECT_EQ(ledger.queued(f), 0u);
  EXPECT_EQ(ledger.queued_total(), 0u);
  EXPECT_EQ(ledger.size(), 0u);
  EXPECT_EQ(ledger.lease_next(f, kWorker), nullptr);

  const TaskKey fresh = ledger.add(kClientA, 9, f, 3, bytes("fresh"));
  EXPECT_EQ(ledger.queued(f), 1u);
  Task* t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->key, fresh);
  EXPECT_EQ(t->payload(), "fresh");
}

TEST(Ledger, DroppingALeasedTaskRemovesItWithoutTouchingQueueCounts) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  ledger.add(kClientA, 1, f, 3, bytes("1"));
  ledger.add(kClientA, 2, f, 3, bytes("2"));
  Task* t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  const TaskKey key = t->key;
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kDrop), Transition::kRemoved);
  EXPECT_EQ(ledger.find(key), nullptr);
  EXPECT_EQ(ledger.size(), 1u);
  EXPECT_EQ(ledger.queued(f), 1u);
  EXPECT_EQ(ledger.queued_total(), 1u);
}

TEST(Ledger, EventsInTheWrongStateAreRefused) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  const TaskKey key = ledger.add(kClientA, 1, f, 3, bytes("x"));
  Task* t = ledger.find(key);
  ASSERT_NE(t, nullptr);

  // A queued task cannot finish or be lost.
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kFinish), Transition::kRefused);
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kWorkerLost), Transition::kRefused);
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kLostInTransit), Transition::kRefused);
  EXPECT_EQ(t->state, TaskState::kQueued);
  EXPECT_EQ(t->lost, 0u);
  EXPECT_EQ(ledger.queued(f), 1u);
  EXPECT_EQ(ledger.queued_total(), 1u);

  // A leased task cannot be leased again.
  Task* leased = ledger.lease_next(f, kWorker);
  ASSERT_EQ(leased, t);
  EXPECT_EQ(ledger.apply(*t, TaskEvent::kLease, kWorker + 1), Transition::kRefused);
  EXPECT_EQ(t->worker, kWorker);
  EXPECT_EQ(t->attempt, 1u);
  EXPECT_EQ(ledger.queued(f), 0u);
  EXPECT_EQ(ledger.queued_total(), 0u);
}

TEST(Ledger, FunctionIdInterningIsStable) {
  Ledger ledger;
  const auto add = ledger.function_id("add");
  const auto mul = ledger.function_id("mul");
  EXPECT_NE(add, mul);
  EXPECT_EQ(ledger.function_id("add"), add);
  EXPECT_EQ(ledger.function_id("mul"), mul);
  EXPECT_EQ(ledger.function_count(), 2u);
  for (int i = 0; i < 100; ++i) ledger.function_id("fn" + std::to_string(i));
  EXPECT_EQ(ledger.function_id("add"), add);
  EXPECT_EQ(ledger.function_name(add), "add");
  EXPECT_EQ(ledger.function_name(mul), "mul");
  EXPECT_EQ(ledger.function_count(), 102u);
}

TEST(Ledger, PerFunctionQueuesAreIndependent) {
  Ledger ledger;
  const auto add = ledger.function_id("add");
  const auto mul = ledger.function_id("mul");
  const auto idle = ledger.function_id("idle");
  const TaskKey a1 = ledger.add(kClientA, 1, add, 3, bytes("a1"));
  const TaskKey m1 = ledger.add(kClientA, 2, mul, 3, bytes("m1"));
  const TaskKey a2 = ledger.add(kClientB, 3, add, 3, bytes("a2"));
  EXPECT_EQ(ledger.queued(add), 2u);
  EXPECT_EQ(ledger.queued(mul), 1u);
  EXPECT_EQ(ledger.queued(idle), 0u);
  EXPECT_EQ(ledger.queued_total(), 3u);
  EXPECT_EQ(ledger.lease_next(idle, kWorker), nullptr);

  Task* m = ledger.lease_next(mul, kWorker);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->key, m1);
  EXPECT_EQ(m->function, mul);
  EXPECT_EQ(ledger.lease_next(mul, kWorker), nullptr);
  EXPECT_EQ(ledger.queued(add), 2u);
  EXPECT_EQ(ledger.queued_total(), 2u);

  // Losing the mul task requeues it on mul, not add.
  EXPECT_EQ(ledger.apply(*m, TaskEvent::kWorkerLost), Transition::kQueued);
  EXPECT_EQ(ledger.queued(mul), 1u);
  EXPECT_EQ(ledger.queued(add), 2u);
  EXPECT_EQ(drain(ledger, add), (std::vector<TaskKey>{a1, a2}));
  EXPECT_EQ(drain(ledger, mul), (std::vector<TaskKey>{m1}));
  EXPECT_EQ(ledger.queued_total(), 0u);
}

TEST(Ledger, PayloadsAreCarriedThroughRequeues) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  std::string binary(300, '\0');
  for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i & 0xff);
  const TaskKey key = ledger.add(kClientA, 1, f, 5, bytes(binary));
  const TaskKey empty = ledger.add(kClientA, 2, f, 5, zmq::message_t());

  Task* t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->key, key);
  ledger.apply(*t, TaskEvent::kWorkerLost);
  t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  ledger.apply(*t, TaskEvent::kLostInTransit);
  t = ledger.lease_next(f, kWorker);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->key, key);
  EXPECT_EQ(t->payload(), binary);

  Task* e = ledger.lease_next(f, kWorker);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->key, empty);
  EXPECT_EQ(e->payload().size(), 0u);
}

/* Adds a task with `size` octets of payload; returns it and where the received frame kept them. */
std::pair<Task*, const void*> add_sized(Ledger& ledger, FunctionId f, std::size_t size) {
  zmq::message_t received = bytes(std::string(size, 'q'));
  const void* received_at = received.data();
  Task* t = ledger.find(ledger.add(kClientA, size, f, 3, std::move(received)));
  return {t, received_at};
}

TEST(Ledger, SmallPayloadsAreCopiedIntoTheTaskAndLargeOnesShared) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  for (std::size_t size : {std::size_t{100}, kInlinePayload}) {
    auto [t, received_at] = add_sized(ledger, f, size);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->payload(), std::string(size, 'q'));
    EXPECT_NE(static_cast<const void*>(t->payload().data()), received_at)
        << size << " octets: copied";
    zmq::message_t frame = t->frame();
    EXPECT_EQ(view(frame), t->payload());
    EXPECT_NE(frame.data(), static_cast<const void*>(t->payload().data()))
        << "each lease gets its own copy";
  }
  auto [large, received_at] = add_sized(ledger, f, kInlinePayload + 1);
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(static_cast<const void*>(large->payload().data()), received_at)
      << "the received frame is kept";
  {
    zmq::message_t frame = large->frame();
    EXPECT_EQ(frame.data(), received_at) << "and shared with each lease, not copied";
  }
  EXPECT_EQ(large->payload(), std::string(kInlinePayload + 1, 'q'))
      << "a sent frame leaves the task's payload";
  EXPECT_EQ(ledger.apply(*large, TaskEvent::kDrop), Transition::kRemoved);
}

TEST(Ledger, TaskPointersStayValidWhileTheLedgerGrowsShrinksAndCompacts) {
  Ledger ledger;
  const auto f = ledger.function_id("f");
  Task* first = ledger.find(ledger.add(kClientA, 0, f, 3, bytes("first")));
  std::vector<TaskKey> others;
  for (int i = 1; i <= 5000; ++i)
    others.push_back(ledger.add(kClientA, i, f, 3, bytes(std::to_string(i))));
  for (std::size_t i = 0; i < others.size(); ++i) {
    if (i % 10 != 0) ledger.apply(*ledger.find(others[i]), TaskEvent::kDrop);
  }
  ledger.compact();  // most of the table is empty now: it is rebuilt smaller
  EXPECT_EQ(ledger.find(first->key), first);
  EXPECT_EQ(first->payload(), "first");
  EXPECT_EQ(ledger.size(), 501u);
  EXPECT_EQ(ledger.queued(f), 501u);
  for (std::size_t i = 0; i < others.size(); i += 10) {
    ASSERT_NE(ledger.find(others[i]), nullptr);
    EXPECT_EQ(ledger.find(others[i])->payload(), std::to_string(i + 1));
  }
  std::vector<TaskKey> expected{first->key};
  for (std::size_t i = 0; i < others.size(); i += 10) expected.push_back(others[i]);
  EXPECT_EQ(drain(ledger, f), expected) << "the queue skips the dropped keys, in order";
}

}  // namespace
