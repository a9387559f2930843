/* Seed inputs for the fuzz targets, made from the product's own encoders (msgpack of the wire
 * structs, Link::send, to_yaml), so that a corpus always starts from messages the current
 * protocol really sends. fuzz/make_corpus writes them to files for libFuzzer; the regression
 * test replays them straight from here, so a seed that stops decoding shows up in the suite.
 */
#include <sys/socket.h>

#include <map>

#include "dpool/codec.hpp"
#include "dpool/config.hpp"
#include "entries.hpp"
#include "link.hpp"

namespace dpool::fuzz {
namespace {

std::string packed(const auto& value) {
  msgpack::sbuffer b;
  msgpack::pack(b, value);
  return {b.data(), b.size()};
}

// ---- fuzz_message: [routed flag] then frames, each a u16 length and its bytes ---------------

void add_frame(std::string& out, std::string_view frame) {
  out.push_back(static_cast<char>(frame.size() & 0xff));
  out.push_back(static_cast<char>(frame.size() >> 8));
  out.append(frame);
}

/* A message as the broker gets it (routed, from "peer-1") or as a peer gets it from the broker. */
template <class Body>
std::string message(bool routed, Command command, const Body& body, std::size_t payloads = 0) {
  std::string out(1, routed ? '\1' : '\0');
  if (routed) add_frame(out, "peer-1");
  const char header[4] = {kSignature[0], kSignature[1], static_cast<char>(kProtocolVersion),
                          static_cast<char>(command)};
  add_frame(out, {header, 4});
  add_frame(out, packed(body));
  for (std::size_t i = 0; i < payloads; ++i)
    add_frame(out, packed(std::make_tuple(static_cast<int>(i), 2.5)));
  return out;
}

wire::Result a_result(std::uint64_t id) {
  wire::Result r;
  r.id = id;
  r.status = Status::kError;
  r.attempts = 2;
  r.error_type = "std::runtime_error";
  r.error_message = "boom";
  r.host = "host-a";
  r.pid = 42;
  r.history.push_back(
      wire::Attempt{1, Status::kLost, "signal", "SIGKILL", "host-b", 41, "last line\n"});
  return r;
}

std::vector<std::string> message_seeds() {
  wire::TaskSpec spec;
  spec.id = 1;
  spec.function = "square";
  spec.queue = "q";
  spec.job = "job-1";
  spec.needs = {{"gpu", "1"}};
  wire::Lease lease{7, 1, "square", 0, 1000, 2, 10};
  wire::Outcome outcome{7, 1, Status::kOk, "", "", 1234, "", 55};
  wire::JobInfo info{3, "job-1", true, true, 10, 4, 1, 0, 2, 500, 0, "", "square"};
  wire::Report report;
  report.request = 5;
  report.version = "0.1.0";
  report.workers.push_back(
      wire::WorkerStatus{"host-a", 1, 4, 8, {"square"}, {{"zone", "a"}}, 1, 2, 0, 10, false});
  report.functions.push_back(wire::FunctionStatus{"square", 3, 1, 1, {}, 0, 20, ""});
  report.jobs.push_back(info);
  report.failures.push_back(wire::FailureRecord{"square", "", 100, a_result(9)});
  return {
      message(true, Command::kHello, wire::Hello{"host-a", 100, "client"}),
      message(true, Command::kReady,
              wire::Ready{"host-b", 200, 8, {"square", "echo"}, {{"zone", "a"}}, 4}),
      message(true, Command::kSubmit, wire::Submit{{spec, spec}}, 2),
      message(false, Command::kAccept, wire::Accept{{1, 2, 3}}),
      message(false, Command::kTask, wire::TaskBatch{1, {lease}}, 1),
      message(true, Command::kDone, wire::DoneBatch{{outcome}}, 1),
      message(false, Command::kResult, wire::ResultBatch{{a_result(1)}}, 1),
      message(true, Command::kAck, wire::Ack{{1, 2}}),
      message(true, Command::kHeartbeat, wire::Heartbeat{0, 3, {7, 8}, 0, true, 4}),
      message(false, Command::kHeartbeat, wire::Heartbeat{0x1234, 0, {}, 8, false, 0}),
      message(false, Command::kDisconnect, wire::Disconnect{"unknown peer"}),
      message(true, Command::kCancel, wire::Cancel{{1}}),
      message(true, Command::kJoin, wire::Join{1, "q"}),
      message(false, Command::kJoined, wire::Joined{1}),
      message(true, Command::kJob, wire::JobRequest{2, "job-1", JobOp::kSeal, 10}),
      message(false, Command::kJobInfo, info),
      message(true, Command::kFetch, wire::Fetch{4, "job-1", 0, 100}),
      message(false, Command::kFetched,
              wire::Fetched{4, true, {wire::JobResult{0, a_result(0), 0}}, 1}, 1),
      message(true, Command::kStatus, wire::StatusRequest{5}),
      message(false, Command::kReport, report),
  };
}

// ---- fuzz_link: chunks (a length byte and its bytes) of what a child writes ------------------

/* The bytes Link::send writes for these messages, read back off a socketpair. */
std::string link_stream() {
  auto [ours, theirs] = detail::make_link_pair();
  detail::Link child(std::move(theirs));
  child.send(Command::kReady, wire::Ready{});
  wire::Outcome ok{7, 1, Status::kOk, "", "", 1234, "", 55};
  wire::Outcome failed{8, 1, Status::kError, "std::runtime_error", "boom", 1234, "", 9};
  std::vector<zmq::message_t> payloads;
  payloads.emplace_back(packed(49));
  payloads.emplace_back();
  child.send(Command::kDone, wire::DoneBatch{{ok, failed}}, std::move(payloads));
  if (!child.flush(true)) return {};
  std::string bytes(1 << 16, '\0');
  const auto n = ::recv(ours.get(), bytes.data(), bytes.size(), MSG_DONTWAIT);
  bytes.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return bytes;
}

std::string chunked(std::string_view stream, std::size_t chunk) {
  std::string out;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    const auto piece = stream.substr(at, chunk);
    out.push_back(static_cast<char>(piece.size()));
    out.append(piece);
  }
  return out;
}

std::vector<std::string> link_seeds() {
  const auto stream = link_stream();
  return {chunked(stream, 255), chunked(stream, 13), chunked(stream, 1)};
}

// ---- fuzz_config: YAML texts ----------------------------------------------------------------

std::vector<std::string> config_seeds() {
  WorkerConfig worker;
  worker.plugins = {"libtasks.so"};
  worker.tags = {{"zone", "a"}, {"gpu", "1"}};
  return {
      to_yaml(BrokerConfig{}),
      to_yaml(worker),
      to_yaml(ClientConfig{}),
      "broker:\n  bind: tcp://127.0.0.1:5555\n  heartbeat_interval: 1s\n"
      "worker:\n  processes: 4\n  max_memory_per_child: 512MiB\n  tags: {zone: a}\n"
      "client:\n  broker: tcp://127.0.0.1:5555\n  window: 100\n",
      "curve:\n  secret_key:\n  client_keys: []\n",
      "",
  };
}

// ---- fuzz_args: [reader and type] [chunk items] then msgpack ----------------------------------

std::string args_input(unsigned type, unsigned reader, unsigned items, const std::string& body) {
  std::string out;
  out.push_back(static_cast<char>(type + 6 * reader));
  out.push_back(static_cast<char>(items));
  return out + body;
}

/* A chunk's result: one [0, value] per item, and a failed item [1, type, message]. */
template <class T>
std::string chunk_of(const T& value) {
  return packed(
      std::make_tuple(std::make_tuple(0, value), std::make_tuple(1, "std::runtime_error", "boom")));
}

template <class T>
void add_args_seeds(std::vector<std::string>& out, unsigned type, const T& value) {
  out.push_back(args_input(type, 0, 0, packed(std::make_tuple(value))));
  out.push_back(args_input(type, 1, 0, packed(value)));
  out.push_back(args_input(type, 2, 2, chunk_of(value)));
}

std::vector<std::string> args_seeds() {
  const std::tuple<int, std::string, std::vector<double>> three{3, "x", {1.0, 2.0}};
  std::vector<std::string> out;
  add_args_seeds(out, 0, 7);
  add_args_seeds(out, 1, std::string("hello"));
  add_args_seeds(out, 2, std::vector<double>{1.5, -2.25, 1e300});
  add_args_seeds(out, 3, std::map<std::string, int>{{"a", 1}, {"b", -2}});
  out.push_back(args_input(4, 0, 0, packed(three)));  // three arguments
  out.push_back(args_input(4, 1, 0, packed(three)));
  add_args_seeds(out, 5, three);
  return out;
}

}  // namespace

const std::vector<Target>& targets() {
  static const std::vector<Target> kTargets{{"fuzz_message", &fuzz_message},
                                            {"fuzz_link", &fuzz_link},
                                            {"fuzz_config", &fuzz_config},
                                            {"fuzz_args", &fuzz_args}};
  return kTargets;
}

std::vector<std::string> seed_inputs(std::string_view target) {
  if (target == "fuzz_message") return message_seeds();
  if (target == "fuzz_link") return link_seeds();
  if (target == "fuzz_config") return config_seeds();
  if (target == "fuzz_args") return args_seeds();
  return {};
}

}  // namespace dpool::fuzz
