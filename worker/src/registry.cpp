/* The per-process task registry (see task.hpp). A function-local static so that DPOOL_TASK
 * initialisers in any translation unit, or in a plugin, find it constructed.
 *
 * One instance per process, also when a plugin links its own copy of this static library: the
 * accessor task_registry() has external linkage and default visibility, so a host built with
 * ENABLE_EXPORTS (dpool-worker is) exports it, and the dynamic linker binds a plugin's calls to
 * the host's definition, which comes first in the lookup order. A plugin that only includes
 * the headers binds register_task() and friends to the host's the same way. */
#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "dpool/log.hpp"
#include "dpool/task.hpp"

namespace dpool {
namespace detail {

struct TaskRegistry {
  std::mutex mutex;
  std::map<std::string, TaskInfo> tasks;
};

/* noinline: a call inlined into a plugin's copy of register_task() would bypass the host's
 * definition and fill the plugin's private registry. */
[[gnu::visibility("default"), gnu::noinline]] TaskRegistry& task_registry();

TaskRegistry& task_registry() {
  static TaskRegistry r;
  return r;
}

}  // namespace detail

namespace {

detail::TaskRegistry& registry() { return detail::task_registry(); }

}  // namespace

namespace detail {

bool register_task(TaskInfo info) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  if (r.tasks.contains(info.name)) {
    log::warn("task '{}' registered twice: the later definition wins", info.name);
  }
  auto name = info.name;
  r.tasks.insert_or_assign(std::move(name), std::move(info));
  return true;
}

std::string type_name(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
  std::string name = status == 0 && demangled ? demangled.get() : t.name();
  // The standard library's long spellings help nobody reading an error message.
  for (const auto& [from, to] :
       {std::pair<std::string, std::string>{
            "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
            "std::string"},
        {"std::__cxx11::", "std::"}}) {
    for (auto pos = name.find(from); pos != std::string::npos; pos = name.find(from, pos)) {
      name.replace(pos, from.size(), to);
      pos += to.size();
    }
  }
  return name;
}

void throw_argument_error(const std::string& name, const std::string& expected,
                          const msgpack::object& args, const char* why) {
  std::ostringstream got;
  got << args;
  auto text = got.str();
  if (text.size() > 200) text = text.substr(0, 200) + "...";
  throw ArgumentError(name + " expects (" + expected + "), got " + text + ": " + why);
}

}  // namespace detail

const TaskInfo* find_task(const std::string& name) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.tasks.find(name);
  return it == r.tasks.end() ? nullptr : &it->second;
}

std::vector<std::string> task_names() {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, info] : r.tasks) names.push_back(name);
  return names;
}

void unregister_task(const std::string& name) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.tasks.erase(name);
}

}  // namespace dpool
