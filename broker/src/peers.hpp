/* The broker's view of its peers: worker hosts and client sessions.
 *
 * Peers are known by their ZeroMQ routing id and numbered with a PeerHandle that tasks store;
 * a handle is never reused, so a stale one finds nothing instead of another peer.
 *
 * Workers are kept in expiry order (a list the broker moves a worker to the back of whenever
 * it hears from it), so that purging the dead looks only at the front. Unlike Majordomo, a
 * busy worker expires too: its heartbeats keep its leases alive, its silence requeues them.
 *
 * A client session keeps, per client task id, either the ledger key of the live task or the
 * finished result, which stays until the client ACKs it (so a result lost on a cut link is
 * sent again, and a resubmitted task is recognised instead of run twice).
 *
 * Tables touched once or more per task are Abseil's open-addressing ones: `live` and a
 * worker's `leases` hold their entries in the table (no allocation per entry; `live`, which
 * has an entry per queued task, costs 17 bytes a slot), `finished` holds pointers to nodes,
 * because a finished result is large and a table sized for a burst of unacknowledged results
 * would otherwise keep that many empty results' worth of slots.
 */
#pragma once

#include <deque>
#include <list>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/container/node_hash_map.h>
#include <zmq.hpp>

#include "dpool/protocol.hpp"
#include "dpool/util.hpp"
#include "ledger.hpp"

namespace dpool::detail {

/* A lease out to a worker: which TASK carried it and when, to tell a lost one (workers.cpp). */
struct LeaseRecord {
  std::uint64_t seq = 0;     // the TASK batch's seq
  std::int64_t sent_ms = 0;  // steady-clock milliseconds when it was sent
};

struct WorkerRecord {
  PeerHandle handle = 0;
  std::string identity;
  std::string host;
  std::uint32_t pid = 0;
  std::uint32_t credit = 0;
  std::uint32_t processes = 0;
  std::vector<FunctionId> functions;  // the functions it offers (their routes with no needs)
  std::vector<FunctionId> routes;     // every route it can serve: those and the tagged ones it fits
  std::map<std::string, std::string> tags;
  absl::flat_hash_map<TaskKey, LeaseRecord> leases;
  std::size_t next_function = 0;  // round-robin start among `functions`
  Clock::time_point expiry;
  Clock::time_point last_heard;
  std::list<PeerHandle>::iterator order;
  std::uint64_t done = 0;
  std::uint64_t failed = 0;
  bool draining = false;  // finishing what it runs before it leaves: lease it nothing more
  [[nodiscard]] std::size_t free_credit() const {
    return !draining && leases.size() < credit ? credit - leases.size() : 0;
  }
};

struct FinishedResult {
  wire::Result meta;
  zmq::message_t payload;
  Clock::time_point sent_at;
};

struct ClientSession {
  PeerHandle handle = 0;
  std::string identity;
  wire::Hello hello;
  Clock::time_point last_heard;
  absl::flat_hash_map<std::uint64_t, TaskKey> live;             // client id -> ledger key
  absl::node_hash_map<std::uint64_t, FinishedResult> finished;  // sent, not yet ACKed
  std::deque<std::pair<std::uint64_t, Clock::time_point>> sent;  // finished ids, send order
  // Outgoing batches, filled while handling input and flushed once per loop turn.
  std::vector<std::uint64_t> accepts;
  std::vector<std::uint64_t> results;
  std::vector<wire::Result> refusals;  // tasks refused for its limits: sent, never kept
  bool dirty = false;  // listed in BrokerCore::dirty_clients_ for this loop turn's flush
  Clock::time_point accepts_due;  // held ACCEPTs must go by then (zero: none held)
  Clock::time_point results_due;  // held RESULTs must go by then (zero: none held)
  // Payload bytes of its tasks in `live` and its results in `finished` (limits.cpp); the
  // tasks it holds are live.size() + finished.size().
  std::uint64_t bytes = 0;
  std::uint64_t refused = 0;  // its tasks refused for its limits
};

/* Peers of one kind by routing id and by handle. */
template <class Record>
class PeerTable {
 public:
  Record* find(const std::string& identity) {
    auto it = by_identity_.find(identity);
    return it == by_identity_.end() ? nullptr : find(it->second);
  }
  Record* find(PeerHandle h) {
    auto it = records_.find(h);
    return it == records_.end() ? nullptr : &it->second;
  }
  Record& add(const std::string& identity, PeerHandle handle) {
    by_identity_[identity] = handle;
    Record& r = records_[handle];
    r.handle = handle;
    r.identity = identity;
    return r;
  }
  void remove(PeerHandle h) {
    if (auto* r = find(h)) {
      by_identity_.erase(r->identity);
      records_.erase(h);
    }
  }
  [[nodiscard]] std::size_t size() const { return records_.size(); }
  auto begin() { return records_.begin(); }
  auto end() { return records_.end(); }

 private:
  std::unordered_map<std::string, PeerHandle> by_identity_;
  std::unordered_map<PeerHandle, Record> records_;
};

/* Workers, plus their expiry order and the set of those with free credit. */
class WorkerRegistry {
 public:
  WorkerRecord* find(const std::string& identity) { return table_.find(identity); }
  WorkerRecord* find(PeerHandle h) { return table_.find(h); }
  WorkerRecord& add(const std::string& identity, PeerHandle handle);
  void remove(PeerHandle h);

  /* Records that the worker was heard from: its expiry moves to now + `expiry`. */
  void heard(WorkerRecord& w, Clock::time_point now, std::chrono::milliseconds expiry);

  /* Handles of workers whose expiry has passed, oldest first. */
  [[nodiscard]] std::vector<PeerHandle> expired(Clock::time_point now);

  [[nodiscard]] std::size_t size() const { return table_.size(); }
  auto begin() { return table_.begin(); }
  auto end() { return table_.end(); }

 private:
  PeerTable<WorkerRecord> table_;
  std::list<PeerHandle> by_expiry_;
};

}  // namespace dpool::detail
