/* Worker registry bookkeeping: expiry order (see peers.hpp). */
#include "peers.hpp"

namespace dpool::detail {

WorkerRecord& WorkerRegistry::add(const std::string& identity, PeerHandle handle) {
  WorkerRecord& w = table_.add(identity, handle);
  w.order = by_expiry_.insert(by_expiry_.end(), handle);
  return w;
}

void WorkerRegistry::remove(PeerHandle h) {
  if (auto* w = table_.find(h)) {
    by_expiry_.erase(w->order);
    table_.remove(h);
  }
}

void WorkerRegistry::heard(WorkerRecord& w, Clock::time_point now,
                           std::chrono::milliseconds expiry) {
  w.last_heard = now;
  w.expiry = now + expiry;
  by_expiry_.splice(by_expiry_.end(), by_expiry_, w.order);
}

std::vector<PeerHandle> WorkerRegistry::expired(Clock::time_point now) {
  std::vector<PeerHandle> out;
  for (PeerHandle h : by_expiry_) {
    const WorkerRecord* w = table_.find(h);
    if (!w || w->expiry > now) break;  // the rest expire later
    out.push_back(h);
  }
  return out;
}

}  // namespace dpool::detail
