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

/* A Linger that has seen 30 rounds of `gap`, and the time after them. */
struct Warmed {
  Linger linger;
  Linger::Clock::time_point t = Linger::Clock::time_point{} + 1s;
  explicit Warmed(std::chrono::microseconds gap) {
    for (int i = 0; i < 30; ++i) round(linger, t, gap);
  }
};

TEST(Linger, NothingBeforeAQuickSubmitWasSeen) {
  Linger l;
  l.completed(Linger::Clock::now());
  EXPECT_EQ(l.take_budget(), 0us);
}

TEST(Linger, QuickSubmitsEarnTwiceTheirGapOncePerCompletion) {
  Warmed w(10us);
  auto& l = w.linger;
  l.completed(w.t);
  const auto budget = l.take_budget();
  EXPECT_GE(budget, 30us);
  EXPECT_LE(budget, 60us);
  EXPECT_EQ(l.take_budget(), 0us) << "a second linger without a new completion";
}

TEST(Linger, SlowSubmitsTurnItOffAndQuickOnesBringItBack) {
  Warmed w(10us);
  auto& l = w.linger;
  auto& t = w.t;
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
  Warmed w(95us);
  w.linger.completed(w.t);
  EXPECT_LE(w.linger.take_budget(), Linger::kMaxLinger);
}

}  // namespace
