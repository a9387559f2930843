/* The client's side of the broker's per-client limits (quota.hpp, docs/protocol.md
 * "Per-client limits").
 *
 * The broker says this client's limits in every HEARTBEAT, the first one answering HELLO, and
 * the client sends nothing before it: so the limits only cap the window it already has. What
 * the broker holds for the client is what the client counts as out (sent or accepted): a task
 * stops counting when its RESULT arrives, and the ACK that makes the broker forget the result
 * always leaves before the next SUBMIT, so the two counts agree. (Bytes may not: a result can
 * be larger than its task. The broker's refusal then says so.)
 *
 * A task that does not fit waits at the front of the queue (on_full: wait), or fails at once
 * with the broker's own words (on_full: error). A task that can never fit fails either way.
 * A refusal from the broker itself (a count that disagreed, limits lowered by a restart) sends
 * a waiting client's task back to the queue until a result makes room: nothing is lost.
 */
#include "client_io.hpp"
#include "dpool/log.hpp"

namespace dpool {

using detail::Pending;
using detail::Room;
using detail::Stage;

void Client::Impl::take_limits(const wire::Heartbeat& hb) {
  quota = Quota{hb.max_tasks, hb.max_bytes, hb.max_message};
}

Room Client::Impl::room_for(Pending& p) {
  const auto refusal =
      check_quota(quota, QuotaUse{outstanding, outstanding_bytes}, p.payload.size(), "this client");
  if (!refusal) return Room::kFits;
  if (refusal->type == kQueueFull && config.on_full == ClientConfig::OnFull::kWait)
    return Room::kWait;
  complete_locally(p, Status::kRejected, refusal->type, refusal->message);
  return Room::kFailed;
}

void Client::Impl::count_out(const Pending& p) {
  ++outstanding;
  if (p.spec.job.empty()) outstanding_bytes += p.payload.size();
}

void Client::Impl::count_back(const Pending& p) {
  if (p.stage == Stage::kWaiting) return;
  --outstanding;
  if (p.spec.job.empty())
    outstanding_bytes -= std::min<std::uint64_t>(outstanding_bytes, p.payload.size());
}

bool Client::Impl::refused(const wire::Result& r) {
  if (r.status != Status::kRejected || r.error_type != kQueueFull) return false;
  auto it = tasks.find(r.id);
  if (it == tasks.end()) return false;  // completed already: ACKed and ignored, as any duplicate
  if (it->second.stage == Stage::kAccepted) return true;  // a refusal of an earlier send
  // A job keeps its results until it is forgotten: its room never frees up.
  if (config.on_full == ClientConfig::OnFull::kError || !it->second.spec.job.empty()) return false;
  if (it->second.stage == Stage::kSent) {
    log::debug("task {} waits: {}", r.id, r.error_message);
    send_again({r.id});
    held_back = true;
  }
  return true;
}

}  // namespace dpool
