/* fuzz_args: task arguments as a worker unpacks them, and results as a client unpacks them.
 *
 * Both are msgpack that a peer wrote (a client's arguments reach every worker; a worker's
 * result reaches the client), read by dpool's own helpers: the worker's unpack_body() with
 * kArgumentLimits and the typed call wrapper DPOOL_TASK makes (detail::make_raw_task), the
 * client's TaskResult::as<T>() and Pool's detail::decode_chunk<T>() for map's chunks. Each is
 * run for a few types typical of task signatures.
 *   byte 0      which reader and type: (byte % kTypes) picks the type, (byte / kTypes) % 3
 *               the reader (0 worker call, 1 client value, 2 client chunk)
 *   byte 1      for a chunk, the number of items the client expects (0..15)
 *   the rest    the msgpack payload
 * Exceptions are what these readers answer bad input with, and their callers catch them
 * (run_one() turns them into an error outcome, a future stores them), so the harness catches
 * them too; crashes, leaks, undefined behaviour and large allocations are the findings.
 */
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "dpool/codec.hpp"
#include "dpool/pool.hpp"
#include "dpool/task.hpp"
#include "entries.hpp"

namespace dpool::fuzz {
namespace {

using Tuple = std::tuple<int, std::string, std::vector<double>>;

// Each function returns what it took, so that the client side reads the same types back.
int take_int(int x) { return x; }
std::string take_string(std::string s) { return s; }
std::vector<double> take_doubles(std::vector<double> v) { return v; }
std::map<std::string, int> take_map(std::map<std::string, int> m) { return m; }
Tuple take_three(int x, std::string s, std::vector<double> v) {
  return {x, std::move(s), std::move(v)};
}
Tuple take_tuple(Tuple t) { return t; }

constexpr std::uint8_t kTypes = 6;

/* The worker's side of run_one(): unpack, then the typed wrapper converts and calls. */
template <class R, class... A>
void worker_call(const zmq::message_t& payload, R (*fn)(A...)) {
  msgpack::object_handle args;
  if (!detail::unpack_body(payload, args, kArgumentLimits)) return;
  const auto call = detail::make_raw_task("fuzzed", fn);
  msgpack::sbuffer out;
  try {
    call(args.get(), out);
  } catch (const std::exception&) {
  }
}

template <class R>
void client_value(zmq::message_t& payload) {
  TaskResult r;
  r.value = std::move(payload);
  try {
    (void)r.as<R>("fuzzed");
  } catch (const std::exception&) {
  }
}

template <class R>
void client_chunk(zmq::message_t& payload, std::size_t items) {
  TaskResult r;
  r.value = std::move(payload);
  (void)detail::decode_chunk<R>(r, items, "fuzzed");  // failures become items, never throws
}

template <class R, class... A>
void run(unsigned reader, zmq::message_t& payload, std::size_t items, R (*fn)(A...)) {
  if (reader == 0) worker_call(payload, fn);
  else if (reader == 1) client_value<R>(payload);
  else client_chunk<R>(payload, items);
}

}  // namespace

int fuzz_args(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const unsigned type = data[0] % kTypes;
  const unsigned reader = (data[0] / kTypes) % 3;
  const std::size_t items = data[1] % 16;
  zmq::message_t payload(data + 2, size - 2);
  switch (type) {
    case 0: run(reader, payload, items, &take_int); break;
    case 1: run(reader, payload, items, &take_string); break;
    case 2: run(reader, payload, items, &take_doubles); break;
    case 3: run(reader, payload, items, &take_map); break;
    case 4: run(reader, payload, items, &take_three); break;
    default: run(reader, payload, items, &take_tuple); break;
  }
  return 0;
}

}  // namespace dpool::fuzz
