/* Detached jobs: tasks whose results the broker keeps for whoever asks, not for the session
 * that submitted them.
 *
 * `dpool submit` sends a job's tasks with the job's id and a position each, seals the job with
 * the number it sent, and exits; `dpool wait`, `dpool result` and `dpool cancel` find the job
 * by id later, from any client. A job is an owner in the ledger like a client session (so it
 * gets its fair share of the workers beside interactive clients) and it lives in the broker's
 * memory: it survives its submitter, and a broker restart only with --data-dir (journal.hpp).
 *
 * A job is done when it is sealed and no task of it is queued or running. It is forgotten
 * job_ttl after it is done, or at once when asked to (kForget). A job whose submitter leaves
 * before sealing it is sealed with what arrived, and says so in its note, so that nobody waits
 * for tasks that will never come.
 */
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include <absl/container/flat_hash_map.h>
#include <zmq.hpp>

#include "dpool/protocol.hpp"
#include "dpool/util.hpp"
#include "ledger.hpp"

namespace dpool::detail {

struct Job {
  PeerHandle handle = 0;     // its owner number in the ledger
  std::string id;
  PeerHandle submitter = 0;  // the session sending its tasks, until it seals the job
  bool sealed = false;
  absl::flat_hash_map<std::uint64_t, TaskKey> live;  // position -> ledger key (as a session's)
  struct Finished {
    wire::Result meta;
    zmq::message_t payload;
    std::uint32_t items = 0;
  };
  std::map<std::uint64_t, Finished> results;  // position -> result, in order
  std::uint64_t failed = 0;
  std::uint64_t cancelled = 0;
  std::size_t bytes = 0;       // of the payloads kept
  std::size_t live_bytes = 0;  // of its tasks' payloads in the ledger (limits.cpp)
  Clock::time_point created;
  Clock::time_point done_at;   // when it became done
  std::string note;
  std::string function;  // of its first task

  [[nodiscard]] bool done() const { return sealed && live.empty(); }
  [[nodiscard]] std::uint64_t total() const { return live.size() + results.size(); }
};

/* Jobs by id and by ledger owner number. */
class JobTable {
 public:
  Job* find(std::string_view id);
  Job* find(PeerHandle handle);
  Job& add(std::string id, PeerHandle handle, Clock::time_point now);
  void remove(PeerHandle handle);
  [[nodiscard]] std::size_t size() const { return jobs_.size(); }
  auto begin() { return jobs_.begin(); }
  auto end() { return jobs_.end(); }

 private:
  std::map<PeerHandle, Job> jobs_;  // by handle: creation order
  std::unordered_map<std::string, PeerHandle> by_id_;
};

/* A job id is 1 to 64 characters of letters, digits, '.', '_' and '-' (it appears in shell
 * commands and file names). */
[[nodiscard]] bool valid_job_id(std::string_view id);

}  // namespace dpool::detail
