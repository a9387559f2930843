/* What the kernel says about the worker's processes: a child's resident memory, for
 * max_memory_per_child, and the out-of-memory kills in the worker's cgroup, to tell a child
 * the kernel killed for memory from one killed by someone else.
 *
 * Both are read from /proc and the cgroup file system (cgroup v2, or the v1 memory controller
 * of hybrid hosts). Where they cannot be read (another kernel, a container without them) the
 * answers are "unknown", never an error: a worker host runs without them.
 */
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace dpool::detail {

/* Resident bytes of `pid` (/proc/PID/statm), or nullopt when it cannot be read. */
[[nodiscard]] std::optional<std::uint64_t> resident_bytes(pid_t pid);

/* The oom_kill counter of this process's cgroup (memory.events, or memory.oom_control on
 * cgroup v1), followed from the moment it is made. */
class OomKills {
 public:
  OomKills();
  /* True when the counter shows a kill not yet accounted for; it is then accounted for. One
   * call per unexplained death, so two children killed together are both recognised. */
  bool one_more();

 private:
  [[nodiscard]] std::optional<std::uint64_t> read() const;
  std::string events_file_;  // empty: not available
  std::uint64_t seen_ = 0;
};

}  // namespace dpool::detail
