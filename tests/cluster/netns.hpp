/* Hosts as Linux network namespaces, for the cluster tests: a Topology is a set of "hosts"
 * (one network namespace each, holding one interface eth0 with one address of a private test
 * subnet) plugged into a bridge that lives in a namespace of its own, the "switch".
 *
 * Why it is built this way:
 *   - Everything lives in namespaces the test made: the bridge and both ends of every veth pair
 *     are created inside them (`ip -n`), so no interface or address ever appears in the root
 *     namespace and no packet can leave the test's hosts. Each namespace has its own network
 *     stack, so parallel runs may even use the same subnet without seeing each other.
 *   - Names carry a prefix and the test process's pid ("dpcl-<pid>-<host>"): parallel ctest
 *     runs never collide, and a run can tell the leftovers of a crashed earlier run (their pid
 *     is gone) from those of a live one, and remove only those.
 *   - A Topology is an RAII owner: its destructor (also when an assertion fails, or when the
 *     constructor gives up half-way) kills every process left inside its namespaces and
 *     deletes them, which takes the veths and the bridge with them.
 *   - The `ip` command (iproute2) does the work rather than netlink code of our own: it is what
 *     a person would type to reproduce a failure, and every call is bounded in time.
 */
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dpool::cluster {

/* The environment cannot host namespaces (not root, no `ip`, no netns or veth support): the
 * tests report this as skipped with what() as the reason. */
struct Unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct CommandResult {
  int exit_code = -1;  // -1: did not start, signalled or timed out
  std::string output;  // stdout and stderr together
};

/* Runs `argv` (argv[0] a path) and waits at most `limit`, killing it past that. */
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds limit = std::chrono::seconds(10));

/* The path of the `ip` binary, or "" when none is found. */
[[nodiscard]] std::string ip_binary();

/* Runs `ip args...` (bounded as run_command). */
CommandResult ip(const std::vector<std::string>& args);

/* Why namespaces cannot be made here (not root, no `ip`), or nullopt when they may be. */
[[nodiscard]] std::optional<std::string> why_unavailable();

/* The prefix of every namespace the cluster tests make. */
inline constexpr const char* kPrefix = "dpcl-";

/* Deletes the namespaces of earlier runs whose process is gone, killing what still runs in
 * them. Namespaces of live processes (parallel runs) are left alone. */
void remove_stale_namespaces();

class Topology {
 public:
  /* Makes the switch and one namespace per name in `hosts`; host i gets the address
   * 10.213.S.(i+1) of a /24 where S depends on this process's pid. Throws Unavailable when
   * namespaces, bridges or veths cannot be made here, std::runtime_error for any later step;
   * whatever was made is removed before it throws. */
  explicit Topology(std::vector<std::string> hosts);
  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  /* The namespace name of `host` (one of the names given to the constructor). */
  [[nodiscard]] std::string netns(const std::string& host) const;
  /* The IPv4 address of `host` in the test subnet. */
  [[nodiscard]] std::string address(const std::string& host) const;
  /* The subnet, as "10.213.S.0/24". */
  [[nodiscard]] std::string subnet() const;
  /* The inode of `host`'s network namespace: what a process inside sees at /proc/self/ns/net. */
  [[nodiscard]] unsigned long long netns_inode(const std::string& host) const;
  /* `ip netns exec NS` for `host`: prefix a command with it to run the command there. */
  [[nodiscard]] std::vector<std::string> exec_prefix(const std::string& host) const;

  /* Cuts (up = false) or restores `host`'s cable: its port on the bridge goes down or up. The
   * host keeps its address and routes; its packets just stop arriving, as with a pulled cable
   * or a dead switch port. Throws std::runtime_error if `ip` fails. */
  void set_link(const std::string& host, bool up);

 private:
  void build();
  void add_namespace(const std::string& name);
  void plug(std::size_t index);
  void teardown() noexcept;
  [[nodiscard]] std::size_t index_of(const std::string& host) const;

  std::string stem_;   // "dpcl-<pid>-"
  int subnet_byte_;
  std::vector<std::string> hosts_;
  std::vector<std::string> made_;  // namespaces created so far, deleted by teardown()
};

}  // namespace dpool::cluster
