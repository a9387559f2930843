/* The dpool command line, run as a real process: stdin from a file, stdout and stderr captured
 * to files, the exit status and the time it took checked. `dpool map` runs on its embedded
 * local cluster; `dpool call` on a broker and test worker started here. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/process.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using dpool::test::TempDir;

struct Run {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string out, err;
  double seconds = 0;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/* Runs dpool with `args`, `input` on stdin, DPOOL_BROKER and DPOOL_CONFIG removed from the
 * environment (then `env` added), killed after `limit`. */
Run run_dpool(std::vector<std::string> args, const std::string& input = "",
              std::map<std::string, std::string> env = {}, std::chrono::seconds limit = 60s) {
  TempDir dir;
  const auto in_path = dir.path() + "/stdin", out_path = dir.path() + "/stdout", err_path = dir.path() + "/stderr";
  { std::ofstream(in_path, std::ios::binary) << input; }
  std::vector<std::string> argv{DPOOL_CLI_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (kv.rfind("DPOOL_BROKER=", 0) == 0 || kv.rfind("DPOOL_CONFIG=", 0) == 0) continue;
    envs.push_back(kv);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> cenv;
  for (auto& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  Run r;
  if (rc != 0) {
    ADD_FAILURE() << "cannot start " << argv[0];
    return r;
  }
  int status = 0;
  const bool ended = dpool::test::wait_for([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, limit);
  if (!ended) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ADD_FAILURE() << "dpool did not end within " << limit.count() << " s";
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (ended && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
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

/* A person-caused error: exactly one line on stderr. */
void expect_one_line(const std::string& err) {
  EXPECT_FALSE(err.empty());
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

// --- dpool map ----------------------------------------------------------------------------

TEST(CliMap, PrintsOutputsInInputOrder) {
  const auto r = run_dpool({"map", "--local", "2", "--", "echo", "{}"}, "a\nb\nc\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "a\nb\nc\n");
  EXPECT_EQ(r.err, "");
}

TEST(CliMap, UnorderedGivesTheSameSet) {
  std::string input;
  for (int i = 0; i < 50; ++i) input += std::to_string(i) + "\n";
  const auto r = run_dpool({"map", "--local", "2", "--unordered", "--", "echo", "{}"}, input);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto got = lines_of(r.out), want = lines_of(input);
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
}

TEST(CliMap, WithoutPlaceholderTheLineIsTheLastArgument) {
  const auto r = run_dpool({"map", "--local", "1", "--", "echo", "x"}, "1\n2\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "x 1\nx 2\n");
}

TEST(CliMap, PlaceholderInsideAnArgument) {
  const auto r = run_dpool({"map", "--local", "1", "--", "echo", "<{}>", "{}{}"}, "q\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<q> qq\n");
}

TEST(CliMap, EmptyStdinIsSuccessWithNoOutput) {
  const auto r = run_dpool({"map", "--local", "2", "--", "echo", "{}"}, "");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
}

TEST(CliMap, FailingItemsGiveExitOneAndASummary) {
  const auto r = run_dpool({"map", "--local", "2", "--", "sh", "-c", "echo out$0; echo oops$0 >&2; exit $0", "{}"},
                           "0\n1\n0\n2\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "out0\nout1\nout0\nout2\n");  // every item's stdout, failed or not
  EXPECT_NE(r.err.find("1: oops1\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2: oops2\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dpool: 2 of 4 items failed\n"), std::string::npos) << r.err;
}

TEST(CliMap, MissingCommandFailsEveryItemWith127) {
  const auto r = run_dpool({"map", "--local", "2", "--", "dpool-no-such-command-xyz", "{}"}, "a\nb\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("a: dpool-no-such-command-xyz: command not found"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dpool: 2 of 2 items failed"), std::string::npos) << r.err;

  const auto j = run_dpool({"map", "--local", "1", "--json", "--", "dpool-no-such-command-xyz"}, "a\n");
  EXPECT_EQ(j.exit_code, 1);
  const auto line = nlohmann::json::parse(j.out);
  EXPECT_EQ(line["exit_code"], 127);
}

TEST(CliMap, JsonLinesParse) {
  const auto r = run_dpool({"map", "--local", "2", "--json", "--", "sh", "-c", "echo out $0; echo err >&2; exit $0", "{}"},
                           "0\n3\n");
  EXPECT_EQ(r.exit_code, 1);
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto j = nlohmann::json::parse(lines[i]);
    for (const char* key : {"item", "exit_code", "stdout", "stderr", "host", "seconds"}) {
      EXPECT_TRUE(j.contains(key)) << key << " missing in " << lines[i];
    }
    EXPECT_EQ(j["item"], i == 0 ? "0" : "3");
    EXPECT_EQ(j["exit_code"], i == 0 ? 0 : 3);
    EXPECT_EQ(j["stdout"], i == 0 ? "out 0\n" : "out 3\n");
    EXPECT_EQ(j["stderr"], "err\n");
    EXPECT_FALSE(j["host"].get<std::string>().empty());
    EXPECT_GE(j["seconds"].get<double>(), 0.0);
  }
}

TEST(CliMap, RetriesRunAFailedItemAgain) {
  TempDir dir;
  const auto counter = dir.path() + "/runs";
  const auto r = run_dpool({"map", "--local", "1", "--retries", "2", "--", "sh", "-c", "echo x >> \"$0\"; exit 1", counter},
                           "only\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines_of(slurp(counter)).size(), 3u);  // the first run and two retries
  EXPECT_NE(r.err.find("dpool: 1 of 1 items failed"), std::string::npos) << r.err;
}

TEST(CliMap, TimeoutFailsASlowItemOnly) {
  // The limit counts from submission (client side, until workers enforce time limits), so it
  // leaves the quick items room for the embedded cluster's start on a loaded machine.
  // One process per item: with fewer, a quick item can be prefetched behind the slow one on
  // the same process and time out there (the limit counts from submission).
  const auto r = run_dpool({"map", "--local", "3", "--timeout", "4", "--", "sh", "-c", "sleep $0; echo done $0", "{}"},
                           "0\n30\n0\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "done 0\ndone 0\n");
  EXPECT_NE(r.err.find("30: dpool: timed out after 4 s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dpool: 1 of 3 items failed"), std::string::npos) << r.err;
  EXPECT_LT(r.seconds, 15.0);
}

TEST(CliMap, VeryLongLine) {
  const std::string line(100000, 'x');
  const auto r = run_dpool({"map", "--local", "1", "--", "sh", "-c", "printf %s \"$0\" | wc -c", "{}"}, line + "\n");
  EXPECT_EQ(r.exit_code, 0) << r.err.substr(0, 500);
  EXPECT_EQ(std::stol(r.out), 100000);
}

TEST(CliMap, ManyItemsThroughASmallWindowStayInOrder) {
  std::string input;
  for (int i = 0; i < 3000; ++i) input += std::to_string(i) + "\n";
  const auto r = run_dpool({"map", "--local", "2", "--window", "50", "--", "echo"}, input);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, input);
}

TEST(CliMap, EtcConfSizesMatchLocalWcC) {
  std::string input;
  std::uintmax_t want = 0;
  for (const auto& e : std::filesystem::directory_iterator("/etc")) {
    if (e.path().extension() != ".conf" || !e.is_regular_file()) continue;
    if (::access(e.path().c_str(), R_OK) != 0) continue;
    input += e.path().string() + "\n";
    want += std::filesystem::file_size(e.path());
  }
  ASSERT_FALSE(input.empty()) << "no readable /etc/*.conf";
  const auto r = run_dpool({"map", "--local", "2", "--", "wc", "-c", "{}"}, input);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::uintmax_t got = 0;
  const auto lines = lines_of(r.out);
  EXPECT_EQ(lines.size(), lines_of(input).size());
  for (const auto& l : lines) got += std::stoull(l);
  EXPECT_EQ(got, want);
}

TEST(CliMap, UnreachableBrokerIsExitTwoWithinTheConnectTimeout) {
  const auto r = run_dpool({"map", "--broker", "tcp://127.0.0.1:1", "--", "echo"}, "a\n", {}, 30s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot reach the broker at tcp://127.0.0.1:1"), std::string::npos) << r.err;
  expect_one_line(r.err);
  EXPECT_LT(r.seconds, 10.0);
}

TEST(CliMap, BadFlagsAreOneLineAndExitTwo) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"map", "--local", "2", "--broker", "tcp://127.0.0.1:5555", "--", "echo"},
           {"map", "--local", "0", "--", "echo"},
           {"map", "--retries", "x", "--", "echo"},
           {"map"},
           {"frobnicate"},
           {}}) {
    const auto r = run_dpool(args, "a\n");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    expect_one_line(r.err);
  }
  TempDir dir;
  const auto config = dir.path() + "/bad.yaml";
  { std::ofstream(config) << "client:\n  broker: [unclosed\n"; }
  const auto r = run_dpool({"map", "--", "echo"}, "a\n", {{"DPOOL_CONFIG", config}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(config), std::string::npos) << r.err;
  expect_one_line(r.err);
}

// --- dpool call ---------------------------------------------------------------------------

class CliCall : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    broker_ = new dpool::test::BrokerProcess(dpool::test::BrokerProcess::start());
    worker_ = new dpool::test::Process(dpool::test::start_worker(broker_->endpoint, 2));
  }
  static void TearDownTestSuite() {
    delete worker_;
    delete broker_;
  }
  static inline dpool::test::BrokerProcess* broker_ = nullptr;
  static inline dpool::test::Process* worker_ = nullptr;
};

TEST_F(CliCall, PrintsTheResultAsJson) {
  auto r = run_dpool({"call", "--broker", broker_->endpoint, "square", "7"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "49\n");
  r = run_dpool({"call", "--broker", broker_->endpoint, "add", "-2", "30"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "28\n");
  r = run_dpool({"call", "--broker", broker_->endpoint, "echo", R"({"a":[1,2.5,null,true,"x"]})"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(R"({"a":[1,2.5,null,true,"x"]})"));
}

TEST_F(CliCall, BrokerFromTheEnvironment) {
  const auto r = run_dpool({"call", "square", "3"}, "", {{"DPOOL_BROKER", broker_->endpoint}});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "9\n");
}

TEST_F(CliCall, RemoteFailureIsOneLineAndExitOne) {
  const auto r = run_dpool({"call", "--broker", broker_->endpoint, "fail", R"("boom")"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("dpool: std::out_of_range: boom (fail on ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(" pid "), std::string::npos) << r.err;
  expect_one_line(r.err);
}

TEST_F(CliCall, ArgumentThatIsNotJson) {
  const auto r = run_dpool({"call", "--broker", broker_->endpoint, "square", "seven"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("dpool: argument 2 is not JSON: ", 0), 0u) << r.err;
  expect_one_line(r.err);
}

TEST_F(CliCall, TimeoutBoundsTheWait) {
  const auto r = run_dpool({"call", "--broker", broker_->endpoint, "--timeout", "1", "no_such_function"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("did not finish within 1 s"), std::string::npos) << r.err;
  expect_one_line(r.err);
  EXPECT_LT(r.seconds, 5.0);
}

TEST(CliCallUnreachable, ExitsTwoWithinAFewSeconds) {
  auto r = run_dpool({"call", "--broker", "tcp://127.0.0.1:1", "square", "7"}, "", {}, 30s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot reach the broker at tcp://127.0.0.1:1"), std::string::npos) << r.err;
  expect_one_line(r.err);
  EXPECT_LT(r.seconds, 10.0);
  r = run_dpool({"call", "--broker", "tcp://127.0.0.1:1", "--timeout", "1", "square", "7"}, "", {}, 30s);
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line(r.err);
  EXPECT_LT(r.seconds, 4.0);
}

}  // namespace
