/* The client I/O thread's linger budget (client/src/linger.hpp): the arithmetic, in process.
 *
 * Covers: no lingering before a quick submit was seen; after quick submits, a budget of twice
 * their gap plus 20 us, once per completion; slow submits turn it off, and one long pause is
 * forgotten after a few quick submits again; never past kMaxLinger.
 */
#include <chrono>

#include <gtest/gtest.h>

#include "linger.hpp"

namespace {

using namespace std::chrono_literals;
using dpool::detail::Linger;

/* Completes results at t, and the caller submits `gap` later. */
void round(Linger& l, Linger::Clock::time_point& t, std::chrono::microseconds gap) {
  l.completed(t);
  t += gap;
  l.submitted(t);
  t += 1ms;
}

TEST(Linger, NothingBeforeAQuickSubmitWasSeen) {
  Linger l;
  l.completed(Linger::Clock::now());
  EXPECT_EQ(l.take_budget(), 0us);
}

TEST(Linger, QuickSubmitsEarnTwiceTheirGapOncePerCompletion) {
  Linger l;
  Linger::Clock::time_point t{};
  t += 1s;
  for (int i = 0; i < 30; ++i) round(l, t, 10us);
  l.completed(t);
  const auto budget = l.take_budget();
  EXPECT_GE(budget, 30us);
  EXPECT_LE(budget, 60us);
  EXPECT_EQ(l.take_budget(), 0us) << "a second linger without a new completion";
}

TEST(Linger, SlowSubmitsTurnItOffAndQuickOnesBringItBack) {
  Linger l;
  Linger::Clock::time_point t{};
  t += 1s;
  for (int i = 0; i < 30; ++i) round(l, t, 10us);
  for (int i = 0; i < 3; ++i) round(l, t, 5s);  // a caller that works between tasks
  l.completed(t);
  EXPECT_EQ(l.take_budget(), 0us);
  int rounds = 0;
  for (; rounds < 50; ++rounds) {
    round(l, t, 10us);
    l.completed(t);
    if (l.take_budget() > 0us) break;
  }
  EXPECT_LT(rounds, 20) << "one long pause is remembered too long";
}

TEST(Linger, NeverPastTheCap) {
  Linger l;
  Linger::Clock::time_point t{};
  t += 1s;
  for (int i = 0; i < 30; ++i) round(l, t, 95us);
  l.completed(t);
  EXPECT_LE(l.take_budget(), Linger::kMaxLinger);
}

}  // namespace
