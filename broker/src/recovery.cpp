/* Rebuilding the broker from its --data-dir journal (journal.hpp) at start.
 *
 * The journal names owners by routing id and job id, so a session is restored under the
 * routing id its client keeps across reconnects: the client, seeing a new broker instance,
 * resubmits every task it has no result for, finds them held (ACCEPTed, not run twice) and
 * is sent every result it has not ACKed, which it takes once and ACKs. Leases are not
 * journaled: a task that was running when the broker died is queued again (at-least-once).
 * A restored session whose client never comes back is purged after client_timeout, as any
 * silent one; a detached job waits for its readers as before.
 *
 * Restoring goes through the same admit() as SUBMIT, before the journal is attached, so
 * nothing restored is written twice; the journal already holds it as a fresh snapshot.
 */
#include "core.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

zmq::message_t frame_of(const std::string& bytes) {
  return zmq::message_t(bytes.data(), bytes.size());
}

}  // namespace

void BrokerCore::restore(JournalState state) {
  std::size_t tasks = 0, results = 0;
  for (auto& [identity, saved] : state.sessions) {
    tasks += saved.tasks.size();
    results += saved.results.size();
    restore_session(identity, saved);
  }
  for (auto& [id, saved] : state.jobs) {
    tasks += saved.tasks.size();
    results += saved.results.size();
    restore_job(id, saved);
  }
  log::info("restored from {}: {} tasks, {} results, {} client sessions, {} jobs", config_.data_dir,
            tasks, results, state.sessions.size(), state.jobs.size());
}

void BrokerCore::restore_session(const std::string& identity, JournalState::Owner& saved) {
  ClientSession& c = client_session(identity);
  for (auto& [id, t] : saved.tasks) {
    const auto key = admit(c.handle, id, t.spec, frame_of(t.payload), t.attempts);
    c.live[id] = key;
    if (!t.spec.queue.empty() && t.spec.queue.size() <= 256)
      join_named_queue(*ledger_.find(key), t.spec.queue);
  }
  for (auto& [id, r] : saved.results) {
    r.meta.id = id;
    c.bytes += r.payload.size();
    c.finished.try_emplace(id, FinishedResult{std::move(r.meta), frame_of(r.payload), {}});
    c.results.push_back(id);  // sent when the client is back; resent until ACKed
  }
  if (!c.results.empty()) mark_dirty(c);
}

void BrokerCore::restore_job(const std::string& id, JournalState::Owner& saved) {
  Job& job = jobs_.add(id, next_handle_++, Clock::now());
  job.function = saved.function;
  job.sealed = saved.sealed;
  job.note = saved.note;
  if (!saved.sealed && !saved.submitter.empty())
    job.submitter = client_session(saved.submitter).handle;
  for (auto& [index, t] : saved.tasks)
    job.live[index] = admit(job.handle, index, t.spec, frame_of(t.payload), t.attempts);
  for (auto& [index, r] : saved.results) {
    if (r.meta.status != Status::kOk) ++job.failed;
    if (r.meta.status == Status::kCancelled) ++job.cancelled;
    job.bytes += r.payload.size();
    r.meta.id = index;
    job.results[index] = Job::Finished{std::move(r.meta), frame_of(r.payload), r.items};
  }
  if (job.done()) job_done(job);
}

}  // namespace dpool::detail
