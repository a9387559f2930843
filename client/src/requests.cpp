/* The Client's requests that wait for an answer: JOB, FETCH and STATUS (see client.hpp).
 *
 * A request is queued from any thread like a task, sent by the I/O thread, and kept until the
 * answer with its number arrives. None of them changes anything when repeated (sealing a job
 * twice, cancelling it twice, reading a page twice), so a request is simply sent again after
 * each heartbeat expiry and on a new broker instance, the way JOIN is.
 */
#include <unistd.h>

#include "client_io.hpp"
#include "dpool/log.hpp"

namespace dpool {
namespace {

/* The request number every answer carries first, without decoding the rest. */
std::optional<std::uint64_t> request_number(const Message& m) {
  msgpack::object_handle handle;
  if (!detail::unpack_body(m.body, handle, DecodeLimits{})) return std::nullopt;
  const auto& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size == 0 ||
      o.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER) {
    return std::nullopt;
  }
  return o.via.array.ptr[0].via.u64;
}

wire::JobInfo keep_info(wire::JobInfo&& info, Message&) { return std::move(info); }
wire::Report keep_report(wire::Report&& report, Message&) { return std::move(report); }
JobPage make_page(wire::Fetched&& fetched, Message& m) {
  return JobPage{std::move(fetched), std::move(m.payloads)};
}

}  // namespace

template <class Answer, class Result, class Body>
std::future<Result> Client::Impl::add_request(Command command, Body body,
                                              Result (*make)(Answer&&, Message&)) {
  auto promise = std::make_shared<std::promise<Result>>();
  auto future = promise->get_future();
  bool wake = false;
  {
    std::lock_guard lock(inbox_mutex);
    body.request = next_request++;
    detail::PendingRequest r;
    r.send = [command, body](zmq::socket_ref s) { send_message(s, {}, command, body); };
    r.answer = [this, promise, make](Message& m) {
      auto answer = decode<Answer>(m, drops, "broker");
      if (!answer) return false;
      if constexpr (std::is_same_v<Answer, wire::Fetched>) {
        if (answer->results.size() != m.payloads.size()) {
          drops.drop(DropReason::kPayloads, "broker", "FETCHED with mismatched payloads");
          return false;
        }
      }
      promise->set_value(make(std::move(*answer), m));
      return true;
    };
    r.fail = [promise](std::exception_ptr e) { promise->set_exception(std::move(e)); };
    new_requests.emplace_back(body.request, std::move(r));
    wake = wake_locked();
  }
  if (wake) notify();
  return future;
}

void Client::Impl::take_new_requests() {
  std::vector<std::pair<std::uint64_t, detail::PendingRequest>> fresh;
  {
    std::lock_guard lock(inbox_mutex);
    fresh.swap(new_requests);
  }
  const auto now = Clock::now();
  for (auto& [number, r] : fresh) {
    r.created = now;
    r.sent_at = now;
    r.send(socket);
    requests.emplace(number, std::move(r));
  }
}

void Client::Impl::on_reply(Message& m) {
  const auto number = request_number(m);
  if (!number) {
    drops.drop(DropReason::kBody, "broker",
               std::string(to_string(m.command)) + " without a request number");
    return;
  }
  auto it = requests.find(*number);
  if (it == requests.end()) return;  // answered already (a request sent twice is answered twice)
  if (it->second.answer(m)) requests.erase(it);
}

void Client::Impl::resend_requests(Clock::time_point now, bool all) {
  for (auto& [number, r] : requests) {
    if (!all && now - r.sent_at < config.heartbeat.expiry()) continue;
    r.sent_at = now;
    r.send(socket);
  }
}

void Client::Impl::fail_requests(Clock::time_point now, Clock::time_point heard,
                                 std::chrono::milliseconds limit, const std::string& why) {
  for (auto it = requests.begin(); it != requests.end();) {
    if (now - std::max(it->second.created, heard) > limit) {
      it->second.fail(std::make_exception_ptr(Error(Errc::kUnreachable, why)));
      it = requests.erase(it);
    } else {
      ++it;
    }
  }
}

void Client::Impl::cancel_requests() {
  take_new_requests();
  for (auto& [number, r] : requests) {
    r.fail(std::make_exception_ptr(
        Error(Errc::kCancelled, "the client was closed before the broker answered")));
  }
  requests.clear();
}

std::future<wire::JobInfo> Client::job(std::string job, JobOp op, std::uint64_t total) {
  return impl_->add_request(Command::kJob, wire::JobRequest{0, std::move(job), op, total},
                            &keep_info);
}

std::future<JobPage> Client::fetch(std::string job, std::uint64_t from, std::uint32_t max) {
  return impl_->add_request(Command::kFetch, wire::Fetch{0, std::move(job), from, max}, &make_page);
}

std::future<wire::Report> Client::status() {
  return impl_->add_request(Command::kStatus, wire::StatusRequest{}, &keep_report);
}

}  // namespace dpool
