/* Task functions: the registry that maps names to callable functions, and DPOOL_TASK.
 *
 *   int square(int x) { return x * x; }
 *   DPOOL_TASK(square);                  // registered as "square"
 *   DPOOL_TASK_NAMED(square, "math.sq"); // or under a name of your choosing
 *
 * A registered function takes and returns anything msgpack-c can encode. Its arguments arrive
 * as a msgpack array; a wrong count or type becomes an error result of type
 * "dpool::ArgumentError" naming the expected signature, never a crash. An exception thrown by
 * the function becomes an error result carrying the exception's type and what().
 *
 * There is one registry per process. A plugin loaded by dpool-worker registers into the
 * worker's registry because dpool-worker exports the registry's symbols to the plugins it
 * loads.
 */
#pragma once

#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <msgpack.hpp>

#include "dpool/error.hpp"

namespace dpool {

/* A task function in its untyped form: reads `args` (a msgpack array) and packs its result. */
using RawTask = std::function<void(const msgpack::object& args, msgpack::sbuffer& out)>;

struct TaskInfo {
  std::string name;
  std::string signature;  // e.g. "int(int)", for error messages and client-side checks
  RawTask call;
  const void* address = nullptr;  // the C++ function, for calls by pointer (typed tasks only)
  /* Throws ArgumentError if `args` does not fit the signature (typed tasks only). */
  std::function<void(const msgpack::object& args)> check;
};

namespace detail {

/* Adds a task to this process's registry; a second function under one name replaces the
 * first (with a warning), as the last definition wins in Python. Returns true. */
bool register_task(TaskInfo info);

/* A demangled type name for messages. */
std::string type_name(const std::type_info& t);

template <class... A>
std::string signature_of() {
  std::string s;
  ((s += (s.empty() ? "" : ", ") + type_name(typeid(std::decay_t<A>))), ...);
  return s;
}

[[noreturn]] void throw_argument_error(const std::string& name, const std::string& expected,
                                       const msgpack::object& args, const char* why);

template <class... A>
void check_args(const std::string& name, const msgpack::object& args) {
  if (args.type != msgpack::type::ARRAY || args.via.array.size != sizeof...(A)) {
    throw_argument_error(name, signature_of<A...>(), args, "wrong number of arguments");
  }
  try {
    std::tuple<std::decay_t<A>...> values;
    args.convert(values);
  } catch (const msgpack::type_error&) {
    throw_argument_error(name, signature_of<A...>(), args, "wrong argument type");
  }
}

template <class R, class... A>
RawTask make_raw_task(std::string name, R (*fn)(A...)) {
  return [fn, name = std::move(name)](const msgpack::object& args, msgpack::sbuffer& out) {
    if (args.type != msgpack::type::ARRAY || args.via.array.size != sizeof...(A)) {
      throw_argument_error(name, signature_of<A...>(), args, "wrong number of arguments");
    }
    std::tuple<std::decay_t<A>...> values;
    try {
      args.convert(values);
    } catch (const msgpack::type_error&) {
      throw_argument_error(name, signature_of<A...>(), args, "wrong argument type");
    }
    msgpack::packer<msgpack::sbuffer> packer(out);
    auto call = [&](auto&... v) -> decltype(auto) { return fn(static_cast<A&&>(v)...); };
    if constexpr (std::is_void_v<R>) {
      std::apply(call, values);
      packer.pack_nil();
    } else {
      packer.pack(std::apply(call, values));
    }
  };
}

}  // namespace detail

/* Registers `fn` under `name`. Returns true so that it can initialise a static. */
template <class R, class... A>
bool register_task(std::string name, R (*fn)(A...)) {
  TaskInfo info;
  info.signature = detail::type_name(typeid(R)) + "(" + detail::signature_of<A...>() + ")";
  info.call = detail::make_raw_task(name, fn);
  info.address = reinterpret_cast<const void*>(fn);
  info.check = [name](const msgpack::object& args) { detail::check_args<A...>(name, args); };
  info.name = std::move(name);
  return detail::register_task(std::move(info));
}

/* Registers an untyped task (it reads the msgpack array itself). */
inline bool register_raw_task(std::string name, RawTask fn, std::string signature = "raw") {
  TaskInfo info;
  info.name = std::move(name);
  info.signature = std::move(signature);
  info.call = std::move(fn);
  return detail::register_task(std::move(info));
}

/* The registered task called `name`, or nullptr. */
[[nodiscard]] const TaskInfo* find_task(const std::string& name);

/* The names of all registered tasks, sorted. */
[[nodiscard]] std::vector<std::string> task_names();

/* Removes a task (used to withdraw built-ins that are not allowed, such as exec). */
void unregister_task(const std::string& name);

}  // namespace dpool

#define DPOOL_DETAIL_CAT2(a, b) a##b
#define DPOOL_DETAIL_CAT(a, b) DPOOL_DETAIL_CAT2(a, b)

/* Registers a function under its own name when the program (or plugin) is loaded. */
#define DPOOL_TASK(fn)                                                              \
  [[maybe_unused]] static const bool DPOOL_DETAIL_CAT(dpool_task_registered_, fn) = \
      ::dpool::register_task(#fn, &fn)

/* Registers a function under another name. */
#define DPOOL_TASK_NAMED(fn, name)                                                             \
  [[maybe_unused]] static const bool DPOOL_DETAIL_CAT(dpool_task_registered_, __COUNTER__) = \
      ::dpool::register_task(name, &fn)
