/* Topology and the `ip` helpers (see netns.hpp).
 *
 * Every `ip` call is a child process waited for with a deadline, its output kept for the error
 * message: a failure names the command and what `ip` said, so a broken CI machine is diagnosed
 * from the test log alone. Creating the namespaces is where an unsuitable machine shows (no
 * CAP_SYS_ADMIN, no veth or bridge module): failures there become Unavailable (skipped);
 * failures after that are bugs and fail the test.
 */
#include "cluster/netns.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "support/cli.hpp"
#include "support/process.hpp"

namespace dpool::cluster {

namespace {

using namespace std::chrono_literals;

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

/* Throws `E` naming the `ip` command and its output when it failed. */
template <class E = std::runtime_error>
void ip_or_throw(const std::vector<std::string>& args) {
  const auto r = ip(args);
  if (r.exit_code != 0) throw E("`ip " + joined(args) + "` failed: " + r.output);
}

bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

/* Kills every process inside namespace `name` (they are ours: only our tests start them). */
void kill_processes_in(const std::string& name) {
  const auto r = ip({"netns", "pids", name});
  if (r.exit_code != 0) return;
  std::istringstream in(r.output);
  for (long pid = 0; in >> pid;) {
    if (pid > 1) ::kill(static_cast<pid_t>(pid), SIGKILL);
  }
}

/* The names `ip netns list` shows (each line: "NAME" or "NAME (id: N)"). */
std::vector<std::string> namespace_names() {
  std::vector<std::string> out;
  const auto r = ip({"netns", "list"});
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    const auto name = line.substr(0, line.find(' '));
    if (!name.empty()) out.push_back(name);
  }
  return out;
}

/* The pid in a name "dpcl-<pid>-<host>", or 0 when the name is not of that form. */
pid_t pid_in(const std::string& name) {
  const std::string prefix = kPrefix;
  if (name.rfind(prefix, 0) != 0) return 0;
  const auto rest = name.substr(prefix.size());
  const auto dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos) return 0;
  if (rest.find_first_not_of("0123456789") != dash) return 0;
  return static_cast<pid_t>(std::stol(rest.substr(0, dash)));
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds limit) {
  test::TempDir dir;
  const auto out_path = dir.path() + "/output";
  const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  CommandResult r;
  pid_t pid = -1;
  try {
    pid = test::spawn(argv, in, out, out, test::current_environment());
  } catch (const std::exception& e) {
    r.output = e.what();
  }
  ::close(in);
  ::close(out);
  if (pid < 0) return r;
  int status = 0;
  if (!test::wait_for([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, limit)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    r.output = test::slurp(out_path) + "(killed after " + std::to_string(limit.count()) + " ms)";
    return r;
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = test::slurp(out_path);
  return r;
}

std::string ip_binary() {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::istringstream in(path);
    for (std::string dir; std::getline(in, dir, ':');) dirs.push_back(dir);
  }
  // Non-login root shells may lack the sbin directories in PATH.
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.emplace_back(dir);
  for (const auto& dir : dirs) {
    const auto candidate = dir + "/ip";
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

CommandResult ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{ip_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

std::optional<std::string> why_unavailable() {
  if (::geteuid() != 0) return "network namespaces need root (run the cluster tests as root)";
  if (ip_binary().empty()) return "no `ip` binary (install iproute2)";
  return std::nullopt;
}

void remove_stale_namespaces() {
  for (const auto& name : namespace_names()) {
    const pid_t owner = pid_in(name);
    if (owner <= 0 || !process_gone(owner)) continue;
    kill_processes_in(name);
    (void)ip({"netns", "del", name});
  }
}

Topology::Topology(std::vector<std::string> hosts)
    : stem_(std::string(kPrefix) + std::to_string(::getpid()) + "-"),
      subnet_byte_(static_cast<int>(::getpid() % 250) + 1),
      hosts_(std::move(hosts)) {
  try {
    build();
  } catch (...) {
    teardown();
    throw;
  }
}

Topology::~Topology() { teardown(); }

void Topology::build() {
  add_namespace(stem_ + "switch");
  const auto sw = stem_ + "switch";
  ip_or_throw<Unavailable>({"-n", sw, "link", "add", "br0", "type", "bridge"});
  ip_or_throw({"-n", sw, "link", "set", "br0", "up"});
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    add_namespace(stem_ + hosts_[i]);
    plug(i);
  }
}

void Topology::add_namespace(const std::string& name) {
  const auto r = ip({"netns", "add", name});
  if (r.exit_code != 0)
    throw Unavailable("cannot create network namespace " + name + ": " + r.output);
  made_.push_back(name);
}

/* One veth pair: "p-<host>" on the bridge in the switch, "eth0" in the host. */
void Topology::plug(std::size_t i) {
  const auto sw = stem_ + "switch", ns = stem_ + hosts_[i], port = "p-" + hosts_[i];
  ip_or_throw<Unavailable>(
      {"-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns});
  ip_or_throw({"-n", sw, "link", "set", port, "master", "br0"});
  ip_or_throw({"-n", sw, "link", "set", port, "up"});
  ip_or_throw({"-n", ns, "addr", "add", address(hosts_[i]) + "/24", "dev", "eth0"});
  ip_or_throw({"-n", ns, "link", "set", "eth0", "up"});
  ip_or_throw({"-n", ns, "link", "set", "lo", "up"});
}

void Topology::teardown() noexcept {
  try {
    for (const auto& name : made_) kill_processes_in(name);
    // Hosts first, the switch last: deleting a host takes its veth pair off the bridge.
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) (void)ip({"netns", "del", *it});
    made_.clear();
  } catch (...) {  // a destructor must not throw; remove_stale_namespaces() catches the rest
  }
}

std::size_t Topology::index_of(const std::string& host) const {
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    if (hosts_[i] == host) return i;
  }
  throw std::invalid_argument("no host " + host + " in this topology");
}

std::string Topology::netns(const std::string& host) const {
  return stem_ + hosts_[index_of(host)];
}

std::string Topology::address(const std::string& host) const {
  return "10.213." + std::to_string(subnet_byte_) + "." + std::to_string(index_of(host) + 1);
}

std::string Topology::subnet() const { return "10.213." + std::to_string(subnet_byte_) + ".0/24"; }

unsigned long long Topology::netns_inode(const std::string& host) const {
  struct stat st {};
  const auto path = "/run/netns/" + netns(host);
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path);
  return static_cast<unsigned long long>(st.st_ino);
}

std::vector<std::string> Topology::exec_prefix(const std::string& host) const {
  return {ip_binary(), "netns", "exec", netns(host)};
}

void Topology::set_link(const std::string& host, bool up) {
  ip_or_throw(
      {"-n", stem_ + "switch", "link", "set", "p-" + hosts_[index_of(host)], up ? "up" : "down"});
}

}  // namespace dpool::cluster
