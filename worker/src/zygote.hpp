/* The zygote: a single-threaded process that forks the worker host's children.
 *
 * fork() copies only the calling thread; a lock another thread held at that moment stays held
 * forever in the child. The supervisor runs ZeroMQ's I/O threads, so a child forked from it
 * can deadlock on the first allocation (it does, reliably, under AddressSanitizer). The zygote
 * is forked before the supervisor starts any thread, so the children it forks inherit a
 * quiet, single-threaded process: Python's forkserver, for the same reason.
 *
 * The supervisor and the zygote talk over a SOCK_SEQPACKET socketpair: the supervisor sends
 * spawn requests, each with the child's end of its link (link.hpp) attached as SCM_RIGHTS, so
 * that the new child holds its connection from its first instruction and the zygote keeps no
 * copy past the fork; the zygote answers each with the new pid, and reports every child's exit
 * with its wait status. The zygote dies with the supervisor (PR_SET_PDEATHSIG), and the
 * children die with the zygote, so nothing outlives the host.
 *
 * Each child's stderr is a pipe to the zygote, which copies it to its own stderr (the worker
 * host's) as it comes and keeps the last lines of each child (StderrTail). When a child dies
 * the zygote first empties its pipe, so the exit report carries everything the child wrote:
 * the supervisor attaches it to the outcome of the task that died with it. Being single
 * threaded, the zygote does this in its poll loop; the children themselves run no thread
 * for it (tasks may fork).
 */
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dpool::detail {

class Zygote {
 public:
  /* What a spawned child runs: given its slot and its end of the link; never returns. */
  using ChildMain = std::function<void(std::size_t slot, int link)>;

  struct Event {
    enum class Kind : std::uint8_t { kSpawned = 1, kExited = 2, kFailed = 3 };
    Kind kind = Kind::kSpawned;
    std::uint32_t slot = 0;
    pid_t pid = -1;
    int status = 0;  // wait status for kExited, errno for kFailed
    std::string stderr_tail;  // kExited, unless the child exited 0: the last lines it wrote
  };

  /* Forks the zygote. Call while this process has a single thread. Throws Error(kInternal). */
  explicit Zygote(ChildMain child_main);
  ~Zygote();
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  /* Asks for a child in `slot` that talks over `link` (the child's end of its link: the zygote
   * gets a copy, the caller closes its own). Its pid comes back as a kSpawned event. */
  void spawn(std::size_t slot, int link);

  /* The descriptor to poll: readable when events are waiting, or at end of file if the
   * zygote died. */
  [[nodiscard]] int fd() const { return fd_; }

  /* Events waiting now. Sets `alive` to false when the zygote is gone. */
  std::vector<Event> events(bool& alive);

 private:
  int fd_ = -1;
  pid_t pid_ = -1;
};

}  // namespace dpool::detail
