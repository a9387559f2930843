/* Detached jobs (see jobs.hpp): their table, and the broker's handlers for JOB and FETCH and
 * for job tasks in SUBMIT.
 *
 * A job task's ledger owner is the job, and its client id is its position in the job; so the
 * ledger, dispatch and the workers treat it like any other task, and only where an outcome is
 * reported (BrokerCore::report) does it go to the job instead of a session.
 */
#include "jobs.hpp"

#include <algorithm>

#include "core.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kMaxJobId = 64;
constexpr std::uint32_t kMaxFetch = 1000;
constexpr std::size_t kMaxFetchBytes = 64u << 20;  // a page, unless one result is larger

}  // namespace

bool valid_job_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxJobId) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

Job* JobTable::find(std::string_view id) {
  auto it = by_id_.find(std::string(id));
  return it == by_id_.end() ? nullptr : find(it->second);
}

Job* JobTable::find(PeerHandle handle) {
  auto it = jobs_.find(handle);
  return it == jobs_.end() ? nullptr : &it->second;
}

Job& JobTable::add(std::string id, PeerHandle handle, Clock::time_point now) {
  by_id_[id] = handle;
  Job& j = jobs_[handle];
  j.handle = handle;
  j.id = std::move(id);
  j.created = now;
  return j;
}

void JobTable::remove(PeerHandle handle) {
  if (auto* j = find(handle)) {
    by_id_.erase(j->id);
    jobs_.erase(handle);
  }
}

/* ---- SUBMIT of a job task ----------------------------------------------------------------- */

std::optional<wire::Result> BrokerCore::add_job_task(ClientSession& c, wire::TaskSpec& spec,
                                                     zmq::message_t& payload,
                                                     std::uint32_t attempts) {
  auto refuse = [](std::string type, std::string message) {
    wire::Result r;
    r.status = Status::kRejected;
    r.error_type = std::move(type);
    r.error_message = std::move(message);
    return std::optional<wire::Result>(std::move(r));
  };
  if (!valid_job_id(spec.job)) {
    return refuse("InvalidJobId", "a job id has 1 to 64 letters, digits, '.', '_' or '-'");
  }
  if (auto refusal = check_policy(spec)) return refusal;
  Job* job = jobs_.find(spec.job);
  if (!job) {
    if (jobs_.size() >= config_.max_jobs) {
      const auto held = jobs_.size();
      return refuse("QueueFull", "queue full: the broker holds " + with_commas(held) +
                                     (held == 1 ? " detached job" : " detached jobs") +
                                     ", its limit (max_jobs); forget finished ones with "
                                     "`dpool result JOB --forget`, or wait for their job_ttl");
    }
    job = &jobs_.add(spec.job, next_handle_++, Clock::now());
    job->submitter = c.handle;
    job->function = spec.function;
    if (journal_) journal_->job(job->id, c.identity, job->function);
    log::info("job {} started by {}", job->id,
              log::printable(c.hello.host));  // the client's own text
  }
  if (job->live.contains(spec.index) || job->results.contains(spec.index))
    return std::nullopt;  // sent again
  if (job->sealed) {
    return refuse("JobSealed",
                  "job " + job->id + " is complete or cancelled: it takes no more tasks");
  }
  // A job keeps its results until it is forgotten, so room never frees up: the refusal is final.
  if (auto full = over_limit(*job, payload.size()))
    return refuse(std::move(full->type), std::move(full->message));
  const auto key = admit(job->handle, spec.index, spec, std::move(payload), attempts);
  job->live[spec.index] = key;
  if (journal_)
    journal_->task(true, job->id, spec.index, attempts, spec, ledger_.find(key)->payload());
  return std::nullopt;
}

void BrokerCore::job_result(Job& job, std::uint64_t index, wire::Result meta,
                            zmq::message_t payload, std::uint32_t items) {
  job.live.erase(index);
  if (meta.status != Status::kOk) ++job.failed;
  if (meta.status == Status::kCancelled) ++job.cancelled;
  job.bytes += payload.size();
  meta.id = index;
  if (journal_) journal_->result(true, job.id, index, meta, view(payload), items);
  job.results[index] = Job::Finished{std::move(meta), std::move(payload), items};
  if (job.done()) job_done(job);
}

void BrokerCore::job_done(Job& job) {
  job.done_at = Clock::now();
  log::info("job {} done: {} tasks, {} failed", job.id, job.total(), job.failed);
}

/* The session that was submitting a job went away before sealing it. */
void BrokerCore::submitter_left(PeerHandle session) {
  for (auto& [h, job] : jobs_) {
    if (job.sealed || job.submitter != session) continue;
    job.sealed = true;
    job.note = "its submitter left after sending " + std::to_string(job.total()) + " tasks";
    log::warn("job {}: {}", job.id, job.note);
    if (journal_) journal_->seal(job.id, job.note);
    if (job.done()) job_done(job);
  }
}

void BrokerCore::expire_jobs(Clock::time_point now) {
  std::vector<PeerHandle> expired;
  for (auto& [h, job] : jobs_) {
    if (job.done() && now - job.done_at >= config_.job_ttl) expired.push_back(h);
  }
  for (auto h : expired) {
    log::info("job {} expired: its results were kept for {} ms", jobs_.find(h)->id,
              config_.job_ttl.count());
    if (journal_) journal_->forget(jobs_.find(h)->id);
    jobs_.remove(h);
  }
}

/* ---- JOB ---------------------------------------------------------------------------------- */

void BrokerCore::on_job(Message& m, ClientSession& c) {
  auto request = body<wire::JobRequest>(m);
  if (!request) return;
  Job* job = jobs_.find(request->job);
  if (job) {
    switch (request->op) {
      case JobOp::kInfo:
        break;
      case JobOp::kSeal:
        seal_job(*job, request->total);
        break;
      case JobOp::kCancel:
        cancel_job(*job);
        break;
      case JobOp::kForget:
        cancel_job(*job);
        log::info("job {} forgotten on request", job->id);
        if (journal_) journal_->forget(job->id);
        jobs_.remove(job->handle);
        job = nullptr;
        break;
      default:
        drops_.drop(DropReason::kBody, who_, "JOB with an unknown operation");
        return;
    }
  }
  auto info = job ? job_info(*job) : wire::JobInfo{};
  info.request = request->request;
  info.job = request->job;
  if (journal_) journal_->commit();  // a seal is a promise too: on disk before it is answered
  send(c.identity, Command::kJobInfo, info);
}

void BrokerCore::seal_job(Job& job, std::uint64_t total) {
  if (job.sealed) return;
  job.sealed = true;
  job.submitter = 0;
  if (total != job.total()) {
    // The broker restarted while tasks were being submitted: the earlier ones are gone.
    job.note = "the broker has " + std::to_string(job.total()) + " of the " +
               std::to_string(total) + " tasks submitted (it restarted during the submission)";
    log::warn("job {}: {}", job.id, job.note);
  }
  if (journal_) journal_->seal(job.id, job.note);
  if (job.done()) job_done(job);
}

/* Queued tasks end at once as cancelled; running ones when their workers confirm. */
void BrokerCore::cancel_job(Job& job) {
  if (!job.done() && job.note.empty()) job.note = "cancelled";
  job.sealed = true;
  job.submitter = 0;
  if (journal_) journal_->seal(job.id, job.note);
  std::unordered_map<PeerHandle, wire::Cancel> to_workers;
  std::vector<std::uint64_t> queued;
  for (auto& [index, key] : job.live) {
    Task* t = ledger_.find(key);
    if (!t) continue;
    if (t->state == TaskState::kQueued) {
      queued.push_back(index);
    } else if (!t->cancel_requested) {
      t->cancel_requested = true;
      to_workers[t->worker].ids.push_back(t->key);
    }
  }
  for (auto index : queued) {
    std::uint32_t items = 0;
    if (Task* t = ledger_.find(job.live[index])) {
      items = t->items;
      apply(*t, TaskEvent::kDrop);
    }
    job_result(job, index, cancelled_result("cancelled before it started"), zmq::message_t(),
               items);
  }
  for (auto& [handle, msg] : to_workers) {
    if (auto* w = workers_.find(handle)) send(w->identity, Command::kCancel, msg);
  }
  if (job.live.empty() && job.done_at == Clock::time_point{}) job_done(job);
}

wire::JobInfo BrokerCore::job_info(const Job& job) {
  auto info = job_info_without_running(job, Clock::now());
  for (auto& [h, w] : workers_) {
    for (const auto& lease : w.leases) {
      if (const Task* t = ledger_.find(lease.first); t && t->client == job.handle) ++info.running;
    }
  }
  return info;
}

wire::JobInfo BrokerCore::job_info_without_running(const Job& job, Clock::time_point now) const {
  wire::JobInfo info;
  info.job = job.id;
  info.found = true;
  info.sealed = job.sealed;
  info.total = job.total();
  info.finished = job.results.size();
  info.failed = job.failed;
  info.cancelled = job.cancelled;
  info.age_ms = millis(now - job.created);
  if (job.done()) info.expires_in_ms = millis(job.done_at + config_.job_ttl - now);
  info.note = job.note;
  info.function = job.function;
  return info;
}

/* ---- FETCH -------------------------------------------------------------------------------- */

/* The results from `from` on, as long as they follow each other without a gap: the caller
 * prints in order, so a result past a gap would only be fetched again. */
void BrokerCore::on_fetch(Message& m, ClientSession& c) {
  auto fetch = body<wire::Fetch>(m);
  if (!fetch) return;
  wire::Fetched reply;
  reply.request = fetch->request;
  reply.next = fetch->from;
  std::vector<zmq::message_t> payloads;
  if (Job* job = jobs_.find(fetch->job)) {
    reply.found = true;
    const auto max = std::clamp<std::uint32_t>(fetch->max, 1, kMaxFetch);
    std::size_t bytes = 0;
    for (auto it = job->results.find(fetch->from);
         it != job->results.end() && it->first == reply.next; ++it, ++reply.next) {
      if (reply.results.size() == max ||
          (bytes > 0 && bytes + it->second.payload.size() > kMaxFetchBytes))
        break;
      bytes += it->second.payload.size();
      reply.results.push_back(wire::JobResult{it->first, it->second.meta, it->second.items});
      payloads.push_back(share(it->second.payload));
    }
  }
  send(c.identity, Command::kFetched, reply, std::move(payloads));
}

}  // namespace dpool::detail
