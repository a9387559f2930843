/* Running the dpool command line in tests (see cli.hpp). */
#include "support/cli.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "support/process.hpp"

namespace dpool::test {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

/* This process's environment without DPOOL_BROKER and DPOOL_CONFIG, then `env` added. */
std::vector<std::string> dpool_environment(const Env& env) {
  std::vector<std::string> vars;
  for (auto& kv : current_environment()) {
    if (kv.rfind("DPOOL_BROKER=", 0) == 0 || kv.rfind("DPOOL_CONFIG=", 0) == 0) continue;
    vars.push_back(std::move(kv));
  }
  for (const auto& [k, v] : env) vars.push_back(k + "=" + v);
  return vars;
}

}  // namespace

pid_t spawn_dpool(const std::vector<std::string>& args, int in, int out, int err, const Env& env) {
  std::vector<std::string> argv{DPOOL_CLI_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  try {
    return spawn(argv, in, out, err, dpool_environment(env));
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
    return -1;
  }
}

int wait_dpool(pid_t pid, std::chrono::seconds limit) {
  int status = 0;
  const bool ended = wait_for([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, limit);
  if (!ended) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ADD_FAILURE() << "dpool did not end within " << limit.count() << " s";
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Run run_dpool(const std::vector<std::string>& args, const std::string& input, const Env& env,
              std::chrono::seconds limit) {
  TempDir dir;
  const auto in_path = dir.path() + "/stdin", out_path = dir.path() + "/stdout",
             err_path = dir.path() + "/stderr";
  { std::ofstream(in_path, std::ios::binary) << input; }
  const int in = ::open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
  const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = spawn_dpool(args, in, out, err, env);
  for (int fd : {in, out, err}) ::close(fd);
  Run r;
  if (pid < 0) return r;
  r.exit_code = wait_dpool(pid, limit);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

void expect_one_line(const std::string& err) {
  EXPECT_FALSE(err.empty());
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

}  // namespace dpool::test
