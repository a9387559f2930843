/* STATUS: what `dpool status` shows, read from the broker's own state when asked.
 *
 * Built on request rather than kept up to date, so the hot path pays nothing for it; the one
 * running figure is the result rate, kept in a minute of one-second buckets.
 */
#include <algorithm>

#include "core.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kMaxJobsReported = 1000;  // the most recent ones

std::int64_t second_of(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

void RateWindow::advance(std::int64_t second) {
  if (second <= second_) return;
  const auto gap =
      std::min<std::int64_t>(second - second_, static_cast<std::int64_t>(buckets_.size()));
  for (std::int64_t s = second - gap + 1; s <= second; ++s)
    buckets_[static_cast<std::size_t>(s) % buckets_.size()] = 0;
  second_ = second;
}

void RateWindow::add(Clock::time_point now) {
  advance(second_of(now));
  ++buckets_[static_cast<std::size_t>(second_) % buckets_.size()];
}

double RateWindow::per_second(Clock::time_point now, Clock::time_point since) {
  advance(second_of(now));
  std::uint64_t sum = 0;
  for (auto b : buckets_) sum += b;
  // A broker up for less than a minute divides by its age, not by sixty.
  const double span = std::clamp(std::chrono::duration<double>(now - since).count(), 1.0,
                                 static_cast<double>(buckets_.size()));
  return static_cast<double>(sum) / span;
}

void BrokerCore::on_status(Message& m, ClientSession& c) {
  auto request = body<wire::StatusRequest>(m);
  if (!request) return;
  const auto now = Clock::now();
  wire::Report r;
  r.request = request->request;
  r.version = DPOOL_VERSION;
  r.instance = instance_;
  r.uptime_ms = millis(now - started_);
  std::vector<std::uint64_t> running(ledger_.function_count(), 0);
  std::unordered_map<PeerHandle, std::uint64_t> running_by_owner;
  for (auto& [h, w] : workers_) {
    wire::WorkerStatus ws{
        w.host,    w.pid,           w.processes, w.credit, {},
        w.tags,    w.leases.size(), w.done,      w.failed, millis(now - w.last_heard),
        w.draining};
    for (auto f : w.functions) ws.functions.push_back(ledger_.function_name(f));
    for (const auto& lease : w.leases) {
      if (const Task* t = ledger_.find(lease.first)) {
        ++running[t->function];
        ++running_by_owner[t->client];
      }
    }
    r.workers.push_back(std::move(ws));
  }
  std::vector<std::uint32_t> offered(ledger_.function_count(), 0);
  for (auto& [h, w] : workers_) {
    for (auto f : w.routes) ++offered[f];
  }
  for (FunctionId f = 0; f < ledger_.function_count(); ++f) {
    const bool tagged = !ledger_.needs(f).empty();
    if (ledger_.queued(f) == 0 && ledger_.delayed(f) == 0 && running[f] == 0 &&
        (tagged || offered[f] == 0))
      continue;
    wire::FunctionStatus fs{ledger_.function_name(f), ledger_.queued(f), running[f], offered[f],
                            ledger_.needs(f)};
    fs.delayed = ledger_.delayed(f);
    fs.oldest_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(0, ledger_.unserved_ms(f)));
    if (fs.queued > 0) fs.waiting = waiting_reason(f);
    r.functions.push_back(std::move(fs));
  }
  std::size_t skip = jobs_.size() > kMaxJobsReported ? jobs_.size() - kMaxJobsReported : 0;
  for (auto& [h, job] : jobs_) {
    if (skip > 0) {
      --skip;
      continue;
    }
    auto info = job_info_without_running(job, now);
    info.running = running_by_owner[h];
    r.jobs.push_back(std::move(info));
  }
  r.clients = static_cast<std::uint32_t>(clients_.size());
  r.rate = rate_.per_second(now, started_);
  r.completed = counters_.completed;
  r.failed = counters_.failed;
  r.requeued = counters_.requeued;
  r.dropped = drops_.total();
  r.unsent = counters_.unsent;
  r.retried = counters_.retried;
  r.expired = counters_.expired;
  for (const auto& [record, when] : failures_) {
    r.failures.push_back(record);
    r.failures.back().age_ms = millis(now - when);
  }
  report_sessions(r);
  send(c.identity, Command::kReport, r);
}

}  // namespace dpool::detail
