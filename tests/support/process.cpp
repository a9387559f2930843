/* Process, BrokerProcess and wait_for for the end-to-end tests (see process.hpp). */
#include "support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace dpool::test {

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

pid_t spawn(const std::vector<std::string>& argv, int in, int out, int err,
            const std::vector<std::string>& env) {
  std::vector<std::string> args = argv, vars = env;  // posix_spawn wants char*, not const
  std::vector<char*> cargv, cenv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& v : vars) cenv.push_back(v.data());
  cenv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in, 0);
  posix_spawn_file_actions_adddup2(&actions, out, 1);
  posix_spawn_file_actions_adddup2(&actions, err, 2);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
  return pid;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> out;
  for (char** e = environ; *e; ++e) out.emplace_back(*e);
  return out;
}

Process::Process(std::vector<std::string> argv) {
  char templ[] = "/tmp/dpool-test-log-XXXXXX";
  const int fd = ::mkostemp(templ, O_CLOEXEC);  // only the child it is meant for inherits it
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  log_path_ = templ;
  const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  try {
    pid_ = spawn(argv, in, fd, fd, current_environment());
  } catch (...) {
    ::close(in);
    ::close(fd);
    throw;
  }
  ::close(in);
  ::close(fd);
}

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      log_path_(std::exchange(o.log_path_, {})),
      status_(o.status_) {}

/* Replacing a process (a broker started again) ends the old one and its log file, as the
 * destructor would: otherwise every restart in a test leaves a file behind. */
Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    kill();
    remove_log();
    pid_ = std::exchange(o.pid_, -1);
    log_path_ = std::exchange(o.log_path_, {});
    status_ = o.status_;
  }
  return *this;
}

Process::~Process() {
  kill();
  remove_log();
}

void Process::remove_log() noexcept {
  if (!log_path_.empty() && !std::getenv("DPOOL_KEEP_TEST_LOGS")) ::unlink(log_path_.c_str());
  log_path_.clear();
}

bool Process::running() {
  if (pid_ < 0 || status_) return false;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = st;
    return false;
  }
  return true;
}

void Process::signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  if (pid_ < 0) return std::nullopt;
  wait_for([this] { return !running(); }, timeout);
  return status_;
}

void Process::kill() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    status_ = st;
  }
}

std::string Process::log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

BrokerProcess BrokerProcess::start(std::string endpoint, std::chrono::milliseconds hb,
                                   std::vector<std::string> extra) {
  std::vector<std::string> argv{DPOOL_BROKER_BIN, "--bind", endpoint, "--heartbeat-interval",
                                std::to_string(hb.count())};
  argv.insert(argv.end(), extra.begin(), extra.end());
  BrokerProcess b{Process(argv), {}};
  const std::regex listening("listening on (tcp://[0-9.]+:[0-9]+)");
  const bool up = wait_for([&] {
    std::smatch m;
    const auto text = b.process.log();
    if (!std::regex_search(text, m, listening)) return false;
    b.endpoint = m[1];
    return true;
  }, 10s);
  if (!up) throw std::runtime_error("broker did not start: " + b.process.log());
  return b;
}

Process start_worker(const std::string& endpoint, int processes, std::chrono::milliseconds hb,
                     std::vector<std::string> extra) {
  std::vector<std::string> argv{DPOOL_TEST_WORKER_BIN, "--broker", endpoint, "--processes",
                                std::to_string(processes), "--heartbeat-interval",
                                std::to_string(hb.count())};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return Process(argv);
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z') out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return out;
}

std::vector<pid_t> task_processes(pid_t worker_host) {
  std::vector<pid_t> out;
  for (pid_t zygote : children_of(worker_host)) {
    for (pid_t p : children_of(zygote)) out.push_back(p);
  }
  return out;
}

TempDir::TempDir() {
  char templ[] = "/tmp/dpool-test-XXXXXX";
  if (!::mkdtemp(templ)) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

std::string TempDir::write(const std::string& name, const std::string& text) const {
  const auto file = path_ + "/" + name;
  std::ofstream(file, std::ios::binary) << text;
  return file;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace dpool::test
