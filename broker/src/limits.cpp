/* Per-client limits: what one client session, or one detached job, may make the broker hold.
 *
 * An owner holds its tasks in the ledger (queued, delayed or leased) and, for a session, the
 * results it has not ACKed yet; a job keeps its results until it is forgotten. Both count, in
 * number and in payload bytes, so that no client can make the broker hold more than
 * max_tasks_per_client tasks and max_bytes_per_client bytes of its arguments and results, and
 * a client that never ACKs stops getting tasks accepted instead of growing the broker.
 *
 * The count of a session is its tables' sizes (live + finished); bytes are counted as tasks
 * enter the ledger (admit), leave it (BrokerCore::apply) and as results are kept and ACKed.
 * A result is never refused: its task has run, and refusing it would lose it; the results of
 * tasks it was allowed are what a client can have the broker hold past its byte limit.
 *
 * A task past the limits gets a RESULT `rejected`, QueueFull, at once, but no ACCEPT and no
 * place in `finished`: the refusal is sent and forgotten, so that a client flooding the broker
 * without ACKing costs it nothing that stays. A RESULT lost on the way costs nothing either:
 * the client, never having seen an ACCEPT, sends the task again.
 */
#include <algorithm>

#include "core.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kMaxRefusalsPerMessage = 256;  // as RESULTs
constexpr std::size_t kMaxSessionsReported = 1000;   // the fullest ones
constexpr auto kRefusalLogEvery = std::chrono::seconds(10);

}  // namespace

QuotaUse BrokerCore::use_of(const ClientSession& c) const {
  return {c.live.size() + c.finished.size(), c.bytes};
}

QuotaUse BrokerCore::use_of(const Job& job) {
  return {job.total(), job.live_bytes + job.bytes};
}

void BrokerCore::charge(PeerHandle owner, std::int64_t bytes) {
  auto apply_to = [bytes](auto& counter) {
    counter = bytes < 0
                  ? counter - std::min<std::uint64_t>(counter, static_cast<std::uint64_t>(-bytes))
                  : counter + static_cast<std::uint64_t>(bytes);
  };
  if (auto* c = clients_.find(owner)) {
    apply_to(c->bytes);
  } else if (auto* job = jobs_.find(owner)) {
    apply_to(job->live_bytes);
  }
}

std::optional<QuotaRefusal> BrokerCore::over_limit(ClientSession& c, std::uint64_t size) {
  auto refusal = check_quota(quota_, use_of(c), size, "this client");
  if (!refusal) return refusal;
  ++c.refused;
  ++counters_.limited;
  if (turn_ >= next_limit_log_) {
    next_limit_log_ = turn_ + kRefusalLogEvery;
    log::warn("client {} ({}): tasks refused: {} [{} refused so far]", log::printable(c.identity),
              log::printable(c.hello.host), refusal->message, counters_.limited);
  }
  return refusal;
}

std::optional<QuotaRefusal> BrokerCore::over_limit(Job& job, std::uint64_t size) {
  auto refusal = check_quota(quota_, use_of(job), size, "job " + job.id);
  if (refusal) ++counters_.limited;
  return refusal;
}

void BrokerCore::refuse(ClientSession& c, std::uint64_t id, QuotaRefusal why) {
  wire::Result r;
  r.id = id;
  r.status = Status::kRejected;
  r.error_type = std::move(why.type);
  r.error_message = std::move(why.message);
  c.refusals.push_back(std::move(r));
  mark_dirty(c);
}

void BrokerCore::flush_refusals(ClientSession& c) {
  for (std::size_t start = 0; start < c.refusals.size(); start += kMaxRefusalsPerMessage) {
    const auto end = std::min(c.refusals.size(), start + kMaxRefusalsPerMessage);
    wire::ResultBatch batch;
    batch.results.assign(
        std::make_move_iterator(c.refusals.begin() + static_cast<std::ptrdiff_t>(start)),
        std::make_move_iterator(c.refusals.begin() + static_cast<std::ptrdiff_t>(end)));
    std::vector<zmq::message_t> payloads(batch.results.size());
    send(c.identity, Command::kResult, batch, std::move(payloads));
  }
  c.refusals.clear();
}

/* REPORT's limits and the sessions that hold the most, for `dpool status`. */
void BrokerCore::report_sessions(wire::Report& r) {
  r.max_tasks_per_client = quota_.max_tasks;
  r.max_bytes_per_client = quota_.max_bytes;
  r.max_message_size = quota_.max_message;
  r.limited = counters_.limited;
  const auto now = Clock::now();
  for (auto& [h, c] : clients_) {
    const auto use = use_of(c);
    r.sessions.push_back({c.hello.host, c.hello.pid, c.hello.name, use.tasks, use.bytes, c.refused,
                          millis(now - c.last_heard)});
  }
  const auto fuller = [](const wire::ClientStatus& a, const wire::ClientStatus& b) {
    return a.tasks != b.tasks ? a.tasks > b.tasks : a.bytes > b.bytes;
  };
  if (r.sessions.size() > kMaxSessionsReported) {
    std::partial_sort(r.sessions.begin(), r.sessions.begin() + kMaxSessionsReported,
                      r.sessions.end(), fuller);
    r.sessions.resize(kMaxSessionsReported);
  } else {
    std::sort(r.sessions.begin(), r.sessions.end(), fuller);
  }
}

}  // namespace dpool::detail
