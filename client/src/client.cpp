/* The client's I/O thread and its task bookkeeping (see client.hpp for the guarantees and
 * client_io.hpp for the states a task goes through). */
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "client_io.hpp"
#include "dpool/curve.hpp"
#include "dpool/log.hpp"

namespace dpool {
namespace {

/* A task's packed arguments as a frame. Large ones are moved into it, not copied: the frame
 * owns the string and frees it when ZeroMQ is done with it. */
zmq::message_t to_message(std::string&& args) {
  constexpr std::size_t kMoveFrom = 4096;  // below this a copy is cheaper than the bookkeeping
  if (args.size() < kMoveFrom) return zmq::message_t(args.data(), args.size());
  auto* owned = new std::string(std::move(args));
  return zmq::message_t(owned->data(), owned->size(),
                        [](void*, void* hint) { delete static_cast<std::string*>(hint); }, owned);
}

}  // namespace

using detail::NewTask;
using detail::Pending;
using detail::Room;
using detail::Stage;
using detail::kMaxTasksPerSubmit;

Client::Impl::Impl(ClientConfig c) : config(std::move(c)) {
  socket.set(zmq::sockopt::routing_id, identity);
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
  socket.set(zmq::sockopt::linger, 500);
  socket.set(zmq::sockopt::reconnect_ivl, 100);
  socket.set(zmq::sockopt::reconnect_ivl_max, 5000);
  const auto ivl = static_cast<int>(config.heartbeat.interval.count());
  socket.set(zmq::sockopt::heartbeat_ivl, ivl);
  socket.set(zmq::sockopt::heartbeat_timeout, ivl * static_cast<int>(config.heartbeat.liveness));
  // A handshake the broker refuses (no CURVE keys, or a key it does not list) ends the
  // connection for good, leaving no pipe: a blocking send would then hang this client's loop.
  // With no HWM a send can wait only then, so failing it loses nothing: the tasks fail as
  // unreachable after connect_timeout.
  socket.set(zmq::sockopt::sndtimeo, 0);
  if (const auto keys = load_curve(config.curve)) apply_curve(socket, *keys);
  try {
    socket.connect(config.broker);
  } catch (const zmq::error_t& e) {
    throw Error(Errc::kUsage, "cannot connect to broker '" + config.broker + "': " + e.what());
  }
  wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) throw Error(Errc::kInternal, "eventfd failed");
  wire::Hello hello{host_name(), static_cast<std::uint32_t>(::getpid()), "client"};
  send_message(socket, {}, Command::kHello, hello);
  thread = std::thread([this] { loop(); });
}

Client::Impl::~Impl() {
  stopping.store(true);
  notify();
  if (thread.joinable()) thread.join();
  ::close(wake_fd);
}

void Client::Impl::loop() {
  auto next_tick = Clock::now() + config.heartbeat.interval;
  std::array<zmq::pollitem_t, 2> items{{{socket.handle(), 0, ZMQ_POLLIN, 0},
                                        {nullptr, wake_fd, ZMQ_POLLIN, 0}}};
  while (!stopping.load()) {
    const auto wake = acks.empty() ? next_tick : std::min(next_tick, acks_due);
    dpool::poll(items.data(), items.size(), until(wake, config.heartbeat.interval));
    std::uint64_t drained = 0;
    [[maybe_unused]] auto n = ::read(wake_fd, &drained, sizeof drained);
    take_new_tasks();
    while (auto m = read_message(socket, false, drops)) on_message(*m);
    send_waiting();
    const auto now = Clock::now();
    if (!acks.empty() && now >= acks_due) send_acks();
    if (now >= next_tick) {
      on_tick(now);
      next_tick = now + config.heartbeat.interval;
    }
    linger(lingering.take_budget());
  }
  // Nothing is dropped silently: what is still waiting is completed as cancelled.
  take_new_tasks();
  std::vector<std::uint64_t> ids;
  for (auto& [id, p] : tasks) ids.push_back(id);
  for (auto id : ids) {
    if (auto it = tasks.find(id); it != tasks.end()) {
      complete_locally(it->second, Status::kCancelled, "Cancelled",
                       "the client was closed before the task finished");
    }
  }
  for (auto& [request, j] : joins) {
    j.second->set_exception(
        std::make_exception_ptr(Error(Errc::kCancelled, "the client was closed during join")));
  }
  cancel_requests();
  send_acks();
  send_message(socket, {}, Command::kDisconnect, wire::Disconnect{"client closed"});
}

void Client::Impl::take_new_tasks() {
  std::vector<NewTask> fresh;
  std::vector<std::uint64_t> cancel_ids;
  std::vector<std::pair<wire::Join, std::shared_ptr<std::promise<void>>>> join_requests;
  {
    std::lock_guard lock(inbox_mutex);
    fresh.swap(inbox);
    cancel_ids.swap(cancels);
    join_requests.swap(new_joins);
    wake_pending = false;
    news.store(false, std::memory_order_relaxed);
  }
  take_new_requests();
  for (auto& j : join_requests) {
    send_message(socket, {}, Command::kJoin, j.first);
    joins.emplace(j.first.request, std::move(j));
  }
  const auto now = Clock::now();
  if (!fresh.empty()) lingering.submitted(now);
  for (auto& t : fresh) {
    const auto id = t.spec.id;
    Pending& p = tasks[id];
    p.spec = std::move(t.spec);
    p.payload = to_message(std::move(t.args));
    p.done = std::move(t.done);
    p.submitted = now;
    waiting.push_back(id);
  }
  wire::Cancel to_broker;
  for (auto id : cancel_ids) {
    auto it = tasks.find(id);
    if (it == tasks.end()) continue;
    if (it->second.stage == Stage::kWaiting) {
      complete_locally(it->second, Status::kCancelled, "Cancelled", "cancelled before it was sent");
    } else {
      it->second.cancel_requested = true;
      to_broker.ids.push_back(id);
    }
    if (to_broker.ids.size() == kMaxTasksPerSubmit) {
      send_message(socket, {}, Command::kCancel, to_broker);
      to_broker.ids.clear();
    }
  }
  if (!to_broker.ids.empty()) send_message(socket, {}, Command::kCancel, to_broker);
}

void Client::Impl::on_message(Message& m) {
  last_heard = Clock::now();
  heard_ever.store(true);
  switch (m.command) {
    case Command::kAccept: {
      auto accept = decode<wire::Accept>(m, drops, "broker");
      if (!accept) return;
      for (auto id : accept->ids) {
        auto it = tasks.find(id);
        if (it == tasks.end() || it->second.stage != Stage::kSent) continue;
        it->second.stage = Stage::kAccepted;
        if (!it->second.spec.job.empty()) {  // the job holds it now: that is this task's success
          TaskResult r;
          r.meta.id = id;
          complete(id, std::move(r));
        }
      }
      break;
    }
    case Command::kJobInfo:
    case Command::kFetched:
    case Command::kReport:
      on_reply(m);
      break;
    case Command::kResult:
      on_results(m);
      break;
    case Command::kJoined:
      if (auto joined = decode<wire::Joined>(m, drops, "broker")) {
        if (auto it = joins.find(joined->request); it != joins.end()) {
          it->second.second->set_value();
          joins.erase(it);
        }
      }
      break;
    case Command::kHeartbeat:
      if (auto hb = decode<wire::Heartbeat>(m, drops, "broker")) {
        worker_processes.store(hb->processes);
        take_limits(*hb);
        on_broker_instance(hb->instance);
      }
      break;
    case Command::kDisconnect:
      // The broker does not know us (it expired this session): introduce ourselves again.
      log::info("broker disowned this client: resubmitting {} tasks", outstanding);
      send_message(socket, {}, Command::kHello,
                   wire::Hello{host_name(), static_cast<std::uint32_t>(::getpid()), "client"});
      resubmit_all();
      break;
    case Command::kHello:
    case Command::kReady:
    case Command::kSubmit:
    case Command::kTask:
    case Command::kDone:
    case Command::kAck:
    case Command::kCancel:
    case Command::kJoin:
    case Command::kJob:
    case Command::kFetch:
    case Command::kStatus:
      drops.drop(DropReason::kCommand, "broker",
                 std::string(to_string(m.command)) + " sent to a client");
      break;
  }
}

void Client::Impl::on_results(Message& m) {
  auto batch = decode<wire::ResultBatch>(m, drops, "broker");
  if (!batch) return;
  if (batch->results.size() != m.payloads.size()) {
    drops.drop(DropReason::kPayloads, "broker", "RESULT with mismatched payloads");
    return;
  }
  const auto now = Clock::now();
  if (acks.empty()) acks_due = now + detail::kAckDelay;
  for (std::size_t i = 0; i < batch->results.size(); ++i) {
    const auto id = batch->results[i].id;
    if (refused(batch->results[i])) continue;  // waits for room; the broker kept nothing to ACK
    held_back = false;  // a result: the broker holds one task fewer once it has the ACK
    acks.push_back(id);  // duplicates too, so the broker stops sending them
    complete(id, TaskResult{std::move(batch->results[i]), std::move(m.payloads[i])});
  }
  if (acks.size() >= kMaxTasksPerSubmit) send_acks();
  if (!batch->results.empty()) lingering.completed(now);
}

void Client::Impl::linger(std::chrono::microseconds budget) {
  if (budget.count() == 0) return;
  const auto until = Clock::now() + budget;
  while (!news.load(std::memory_order_acquire) && !stopping.load() && Clock::now() < until) {
    std::this_thread::yield();
  }
}

/* ACKs wait up to kAckDelay, or until the next SUBMIT, and go out together: one task at a time,
 * an ACK sent the moment its RESULT came would wake the broker while the caller is busy
 * submitting the next task (W2 in bench/), and under load many RESULTs share one ACK. With
 * results every few ms (W3's 10 ms tasks on two processes), 20 ms rather than 2 ms puts four
 * results in an ACK instead of one, sparing the client a timer wake-up and the broker a read
 * for each; W3 ran 0.5-0.9 % faster (16 runs of each, alternated). Waiting costs only the
 * broker holding those results a little longer (a RESULT is resent only after seconds). */
void Client::Impl::send_acks() {
  if (acks.empty()) return;
  wire::Ack ack;
  ack.ids.swap(acks);
  send_message(socket, {}, Command::kAck, ack);
}

void Client::Impl::on_broker_instance(std::uint64_t instance) {
  if (instance == broker_instance) return;
  const bool restarted = broker_instance != 0;
  broker_instance = instance;
  if (restarted) {
    log::warn("broker restarted: resubmitting {} tasks", outstanding);
    resubmit_all();
  }
}

void Client::Impl::resubmit_all() {
  // A new broker (or one that forgot us) knows nothing of our JOINs or requests either.
  for (auto& [request, j] : joins) send_message(socket, {}, Command::kJoin, j.first);
  resend_requests(Clock::now(), true);
  std::vector<std::uint64_t> ids, cancelled;
  for (auto& [id, p] : tasks) {
    if (p.stage == Stage::kWaiting) continue;
    if (p.cancel_requested) {
      cancelled.push_back(id);
      continue;
    }
    ids.push_back(id);
  }
  for (auto id : cancelled) {
    auto it = tasks.find(id);
    complete_locally(it->second, Status::kCancelled, "Cancelled",
                     "cancelled while the broker restarted");
  }
  send_again(std::move(ids));
}

void Client::Impl::send_again(std::vector<std::uint64_t> ids) {
  // Oldest first, ahead of tasks never sent, so that the order of completion is kept.
  std::sort(ids.begin(), ids.end());
  for (auto id : ids) {
    count_back(tasks[id]);
    tasks[id].stage = Stage::kWaiting;
  }
  waiting.insert(waiting.begin(), ids.begin(), ids.end());
}

void Client::Impl::send_waiting() {
  // Nothing goes before the broker has said this client's limits (its answer to HELLO), nor
  // after it refused a task for them until a result makes room.
  if (broker_instance == 0 || held_back) return;
  const auto now = Clock::now();
  bool full = false;
  while (!full && !waiting.empty() && outstanding < config.window) {
    wire::Submit submit;
    std::vector<zmq::message_t> payloads;
    while (!waiting.empty() && outstanding < config.window &&
           submit.tasks.size() < kMaxTasksPerSubmit) {
      const auto id = waiting.front();
      auto it = tasks.find(id);
      if (it == tasks.end() || it->second.stage != Stage::kWaiting) {  // stale entry
        waiting.pop_front();
        continue;
      }
      const auto room = room_for(it->second);
      if (room == Room::kWait) {
        full = true;
        break;
      }
      waiting.pop_front();
      if (room == Room::kFailed) continue;
      count_out(it->second);
      it->second.stage = Stage::kSent;
      it->second.sent_at = now;
      submit.tasks.push_back(it->second.spec);
      zmq::message_t copy;
      copy.copy(it->second.payload);  // shares the bytes; ours stays for a resubmission
      payloads.push_back(std::move(copy));
    }
    if (submit.tasks.empty()) continue;
    send_acks();  // the broker reads both in one wake-up
    send_message(socket, {}, Command::kSubmit, submit, std::move(payloads));
  }
}

void Client::Impl::on_tick(Clock::time_point now) {
  send_message(socket, {}, Command::kHeartbeat, wire::Heartbeat{});
  held_back = false;  // try again at least once a tick, whatever went wrong with the count
  // A JOINED lost on a cut link would leave join() waiting: ask again (the broker answers a
  // repeated request once, and an unknown request id is ignored here).
  if (now >= next_join_resend) {
    for (auto& [request, j] : joins) send_message(socket, {}, Command::kJoin, j.first);
    next_join_resend = now + config.heartbeat.expiry();
  }
  resend_requests(now, false);
  // A SUBMIT lost on a cut link is never ACCEPTed: send those tasks again.
  std::vector<std::uint64_t> again;
  for (auto& [id, p] : tasks) {
    if (p.stage == Stage::kSent && now - p.sent_at > config.heartbeat.expiry()) again.push_back(id);
  }
  if (!again.empty()) send_again(std::move(again));
  fail_unreachable(now);
}

void Client::Impl::fail_unreachable(Clock::time_point now) {
  const bool ever = heard_ever.load();
  const auto limit = ever ? config.broker_timeout : config.connect_timeout;
  const auto heard = ever ? last_heard : started;
  if (now - heard <= limit) return;
  const std::string why = "no broker answered at " + config.broker + " for " +
                          std::to_string(limit.count()) + " ms" +
                          (ever ? "" : unreachable_hint(config.curve));
  fail_requests(now, heard, limit, why);
  std::vector<std::uint64_t> expired;
  for (auto& [id, p] : tasks) {
    if (now - std::max(p.submitted, heard) > limit) expired.push_back(id);
  }
  for (auto id : expired) {
    auto it = tasks.find(id);
    if (it != tasks.end())
      complete_locally(it->second, Status::kUnreachable, "BrokerUnreachable", why);
  }
}

void Client::Impl::complete(std::uint64_t id, TaskResult&& result) {
  auto it = tasks.find(id);
  if (it == tasks.end()) return;  // a duplicate: its completion already ran
  count_back(it->second);
  Completion done = std::move(it->second.done);
  tasks.erase(it);
  pending_count.fetch_sub(1);
  try {
    done(std::move(result));
  } catch (const std::exception& e) {
    log::error("a task completion threw: {}", e.what());
  }
}

void Client::Impl::complete_locally(Pending& p, Status status, std::string type,
                                    std::string message) {
  TaskResult r;
  r.meta.id = p.spec.id;
  r.meta.status = status;
  r.meta.error_type = std::move(type);
  r.meta.error_message = std::move(message);
  complete(p.spec.id, std::move(r));
}

wire::TaskSpec task_spec(std::uint64_t id, std::string function, TaskOptions options) {
  if (options.priority > kMaxPriority) {
    throw Error(Errc::kUsage, "a task priority is 0 to 9, got " + std::to_string(options.priority));
  }
  if (options.timeout.count() < 0 || options.retry_delay.count() < 0 ||
      options.expires.count() < 0) {
    throw Error(Errc::kUsage, "a task's timeout, retry delay and expiry cannot be negative");
  }
  if (!(options.retry_backoff >= kMinRetryBackoff && options.retry_backoff <= kMaxRetryBackoff)) {
    throw Error(Errc::kUsage, "a task's retry backoff is a factor from 1 to 100");
  }
  wire::TaskSpec s;
  s.id = id;
  s.function = std::move(function);
  s.max_attempts = options.max_attempts;
  s.items = options.items;
  s.queue = std::move(options.queue);
  s.job = std::move(options.job);
  s.index = options.index;
  s.priority = options.priority;
  s.timeout_ms = static_cast<std::uint64_t>(options.timeout.count());
  s.retries = options.retries;
  s.timeout_retries = options.timeout_retries;
  s.retry_delay_ms = static_cast<std::uint64_t>(options.retry_delay.count());
  s.retry_backoff = options.retry_backoff;
  s.needs = std::move(options.needs);
  s.expires_ms = static_cast<std::uint64_t>(options.expires.count());
  return s;
}

Client::Client(ClientConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Client::~Client() = default;

void Client::Impl::notify() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
}

std::uint64_t Client::submit(std::string function, std::string args, Completion done,
                             TaskOptions options) {
  std::uint64_t id = 0;
  bool wake = false;
  {
    std::lock_guard lock(impl_->inbox_mutex);
    id = impl_->next_id++;
    impl_->inbox.push_back(NewTask{task_spec(id, std::move(function), std::move(options)),
                                   std::move(args), std::move(done)});
    impl_->pending_count.fetch_add(1);
    wake = impl_->wake_locked();
  }
  if (wake) impl_->notify();
  return id;
}

void Client::cancel(std::vector<std::uint64_t> ids) {
  bool wake = false;
  {
    std::lock_guard lock(impl_->inbox_mutex);
    impl_->cancels.insert(impl_->cancels.end(), ids.begin(), ids.end());
    wake = impl_->wake_locked();
  }
  if (wake) impl_->notify();
}

std::shared_future<void> Client::join_queue(std::string queue) {
  auto promise = std::make_shared<std::promise<void>>();
  std::shared_future<void> future = promise->get_future().share();
  bool wake = false;
  {
    std::lock_guard lock(impl_->inbox_mutex);
    impl_->new_joins.emplace_back(wire::Join{impl_->next_join++, std::move(queue)},
                                  std::move(promise));
    wake = impl_->wake_locked();
  }
  if (wake) impl_->notify();
  return future;
}

std::size_t Client::pending() const { return impl_->pending_count.load(); }
bool Client::connected() const { return impl_->heard_ever.load(); }
std::uint32_t Client::worker_processes() const { return impl_->worker_processes.load(); }

bool Client::wait_connected(std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  while (!impl_->heard_ever.load()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}
const ClientConfig& Client::config() const { return impl_->config; }

void TaskResult::throw_if_failed(const std::string& function) const {
  switch (meta.status) {
    case Status::kOk:
      return;
    case Status::kError:
    case Status::kLost:
    case Status::kTimeout: {
      RemoteError::Info info{meta.error_type, meta.error_message, function, meta.host,
                             meta.pid,        meta.attempts,      {}};
      for (const auto& a : meta.history) {
        info.history.push_back(
            {a.attempt, a.error_type, a.error_message, a.host, a.pid, a.stderr_tail});
      }
      const auto code = meta.status == Status::kLost    ? Errc::kWorkerLost
                        : meta.status == Status::kTimeout ? Errc::kTimeout
                                                          : Errc::kRemote;
      throw RemoteError(code, std::move(info));
    }
    case Status::kCancelled:
      throw Error(Errc::kCancelled, function + ": " + meta.error_message);
    case Status::kRejected:
      throw Error(Errc::kRejected, function + ": " + meta.error_type + ": " + meta.error_message);
    case Status::kUnreachable:
      throw Error(Errc::kUnreachable, function + ": " + meta.error_message);
    case Status::kReturned:  // worker-to-broker only; a broker never sends it on
      break;
  }
  throw Error(Errc::kInternal, "unknown task status");
}

}  // namespace dpool
