/* dpool-bench-zmq: the raw ZeroMQ baseline, the ceiling every dpool figure is printed beside.
 *
 *   dpool-bench-zmq broker --bind ADDR
 *   dpool-bench-zmq worker --connect ADDR
 *   dpool-bench-zmq client --connect ADDR --mode throughput|latency|fill [options]
 *
 * The same message path as dpool with none of its logic: a client DEALER, a ROUTER broker and
 * DEALER workers, each a separate process, frames shaped as dpool's (a routing id, a 4-octet
 * header, a msgpack body naming the task, a msgpack payload), msgpack decoded and encoded on
 * both ends. What it leaves out is exactly what dpool adds: no ACCEPT/ACK, no ledger, no
 * leases, credit or heartbeats, no supervisor between the broker and the process running the
 * task, no retries. So "dpool / this" is the price of dpool's guarantees and design on the
 * same sockets.
 *
 * The broker deals tasks round-robin to the workers that said READY, in arrival order, and
 * keeps them in a deque while no worker is there (W5 measures that deque's memory: three
 * zmq::message_t a task, the payload referenced, not copied). The client keeps `window` tasks
 * in flight and consumes results in task order, as Pool.map does. With --batch N one message
 * carries N tasks (the body's `items`), as a dpool chunk does.
 *
 * Frames:   client -> broker  [SUBMIT][body][payload]
 *           broker -> worker  [TASK][client id][body][payload]
 *           worker -> broker  [DONE][client id][body][result]
 *           broker -> client  [RESULT][body][result]
 *           [READY] from a worker; [INFO] -> [INFO_REPLY][A(workers, queued)] for the client
 * body = A(first task id, function, items); with items = 1 the payload is the argument array
 * and the result the value, else arrays of those.
 */
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <CLI/CLI.hpp>
#include <msgpack.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common.hpp"
#include "tasks.hpp"

namespace {

enum Command : std::uint8_t {
  kNone = 0,
  kReady,
  kSubmit,
  kTask,
  kDone,
  kResult,
  kInfo,
  kInfoReply
};

using Frames = std::vector<zmq::message_t>;
using Body = std::tuple<std::uint64_t, std::string, std::uint32_t>;  // first id, function, items

zmq::message_t header(Command c) {
  const char h[4] = {'R', 'Z', 1, static_cast<char>(c)};
  return zmq::message_t(h, sizeof h);
}

Command command_of(const zmq::message_t& m) {
  return m.size() == 4 ? static_cast<Command>(m.data<std::uint8_t>()[3]) : kNone;
}

/* As dpool sets them: no high-water mark (windows bound the queues), no linger. */
void configure(zmq::socket_t& s) {
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  s.set(zmq::sockopt::linger, 0);
}

void send_frames(zmq::socket_t& s, Frames& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    (void)s.send(frames[i],
                 i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

template <class... M>
void send(zmq::socket_t& s, M&&... parts) {
  Frames frames;
  frames.reserve(sizeof...(M));
  (frames.emplace_back(std::forward<M>(parts)), ...);
  send_frames(s, frames);
}

bool receive(zmq::socket_t& s, Frames& frames, zmq::recv_flags flags = zmq::recv_flags::none) {
  frames.clear();
  return zmq::recv_multipart(s, std::back_inserter(frames), flags).has_value();
}

/* Hands a packed buffer to ZeroMQ without copying it. */
zmq::message_t to_message(msgpack::sbuffer&& buffer) {
  const std::size_t size = buffer.size();
  void* data = buffer.release();
  return zmq::message_t(data, size, [](void* d, void*) { std::free(d); }, nullptr);
}

template <class T>
zmq::message_t packed(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return to_message(std::move(buffer));
}

msgpack::object_handle unpack(const zmq::message_t& m) {
  return msgpack::unpack(m.data<char>(), m.size());
}

// ---- broker ----------------------------------------------------------------------------------

struct Queued {
  zmq::message_t client, body, payload;
};

class Broker {
 public:
  explicit Broker(const std::string& bind) : router_(context_, zmq::socket_type::router) {
    configure(router_);
    router_.bind(bind);
  }

  [[noreturn]] void run() {
    Frames frames;
    for (;;) {
      if (receive(router_, frames)) handle(frames);
      dispatch();
    }
  }

 private:
  void handle(Frames& f) {
    if (f.size() < 2) return;
    switch (command_of(f[1])) {
      case kReady:
        workers_.emplace_back(f[0].to_string());
        break;
      case kSubmit:
        if (f.size() == 4) queue_.push_back({std::move(f[0]), std::move(f[2]), std::move(f[3])});
        break;
      case kDone:
        if (f.size() == 5)
          send(router_, std::move(f[2]), header(kResult), std::move(f[3]), std::move(f[4]));
        break;
      case kInfo:
        send(router_, std::move(f[0]), header(kInfoReply),
             packed(std::make_tuple(workers_.size(), queue_.size())));
        break;
      default:
        break;
    }
  }

  void dispatch() {
    while (!queue_.empty() && !workers_.empty()) {
      Queued& t = queue_.front();
      const std::string& worker = workers_[next_++ % workers_.size()];
      send(router_, zmq::message_t(worker.data(), worker.size()), header(kTask),
           std::move(t.client), std::move(t.body), std::move(t.payload));
      queue_.pop_front();
    }
  }

  zmq::context_t context_{1};
  zmq::socket_t router_;
  std::vector<std::string> workers_;
  std::size_t next_ = 0;
  std::deque<Queued> queue_;
};

// ---- worker ----------------------------------------------------------------------------------

/* Runs one call; echo_bytes copies its argument once, straight into the result. */
void call(const std::string& function, const msgpack::object& args,
          msgpack::packer<msgpack::sbuffer>& out) {
  if (args.type != msgpack::type::ARRAY || args.via.array.size != 1)
    throw std::invalid_argument("bad args");
  const msgpack::object& a = args.via.array.ptr[0];
  if (function == "square") {
    out.pack(bench::square(a.as<std::int64_t>()));
  } else if (function == "spin_10ms") {
    out.pack(bench::spin_10ms(a.as<std::int64_t>()));
  } else if (function == "echo_bytes" && a.type == msgpack::type::BIN) {
    out.pack_bin(a.via.bin.size);
    out.pack_bin_body(a.via.bin.ptr, a.via.bin.size);
  } else {
    throw std::invalid_argument("unknown function " + function);
  }
}

zmq::message_t execute(const zmq::message_t& body, const zmq::message_t& payload) {
  const auto [first, function, items] = unpack(body).get().as<Body>();
  // References into the received frame: a 16 MiB argument is not copied to be read.
  auto handle =
      msgpack::unpack(payload.data<char>(), payload.size(),
                      [](msgpack::type::object_type, std::size_t, void*) { return true; });
  const msgpack::object& args = handle.get();
  msgpack::sbuffer buffer(items == 1 && function == "echo_bytes" ? payload.size() : 256);
  msgpack::packer<msgpack::sbuffer> out(buffer);
  if (items == 1) {
    call(function, args, out);
  } else {
    if (args.type != msgpack::type::ARRAY || args.via.array.size != items)
      throw std::invalid_argument("bad chunk");
    out.pack_array(items);
    for (std::uint32_t i = 0; i < items; ++i) call(function, args.via.array.ptr[i], out);
  }
  return to_message(std::move(buffer));
}

[[noreturn]] void run_worker(const std::string& connect) {
  zmq::context_t context(1);
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  configure(dealer);
  dealer.connect(connect);
  send(dealer, header(kReady));
  Frames f;
  for (;;) {
    if (!receive(dealer, f) || f.size() != 4 || command_of(f[0]) != kTask) continue;
    auto result = execute(f[2], f[3]);
    send(dealer, header(kDone), std::move(f[1]), std::move(f[2]), std::move(result));
  }
}

// ---- client ----------------------------------------------------------------------------------

struct ClientOptions {
  std::string connect, mode = "throughput", task = "square", id = "zmq";
  std::uint64_t count = 100000, warmup = 1000;
  std::uint32_t window = 1000, batch = 1;
  std::size_t bytes = 0;  // echo_bytes: the argument's size
  std::size_t workers = 1;
  std::string watch;
  pid_t broker_pid = 0;
};

class Client {
 public:
  explicit Client(const ClientOptions& o) : o_(o), dealer_(context_, zmq::socket_type::dealer) {
    configure(dealer_);
    dealer_.connect(o.connect);
    if (o.task == "echo_bytes") echo_arg_ = std::string(o.bytes, 'x');
  }

  /* (workers, queued) as the broker counts them. */
  std::pair<std::size_t, std::size_t> info() {
    send(dealer_, header(kInfo));
    Frames f;
    dealer_.set(zmq::sockopt::rcvtimeo, 2000);
    const bool ok = receive(dealer_, f);
    dealer_.set(zmq::sockopt::rcvtimeo, -1);
    if (!ok || f.size() != 2 || command_of(f[0]) != kInfoReply)
      throw std::runtime_error("no INFO reply from the broker");
    return unpack(f[1]).get().as<std::pair<std::size_t, std::size_t>>();
  }

  void wait_for_workers(std::size_t n) {
    const auto deadline = bench::Clock::now() + std::chrono::seconds(15);
    while (info().first < n) {
      if (bench::Clock::now() > deadline)
        throw std::runtime_error("workers did not connect within 15 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  /* Runs `count` tasks with `window` in flight, consuming results in order; returns seconds. */
  double pipeline(std::uint64_t count) {
    first_id_ = next_id_;
    filled_.assign(count, 0);
    std::uint64_t sent = 0, in_flight = 0, cursor = 0;
    const auto start = bench::Clock::now();
    Frames f;
    while (cursor < count) {
      while (sent < count && (in_flight == 0 || in_flight + o_.batch <= o_.window)) {
        const auto items =
            static_cast<std::uint32_t>(std::min<std::uint64_t>(o_.batch, count - sent));
        submit(sent, items);
        sent += items;
        in_flight += items;
      }
      if (!receive(dealer_, f)) continue;
      in_flight -= take_result(f);
      while (cursor < count && filled_[cursor]) ++cursor;  // consumed in order, as Pool.map
    }
    next_id_ += count;
    return bench::seconds_since(start);
  }

  /* One task at a time; returns each round trip in microseconds. */
  std::vector<double> latencies(std::uint64_t count) {
    std::vector<double> us;
    us.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i) {
      first_id_ = next_id_;
      filled_.assign(1, 0);
      Frames f;
      const auto start = bench::Clock::now();
      submit(0, 1);
      while (!receive(dealer_, f)) {
      }
      take_result(f);
      us.push_back(bench::seconds_since(start) * 1e6);
      ++next_id_;
    }
    return us;
  }

  /* Sends `count` tasks of an `bytes`-octet argument and returns once the broker holds them. */
  void fill(std::uint64_t count) {
    first_id_ = next_id_;
    for (std::uint64_t i = 0; i < count; ++i) submit(i, 1);
    const auto deadline = bench::Clock::now() + std::chrono::seconds(120);
    while (info().second < count) {
      if (bench::Clock::now() > deadline)
        throw std::runtime_error("the broker did not queue every task in 120 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

 private:
  void submit(std::uint64_t index, std::uint32_t items) {
    // Sized up front so that a 16 MiB argument is written once, not regrown.
    msgpack::sbuffer args(o_.task == "echo_bytes" ? echo_arg_.size() + 16
                                                  : 64 + 12 * static_cast<std::size_t>(items));
    msgpack::packer<msgpack::sbuffer> p(args);
    if (items > 1) p.pack_array(items);
    for (std::uint32_t i = 0; i < items; ++i) {
      p.pack_array(1);
      if (o_.task == "echo_bytes") {
        p.pack_bin(static_cast<std::uint32_t>(echo_arg_.size()));
        p.pack_bin_body(echo_arg_.data(), static_cast<std::uint32_t>(echo_arg_.size()));
      } else {
        p.pack(static_cast<std::int64_t>(index + i));
      }
    }
    send(dealer_, header(kSubmit), packed(Body{first_id_ + index, o_.task, items}),
         to_message(std::move(args)));
  }

  /* Checks and stores a RESULT's values; returns how many tasks it completed. */
  std::uint32_t take_result(const Frames& f) {
    if (f.size() != 3 || command_of(f[0]) != kResult)
      throw std::runtime_error("unexpected message");
    const auto [first, function, items] = unpack(f[1]).get().as<Body>();
    auto handle = unpack(f[2]);
    const msgpack::object& v = handle.get();
    for (std::uint32_t i = 0; i < items; ++i) {
      const msgpack::object& item = items == 1 ? v : v.via.array.ptr[i];
      const std::uint64_t index = first - first_id_ + i;
      store(index, item);
    }
    return items;
  }

  void store(std::uint64_t index, const msgpack::object& item) {
    if (o_.task == "echo_bytes") {
      // Decoded as dpool's client decodes it, into the caller's type.
      if (item.as<std::vector<char>>().size() != o_.bytes)
        throw std::runtime_error("echo_bytes: wrong size");
    } else {
      const auto x = static_cast<std::int64_t>(index);
      const std::int64_t want = o_.task == "square" ? x * x : x;
      if (item.as<std::int64_t>() != want) throw std::runtime_error("wrong result");
    }
    filled_.at(index) = 1;
  }

  ClientOptions o_;
  zmq::context_t context_{1};
  zmq::socket_t dealer_;
  std::string echo_arg_;
  std::uint64_t next_id_ = 1, first_id_ = 1;
  std::vector<char> filled_;
};

int run_throughput(const ClientOptions& o) {
  Client client(o);
  client.wait_for_workers(o.workers);
  if (o.warmup) client.pipeline(std::min(o.warmup, o.count));
  bench::CpuMeter cpu(bench::parse_pids(o.watch));
  cpu.start();
  const double seconds = client.pipeline(o.count);
  const double cpu_seconds = cpu.elapsed();
  const double switches = cpu.switches();
  const double bytes = static_cast<double>(o.count) * static_cast<double>(o.bytes) * 2;
  bench::report(o.id, {{"tasks", static_cast<double>(o.count)},
                       {"seconds", seconds},
                       {"rate", static_cast<double>(o.count) / seconds},
                       {"cpu", cpu_seconds},
                       {"switches", switches},
                       {"gbps", bytes / seconds / 1e9}});
  return 0;
}

int run_latency(const ClientOptions& o) {
  Client client(o);
  client.wait_for_workers(o.workers);
  (void)client.latencies(o.warmup);
  const auto us = client.latencies(o.count);
  bench::report(o.id, {{"tasks", static_cast<double>(o.count)},
                       {"p50", bench::percentile(us, 50)},
                       {"p99", bench::percentile(us, 99)},
                       {"max", bench::percentile(us, 100)}});
  return 0;
}

int run_fill(const ClientOptions& o) {
  if (o.broker_pid <= 0) throw std::invalid_argument("--mode fill needs --broker-pid");
  Client client(o);
  client.wait_for_workers(0);
  const long long before = bench::wait_until_idle(o.broker_pid, std::chrono::milliseconds(500),
                                                  std::chrono::seconds(10));
  client.fill(o.count);
  const long long after = bench::wait_until_idle(o.broker_pid, std::chrono::milliseconds(1000),
                                                 std::chrono::seconds(60));
  if (before < 0 || after < 0) throw std::runtime_error("could not read the broker's memory");
  // A(bin8(bytes)): 1 + 2 octets of msgpack around the bytes.
  bench::report_memory(o.id, o.count, before, after, static_cast<double>(o.bytes) + 3);
  return 0;
}

int run_client(ClientOptions o) {
  if (o.mode == "throughput") return run_throughput(o);
  if (o.mode == "latency") return run_latency(o);
  if (o.mode == "fill") {
    o.task = "echo_bytes";
    return run_fill(o);
  }
  throw std::invalid_argument("unknown --mode " + o.mode);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dpool-bench-zmq: the raw ZeroMQ baseline (broker, worker and client roles)"};
  app.require_subcommand(1);
  std::string bind, connect;
  auto* broker = app.add_subcommand("broker", "a ROUTER that deals tasks round-robin");
  broker->add_option("--bind", bind, "address to bind")->required();
  auto* worker = app.add_subcommand("worker", "a DEALER that runs tasks");
  worker->add_option("--connect", connect, "the broker's address")->required();
  ClientOptions o;
  auto* client = app.add_subcommand("client", "keeps tasks in flight and measures");
  client->add_option("--connect", o.connect, "the broker's address")->required();
  client->add_option("--mode", o.mode, "throughput, latency or fill")
      ->check(CLI::IsMember({"throughput", "latency", "fill"}));
  client->add_option("--task", o.task, "square, spin_10ms or echo_bytes")
      ->check(CLI::IsMember({"square", "spin_10ms", "echo_bytes"}));
  client->add_option("--count", o.count, "tasks measured");
  client->add_option("--warmup", o.warmup, "tasks run first, not measured");
  client->add_option("--window", o.window, "tasks in flight at most")
      ->check(CLI::Range(1u, 10'000'000u));
  client->add_option("--batch", o.batch, "tasks a message")->check(CLI::Range(1u, 100'000u));
  client->add_option("--bytes", o.bytes, "echo_bytes: octets of the argument");
  client->add_option("--workers", o.workers, "worker processes to wait for");
  client->add_option("--watch", o.watch,
                     "pids whose process trees' CPU is counted, comma-separated");
  client->add_option("--broker-pid", o.broker_pid, "fill: the broker whose memory is read");
  client->add_option("--id", o.id, "the id of the RESULT line");
  CLI11_PARSE(app, argc, argv);
  try {
    if (broker->parsed()) Broker(bind).run();
    if (worker->parsed()) run_worker(connect);
    return run_client(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool-bench-zmq: %s\n", e.what());
    return 1;
  }
}
