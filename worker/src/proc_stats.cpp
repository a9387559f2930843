/* resident_bytes() and OomKills (see proc_stats.hpp). */
#include "proc_stats.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

namespace dpool::detail {

std::optional<std::uint64_t> resident_bytes(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return std::nullopt;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

namespace {

/* Where a cgroup hierarchy is mounted, from /proc/self/mountinfo ("id parent dev root
 * mountpoint options - fstype source superoptions"): the cgroup2 one, or the v1 one with the
 * memory controller. `root` is the mount's own root, which a container may have moved. */
struct Mount {
  std::string point;
  std::string root;
};
std::optional<Mount> cgroup_mount(bool v2) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point, word, type, source, super;
    f >> id >> parent >> dev >> root >> point;
    while (f >> word && word != "-") {
    }
    f >> type >> source >> super;
    const bool memory_v1 =
        type == "cgroup" && ("," + super + ",").find(",memory,") != std::string::npos;
    if ((v2 && type == "cgroup2") || (!v2 && memory_v1)) return Mount{point, root};
  }
  return std::nullopt;
}

/* This process's cgroup in one hierarchy: the path after "0::" (v2) or "N:memory:" (v1). */
std::optional<std::string> cgroup_path(bool v2) {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const auto controllers = line.substr(first + 1, second - first - 1);
    if (v2 ? line.rfind("0::", 0) == 0
           : ("," + controllers + ",").find(",memory,") != std::string::npos) {
      return line.substr(second + 1);
    }
  }
  return std::nullopt;
}

/* The file with this cgroup's oom_kill count: memory.events.local (v2; memory.events would
 * count the kills in cgroups below too), else memory.oom_control of the v1 memory controller
 * (which counts the same since Linux 4.13); "" when none is there. */
std::string oom_events_file() {
  for (bool v2 : {true, false}) {
    const auto mount = cgroup_mount(v2);
    auto path = cgroup_path(v2);
    if (!mount || !path) continue;
    if (mount->root != "/" && path->rfind(mount->root, 0) == 0)
      path = path->substr(mount->root.size());
    const std::vector<std::string> names =
        v2 ? std::vector<std::string>{"/memory.events.local", "/memory.events"}
           : std::vector<std::string>{"/memory.oom_control"};
    for (const auto& name : names) {
      if (std::ifstream(mount->point + *path + name)) return mount->point + *path + name;
    }
  }
  return "";
}

}  // namespace

OomKills::OomKills() : events_file_(oom_events_file()) {
  if (auto n = read()) seen_ = *n;
  else events_file_.clear();
}

std::optional<std::uint64_t> OomKills::read() const {
  if (events_file_.empty()) return std::nullopt;
  std::ifstream in(events_file_);
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return std::nullopt;
}

bool OomKills::one_more() {
  const auto now = read();
  if (!now || *now <= seen_) return false;
  ++seen_;
  return true;
}

}  // namespace dpool::detail
