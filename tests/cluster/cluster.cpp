/* Cluster, Job and check_deliveries (see cluster.hpp).
 *
 * Processes are started through test::Process (tests/support), whose destructor SIGKILLs and
 * reaps; the Topology's teardown then kills whatever is still inside the namespaces (the
 * workers' children, which die with their supervisor anyway) before deleting them.
 */
#include "cluster/cluster.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

namespace dpool::cluster {

namespace {

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

/* `root` and every process under it, parents before children. */
std::vector<pid_t> process_tree(pid_t root) {
  std::vector<pid_t> out{root};
  for (std::size_t i = 0; i < out.size(); ++i) {
    for (pid_t child : test::children_of(out[i])) out.push_back(child);
  }
  return out;
}

}  // namespace

std::size_t Job::delivered() const { return count_of(process_.log(), "result "); }

bool Job::finish(std::chrono::milliseconds limit) {
  const auto status = process_.wait(limit);
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
}

std::vector<Delivery> Job::deliveries() const {
  std::vector<Delivery> out;
  std::istringstream in(process_.log());
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("result ", 0) != 0) continue;
    std::istringstream fields(line.substr(7));
    Delivery d;
    std::string square, netns;
    fields >> d.index >> d.status >> square >> netns >> d.pid >> d.attempts;
    if (d.status == "ok") {
      d.square = std::stoll(square);
      d.netns = std::stoull(netns);
    }
    out.push_back(d);
  }
  return out;
}

Cluster::Cluster(int workers) {
  std::vector<std::string> hosts{"broker"};
  for (int i = 1; i <= workers; ++i) worker_names_.push_back("w" + std::to_string(i));
  hosts.insert(hosts.end(), worker_names_.begin(), worker_names_.end());
  hosts.emplace_back("client");
  topology_ = std::make_unique<Topology>(hosts);
}

std::vector<std::string> Cluster::in(const std::string& host, std::vector<std::string> argv) const {
  auto out = topology_->exec_prefix(host);
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::string Cluster::endpoint() const { return "tcp://" + topology_->address("broker") + ":5555"; }

void Cluster::start_broker(std::vector<std::string> extra) {
  broker_.reset();  // its destructor removes its log; a restarted broker's log starts afresh
  std::vector<std::string> argv{DPOOL_BROKER_BIN,
                                "--bind",
                                endpoint(),
                                "--insecure",
                                "--heartbeat-interval",
                                std::to_string(kHeartbeat.count())};
  argv.insert(argv.end(), extra.begin(), extra.end());
  broker_.emplace(in("broker", argv));
  const bool up = test::wait_for(
      [&] { return broker_->log().find("listening on") != std::string::npos; }, 10s * kSlowdown);
  if (!up) throw std::runtime_error("the broker did not start:\n" + broker_->log());
}

void Cluster::kill_broker() {
  if (broker_) broker_->kill();
}

void Cluster::start_workers() {
  workers_.clear();
  for (const auto& w : worker_names_) {
    workers_.emplace_back(
        in(w, {DPOOL_WORKER_BIN, "--broker", endpoint(), "--processes", "2", "--plugin",
               DPOOL_CLUSTER_PLUGIN, "--heartbeat-interval", std::to_string(kHeartbeat.count())}));
  }
}

std::size_t Cluster::worker_index(const std::string& worker) const {
  const auto it = std::find(worker_names_.begin(), worker_names_.end(), worker);
  if (it == worker_names_.end()) throw std::invalid_argument("no worker host " + worker);
  return static_cast<std::size_t>(it - worker_names_.begin());
}

pid_t Cluster::worker_pid(const std::string& worker) const {
  return workers_.at(worker_index(worker)).pid();
}

std::size_t Cluster::broker_log_count(const std::string& needle) const {
  return count_of(broker_log(), needle);
}

bool Cluster::wait_registered(const std::string& worker, int times,
                              std::chrono::milliseconds limit) {
  // Both "registered" and "registered again" (a host the broker still knew) count.
  const auto needle = "pid " + std::to_string(worker_pid(worker)) + " registered";
  return test::wait_for([&] { return broker_log_count(needle) >= static_cast<std::size_t>(times); },
                        limit);
}

bool Cluster::wait_lost(const std::string& worker, std::chrono::milliseconds limit) {
  const auto needle = "pid " + std::to_string(worker_pid(worker)) + " lost (no heartbeat";
  return test::wait_for([&] { return broker_log_count(needle) >= 1; }, limit);
}

Job Cluster::start_job(long tasks, int millis) {
  return Job(
      test::Process(in("client", {DPOOL_CLUSTER_CLIENT_BIN, endpoint(), std::to_string(tasks),
                                  std::to_string(millis), std::to_string(kHeartbeat.count()),
                                  std::to_string(60 * kSlowdown)})));
}

CommandResult Cluster::cli(std::vector<std::string> args, std::chrono::milliseconds limit) {
  args.insert(args.begin(), DPOOL_CLI_BIN);
  args.insert(args.end(), {"--broker", endpoint()});
  return run_command(in("client", args), limit);
}

nlohmann::json Cluster::status() {
  const auto r = cli({"status", "--json"});
  if (r.exit_code != 0) throw std::runtime_error("dpool status failed: " + r.output);
  // The one JSON line; anything else would be a log line on stderr.
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.front() == '{') return nlohmann::json::parse(line);
  }
  throw std::runtime_error("dpool status printed no JSON: " + r.output);
}

void Cluster::freeze(const std::string& worker) {
  // Top down, so that no parent sees a child stop and acts on it while it still runs.
  for (pid_t p : process_tree(worker_pid(worker))) ::kill(p, SIGSTOP);
}

void Cluster::thaw(const std::string& worker) {
  auto tree = process_tree(worker_pid(worker));
  std::reverse(tree.begin(), tree.end());
  for (pid_t p : tree) ::kill(p, SIGCONT);
}

std::string Cluster::host_of(unsigned long long netns) const {
  for (const auto& w : worker_names_) {
    if (topology_->netns_inode(w) == netns) return w;
  }
  return "";
}

std::string Cluster::logs() const {
  std::string out = "---- broker log\n" + broker_log();
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    out += "---- " + worker_names_[i] + " log\n" + workers_[i].log();
  }
  return out;
}

std::map<std::string, std::size_t> check_deliveries(const Cluster& cluster,
                                                    const std::vector<Delivery>& got, long tasks) {
  std::vector<int> seen(static_cast<std::size_t>(tasks), 0);
  std::map<std::string, std::size_t> by_host;
  std::size_t bad = 0;
  for (const auto& d : got) {
    if (d.index < 0 || d.index >= tasks) {
      ADD_FAILURE() << "a result for an index never submitted: " << d.index;
      continue;
    }
    ++seen[static_cast<std::size_t>(d.index)];
    const auto host = cluster.host_of(d.netns);
    const bool good = d.status == "ok" && d.square == d.index * d.index && !host.empty();
    if (!good && ++bad <= 5) {
      ADD_FAILURE() << "task " << d.index << ": status " << d.status << ", square " << d.square
                    << ", netns " << d.netns << " (" << (host.empty() ? "not a worker host" : host)
                    << ")";
    }
    if (good) ++by_host[host];
  }
  EXPECT_EQ(bad, 0u) << "results wrong or from outside the cluster";
  std::size_t missing = 0, doubled = 0;
  for (int n : seen) {
    missing += n == 0;
    doubled += n > 1;
  }
  EXPECT_EQ(missing, 0u) << "tasks whose result never reached the caller";
  EXPECT_EQ(doubled, 0u) << "tasks whose result reached the caller more than once";
  return by_host;
}

}  // namespace dpool::cluster
