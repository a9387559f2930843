/* The Checker and the DeathWatch of load_check.hpp.
 *
 * The Checker keeps one byte per task rather than a set of ids: a million tasks cost 1 MB and
 * no lock, since each client's completions run on its own I/O thread over its own range of
 * ids. The DeathWatch asks the broker itself (STATUS, what `dpool status` shows) rather than
 * reading its log, so the figure is what an operator would see. */
#include "load_check.hpp"

#include <algorithm>
#include <cstdio>
#include <future>
#include <utility>

namespace bench::load {
namespace {

using namespace std::chrono_literals;
constexpr std::size_t kProblemsShown = 10;
constexpr auto kStatusWait = 10s;
constexpr auto kStatusEvery = 50ms;  // the resolution of the status-based detection time

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

// ---- Checker ---------------------------------------------------------------------------------

void Checker::take(std::uint64_t i, dpool::TaskResult&& r) {
  if (closed_.load()) return;
  if (i >= seen_.size()) {
    note("a completion for task " + std::to_string(i) + ", which was never submitted");
    return;
  }
  if (seen_[i]++ != 0) {
    ++twice_;
    note("task " + std::to_string(i) + " completed more than once");
    return;
  }
  if (r.meta.attempts > 1) ++retried_;
  try {
    const auto x = static_cast<std::int64_t>(i);
    if (const auto y = r.as<std::int64_t>("square"); y != x * x) {
      ++wrong_;
      note("task " + std::to_string(i) + " returned " + std::to_string(y));
    }
  } catch (const std::exception& e) {
    ++failed_;
    note("task " + std::to_string(i) + " failed: " + e.what());
  }
  // Last: whoever reads done() and sees this task counted also sees its flag.
  done_.fetch_add(1);
}

void Checker::problem(std::string what) {
  note(std::move(what));
}

void Checker::note(std::string what) {
  std::lock_guard lock(mutex_);
  ++problem_count_;
  if (problems_.size() < kProblemsShown) problems_.push_back(std::move(what));
}

void Checker::report(const std::string& id, const SimCounters& sims,
                     const std::optional<dpool::wire::Report>& broker) {
  missing_ = static_cast<std::uint64_t>(std::count(seen_.begin(), seen_.end(), 0));
  if (missing_ > 0) note(std::to_string(missing_) + " tasks never completed");
  if (sims.malformed > 0)
    note(std::to_string(sims.malformed) + " malformed messages or payloads reached the workers");
  if (!broker) note("the broker did not answer STATUS at the end");
  const auto b = broker.value_or(dpool::wire::Report{});
  bench::report(id, {{"results", static_cast<double>(done_.load())},
                     {"missing", static_cast<double>(missing_)},
                     {"twice", static_cast<double>(twice_.load())},
                     {"wrong", static_cast<double>(wrong_.load())},
                     {"failed", static_cast<double>(failed_.load())},
                     {"retried", static_cast<double>(retried_.load())},
                     {"executed", static_cast<double>(sims.executed)},
                     {"malformed", static_cast<double>(sims.malformed)},
                     {"reregistered", static_cast<double>(sims.reregistered)},
                     {"broker_completed", static_cast<double>(b.completed)},
                     {"broker_requeued", static_cast<double>(b.requeued)},
                     {"broker_dropped", static_cast<double>(b.dropped)},
                     {"broker_workers_end", static_cast<double>(b.workers.size())},
                     {"ok", passed() ? 1.0 : 0.0}});
}

bool Checker::passed() const {
  std::lock_guard lock(mutex_);
  return problem_count_ == 0;
}

int Checker::verdict() const {
  std::lock_guard lock(mutex_);
  if (problem_count_ == 0) return 0;
  std::fprintf(stderr, "LOAD TEST FAILED: %llu problems; the first ones:\n",
               static_cast<unsigned long long>(problem_count_));
  for (const auto& p : problems_) std::fprintf(stderr, "  %s\n", p.c_str());
  return 1;
}

// ---- DeathWatch ------------------------------------------------------------------------------

void DeathWatch::start() {
  if (started_) return;
  started_ = true;
  sims_.kill_one();
  thread_ = std::thread([this] { watch(); });
}

void DeathWatch::finish() {
  if (thread_.joinable()) thread_.join();
}

/* Whether the broker's REPORT still lists the dead worker; records when it stopped. */
bool DeathWatch::victim_listed() {
  const auto host = sims_.death().host;
  const auto asked = Clock::now();
  auto answer = probe_.status();
  if (answer.wait_for(kStatusWait) != std::future_status::ready)
    throw std::runtime_error("STATUS unanswered for 10 s");
  const auto report = answer.get();
  const auto now = Clock::now();
  const bool listed =
      std::any_of(report.workers.begin(), report.workers.end(),
                  [&](const dpool::wire::WorkerStatus& w) { return w.host == host; });
  if (!listed) {
    gone_ = now;
    status_ms_ = ms_between(asked, now);
  }
  return listed;
}

/* Waits for the death to happen, then asks for STATUS until the worker is no longer in it. */
void DeathWatch::watch() {
  try {
    const auto limit = std::min(deadline_, Clock::now() + 120s);
    while (!sims_.death().died) {
      if (Clock::now() > limit) throw std::runtime_error("the worker did not die");
      std::this_thread::sleep_for(1ms);
    }
    while (victim_listed()) {
      if (Clock::now() > limit)
        throw std::runtime_error("the broker still lists the dead worker after 120 s");
      std::this_thread::sleep_for(kStatusEvery);
    }
  } catch (const std::exception& e) {
    error_ = e.what();
  }
}

void DeathWatch::report(const std::string& id, std::chrono::milliseconds interval,
                        std::chrono::milliseconds expiry, bool expected, Checker& check) {
  const auto d = sims_.death();
  const double none = -1;
  const double first = d.died && d.first_relet ? ms_between(*d.died, *d.first_relet) : none;
  const double last = d.died && d.last_relet ? ms_between(*d.died, *d.last_relet) : none;
  const double gone = d.died && gone_ ? ms_between(*d.died, *gone_) : none;
  // The documented bound (docs/protocol.md, section 6): expiry, noticed at the next tick.
  const auto bound = static_cast<double>((expiry + interval).count());
  bench::report(id, {{"interval_ms", static_cast<double>(interval.count())},
                     {"expiry_ms", static_cast<double>(expiry.count())},
                     {"bound_ms", bound},
                     {"leases", static_cast<double>(d.leases)},
                     {"relet", static_cast<double>(d.relet)},
                     {"relet_first_ms", first},
                     {"relet_last_ms", last},
                     {"status_gone_ms", gone},
                     {"status_rtt_ms", status_ms_},
                     {"within_bound", first >= 0 && first <= bound ? 1.0 : 0.0}});
  if (!expected) return;
  if (!error_.empty()) check.problem("dead worker: " + error_);
  if (!d.died) return;
  if (d.leases == 0) check.problem("the dead worker held no lease: nothing was measured");
  if (d.relet != d.leases) {
    check.problem("only " + std::to_string(d.relet) + " of the dead worker's " +
                  std::to_string(d.leases) + " leases were given to another worker");
  }
}

std::optional<dpool::wire::Report> final_status(dpool::Client& probe) {
  auto answer = probe.status();
  if (answer.wait_for(kStatusWait) != std::future_status::ready) return std::nullopt;
  try {
    return answer.get();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace bench::load
