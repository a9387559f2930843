/* Task policy in the broker: what a task asked for when it arrived (priority, required tags,
 * time limit, retry budgets, a start deadline), and what happens when an attempt fails.
 *
 * Three kinds of failure have three budgets, counted apart (docs/protocol.md, "Priorities,
 * routing and retries"):
 *   - the task threw (kError): run again while errors <= retries, after the retry delay;
 *   - the task hit its time limit (kTimeout): run again while timeouts <= timeout_retries;
 *   - the process died under it (kLost): run again at once until it died max_attempts times.
 * A lease lost with a worker host or a cut link costs nothing (workers.cpp). Every failed
 * attempt is written down (host, pid, what happened, the last stderr lines) and the final
 * result carries that history, so a caller sees why a task failed in the end, and the latest
 * failures stay visible in `dpool status`.
 */
#include <algorithm>
#include <cmath>

#include "core.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kMaxNeeds = 32;
constexpr std::size_t kMaxTagText = 256;
constexpr std::uint32_t kMaxRetries = 1000;
constexpr std::uint64_t kMaxDelayMs = 24ULL * 3600 * 1000;
constexpr std::size_t kMaxHistory = 20;      // attempts kept per task (the latest)
constexpr std::size_t kMaxFailuresKept = 20; // for `dpool status`

std::optional<std::string> invalid(const wire::TaskSpec& spec) {
  if (spec.priority > kMaxPriority)
    return "priority " + std::to_string(spec.priority) + " is not 0 to 9";
  if (spec.needs.size() > kMaxNeeds)
    return "more than " + std::to_string(kMaxNeeds) + " required tags";
  for (const auto& [k, v] : spec.needs) {
    if (k.empty() || k.size() > kMaxTagText || v.size() > kMaxTagText)
      return "a required tag is empty or too long";
  }
  if (!(spec.retry_backoff >= kMinRetryBackoff && spec.retry_backoff <= kMaxRetryBackoff))
    return "retry backoff is not a factor from 1 to 100";
  if (spec.retries > kMaxRetries || spec.timeout_retries > kMaxRetries)
    return "more than 1000 retries";
  if (spec.retry_delay_ms > kMaxDelayMs) return "retry delay longer than 24h";
  return std::nullopt;
}

std::string tags_text(const Tags& tags) {
  std::string s;
  for (const auto& [k, v] : tags) s += (s.empty() ? "" : ",") + k + "=" + v;
  return s;
}

}  // namespace

std::optional<wire::Result> BrokerCore::check_policy(const wire::TaskSpec& spec) {
  auto why = invalid(spec);
  if (!why) return std::nullopt;
  wire::Result r;
  r.status = Status::kRejected;
  r.error_type = "InvalidTaskOptions";
  r.error_message = *why;
  return r;
}

TaskKey BrokerCore::admit(PeerHandle owner, std::uint64_t id, wire::TaskSpec& spec,
                          zmq::message_t payload, std::uint32_t attempts) {
  const auto route = ledger_.route_id(spec.function, spec.needs);
  if (route + 1 > routes_known_) add_routes();
  const std::int64_t expires =
      spec.expires_ms
          ? now_ms() + static_cast<std::int64_t>(std::min(spec.expires_ms, kMaxDelayMs * 365))
          : 0;
  charge(owner, static_cast<std::int64_t>(payload.size()));
  const auto key = ledger_.add(owner, id, route, attempts, std::move(payload), spec.items,
                               spec.priority, expires);
  if (spec.timeout_ms || spec.retries || spec.timeout_retries || spec.retry_delay_ms) {
    TaskExtra& x = ledger_.find(key)->more();
    x.timeout_ms = spec.timeout_ms;
    x.retries = spec.retries;
    x.timeout_retries = spec.timeout_retries;
    x.retry_delay_ms = spec.retry_delay_ms;
    x.retry_backoff = spec.retry_backoff;
  }
  return key;
}

/* New routes (a function first seen, or first seen with these needs) join the workers that
 * can serve them. */
void BrokerCore::add_routes() {
  for (auto& [h, w] : workers_) refresh_routes(w, routes_known_);
  routes_known_ = ledger_.function_count();
}

void BrokerCore::refresh_routes(WorkerRecord& w, FunctionId from) {
  for (FunctionId r = from; r < ledger_.function_count(); ++r) {
    const auto base = ledger_.base_route(r);
    if (std::find(w.functions.begin(), w.functions.end(), base) == w.functions.end()) continue;
    const auto& needs = ledger_.needs(r);
    const bool fits = std::all_of(needs.begin(), needs.end(), [&](const auto& kv) {
      auto it = w.tags.find(kv.first);
      return it != w.tags.end() && it->second == kv.second;
    });
    if (fits && std::find(w.routes.begin(), w.routes.end(), r) == w.routes.end())
      w.routes.push_back(r);
  }
}

void BrokerCore::record_attempt(Task& task, const wire::Outcome& o, const WorkerRecord* w) {
  auto& history = task.more().history;
  if (history.size() >= kMaxHistory) history.erase(history.begin());
  history.push_back(wire::Attempt{o.attempt, o.status, o.error_type, o.error_message,
                                  w ? w->host : std::string(), o.pid, o.stderr_tail});
}

/* A kError or kTimeout outcome: run again if its budget allows, else the final result. */
void BrokerCore::failed_attempt(Task& task, wire::Outcome& o, const WorkerRecord& w) {
  record_attempt(task, o, &w);
  TaskExtra& x = task.more();
  const bool timed_out = o.status == Status::kTimeout;
  std::uint32_t& used = timed_out ? x.timeouts : x.errors;
  const std::uint32_t budget = timed_out ? x.timeout_retries : x.retries;
  if (!task.cancel_requested && used < budget) {
    ++used;
    const double factor = std::pow(x.retry_backoff, static_cast<double>(x.errors + x.timeouts - 1));
    const auto delay = static_cast<std::int64_t>(
        std::min(static_cast<double>(x.retry_delay_ms) * factor, static_cast<double>(kMaxDelayMs)));
    log::debug("task {} of '{}' {} on attempt {}: retry {} of {} in {} ms", task.key,
               ledger_.function_name(task.function), timed_out ? "timed out" : "threw",
               task.attempt, used, budget, delay);
    apply(task, TaskEvent::kRetry, delay);
    ++counters_.retried;
    return;
  }
  finish(task, result_of(o, w), zmq::message_t());
}

void BrokerCore::expire_tasks(Clock::time_point now) {
  for (auto key : ledger_.advance(now_ms(now))) {
    Task* t = ledger_.find(key);
    if (!t) continue;
    wire::Result r;
    r.status = Status::kTimeout;
    r.error_type = "Expired";
    r.error_message =
        "'" + ledger_.function_name(t->function) + "' was not started by its deadline";
    if (const auto why = waiting_reason(t->function); !why.empty()) r.error_message += ": " + why;
    ++counters_.expired;
    const auto owner = t->client;
    const auto id = t->client_id;
    const auto items = t->items;
    apply(*t, TaskEvent::kDrop);
    report(owner, id, std::move(r), zmq::message_t(), items);
  }
}

std::string BrokerCore::waiting_reason(FunctionId route) {
  const auto base = ledger_.base_route(route);
  std::size_t offering = 0;
  std::size_t fitting = 0;
  std::size_t draining = 0;
  for (auto& [h, w] : workers_) {
    if (std::find(w.functions.begin(), w.functions.end(), base) == w.functions.end()) continue;
    ++offering;
    if (std::find(w.routes.begin(), w.routes.end(), route) == w.routes.end()) continue;
    ++fitting;
    if (w.draining) ++draining;
  }
  const auto& name = ledger_.function_name(route);
  if (offering == 0) return "no connected worker offers '" + name + "'";
  if (fitting == 0)
    return "no connected worker offering '" + name + "' has tags " +
           tags_text(ledger_.needs(route));
  if (fitting == draining) return "every worker that can run them is draining";
  return {};
}

void BrokerCore::remember_failure(FunctionId route, PeerHandle owner, const wire::Result& r) {
  if (r.status == Status::kOk || r.status == Status::kCancelled) return;
  if (failures_.size() >= kMaxFailuresKept) failures_.pop_front();
  wire::FailureRecord f;
  f.function = ledger_.function_name(route);
  if (const Job* job = jobs_.find(owner)) f.job = job->id;
  f.result = r;
  failures_.emplace_back(std::move(f), Clock::now());
}

std::int64_t BrokerCore::now_ms(Clock::time_point now) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
}

}  // namespace dpool::detail
