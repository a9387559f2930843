/* The dpool subcommands that talk to a standing broker, run as real processes against a
 * broker and test worker started here: the exec built-in's own forms through `dpool call`,
 * `dpool call`, detached jobs (submit, wait, result, cancel), `dpool status`, `dpool keygen`. */
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/process.hpp"

namespace {

using namespace std::chrono_literals;
using namespace dpool::test;

/* A broker and a worker host of the test worker program (`Processes` processes, exec
 * allowed), shared by the tests of a suite. */
template <int Processes>
class WithCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    broker_ = new BrokerProcess(BrokerProcess::start());
    worker_ = new Process(start_worker(broker_->endpoint, Processes, 200ms, {"--allow-exec"}));
  }
  static void TearDownTestSuite() {
    delete worker_;
    delete broker_;
  }
  static inline BrokerProcess* broker_ = nullptr;
  static inline Process* worker_ = nullptr;
};

// --- the exec built-in --------------------------------------------------------------------

class CliExec : public WithCluster<1> {
 protected:
  /* exec's result, called with these JSON arguments. */
  static nlohmann::json exec(std::vector<std::string> json_args, int want_exit = 0) {
    std::vector<std::string> args{"call", "--broker", broker_->endpoint, "exec"};
    args.insert(args.end(), json_args.begin(), json_args.end());
    const auto r = run_dpool(args);
    EXPECT_EQ(r.exit_code, want_exit) << r.err;
    return want_exit == 0 ? nlohmann::json::parse(r.out) : nlohmann::json(r.err);
  }
};

TEST_F(CliExec, ThePlainFormIsUnchanged) {
  const auto j = exec({R"("sh")", R"("-c")", R"("echo hi; echo ho >&2; exit 3")"});
  EXPECT_EQ(j["exit_code"], 3);
  EXPECT_EQ(j["signal"], 0);
  EXPECT_EQ(j["stdout"], "hi\n");
  EXPECT_EQ(j["stderr"], "ho\n");
  EXPECT_GE(j["seconds"].get<double>(), 0.0);
  EXPECT_FALSE(j.contains("timed_out"));
}

TEST_F(CliExec, ATimeoutStopsTheCommandButNotTheTaskProcess) {
  const auto slow = exec({R"({"timeout": 1})", R"("sh")", R"("-c")", R"("echo $PPID; sleep 60")"});
  EXPECT_EQ(slow["timed_out"], true);
  EXPECT_EQ(slow["signal"], SIGTERM);
  const auto quick = exec({R"({"timeout": 30})", R"("sh")", R"("-c")", R"("echo $PPID")"});
  EXPECT_FALSE(quick.contains("timed_out"));
  EXPECT_EQ(quick["exit_code"], 0);
  // The worker has one process: the same one ran both commands.
  EXPECT_EQ(slow["stdout"], quick["stdout"]);
}

TEST_F(CliExec, BadOptionsAreRefused) {
  EXPECT_NE(
      exec({R"({"bogus": 1})", R"("true")"}, 1).get<std::string>().find("unknown option 'bogus'"),
      std::string::npos);
  EXPECT_NE(
      exec({R"({"timeout": -1})", R"("true")"}, 1).get<std::string>().find("the timeout must be"),
      std::string::npos);
  EXPECT_NE(exec({R"({"timeout": 1})"}, 1).get<std::string>().find("needs a command"),
            std::string::npos);
}

// --- dpool call ---------------------------------------------------------------------------

using CliCall = WithCluster<2>;

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

TEST_F(CliCall, RetriesAndDeadlinesFromTheFlags) {
  auto r = run_dpool({"call", "--broker", broker_->endpoint, "--retries", "2", "--retry-delay",
                      "10ms", "fail", R"("boom")"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("after 3 attempts"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("attempt 1 on "), std::string::npos)
      << "each failed attempt is listed: " << r.err;
  r = run_dpool({"call", "--broker", broker_->endpoint, "--require", "gpu=1", "--expires", "500ms",
                 "square", "3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("Expired"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("has tags gpu=1"), std::string::npos) << r.err;
  r = run_dpool({"call", "--broker", broker_->endpoint, "--priority", "9", "square", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "9\n");
  for (const auto& bad : std::vector<std::vector<std::string>>{{"--priority", "10"},
                                                               {"--require", "gpu"},
                                                               {"--expires", "soon"},
                                                               {"--retries", "-1"}}) {
    std::vector<std::string> args{"call", "--broker", broker_->endpoint};
    args.insert(args.end(), bad.begin(), bad.end());
    args.insert(args.end(), {"square", "3"});
    r = run_dpool(args);
    EXPECT_EQ(r.exit_code, 2) << bad[0];
    EXPECT_NE(r.err.find(bad[0]), std::string::npos) << r.err;
    expect_one_line(r.err);
  }
}

TEST_F(CliCall, ArgumentThatIsNotJson) {
  const auto r = run_dpool({"call", "--broker", broker_->endpoint, "square", "seven"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("dpool: argument 2 ('seven') is not JSON: ", 0), 0u) << r.err;
  expect_one_line(r.err);
}

TEST_F(CliCall, ArraysAndNegativeNumbersAreArgumentsAsWritten) {
  // A JSON array is one argument, not CLI11's list syntax for several.
  auto r = run_dpool({"call", "--broker", broker_->endpoint, "echo", "[1,2]", "[[3]]", "-4", "[]"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse("[[1,2],[[3]],-4,[]]"));
  r = run_dpool({"call", "--broker", broker_->endpoint, "echo", "--", "-5", "[-1]"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse("[-5,[-1]]"));
  r = run_dpool({"call", "--broker", broker_->endpoint, "--timout", "3", "echo", "7"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.rfind("dpool: unknown option --timout", 0), 0u) << r.err;
  expect_one_line(r.err);
  r = run_dpool({"call", "echo", "[1]", "2", "--broker", broker_->endpoint});
  EXPECT_EQ(r.exit_code, 0) << "options after the arguments: " << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse("[[1],2]"));
}

TEST_F(CliCall, EveryWordAfterTheMarkIsAnArgument) {
  // After the last positional, CLI11 alone would hand the words after "--" to dpool itself.
  auto r = run_dpool({"call", "--broker", broker_->endpoint, "echo", "1", "--", "2", "[3]"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse("[1,2,[3]]"));
  r = run_dpool({"call", "--broker", broker_->endpoint, "--", "echo", "-1", "status"});
  EXPECT_EQ(r.exit_code, 2) << "status is an argument here, and not JSON";
  EXPECT_EQ(r.err.rfind("dpool: argument 3 ('status') is not JSON: ", 0), 0u) << r.err;
  r = run_dpool({"call", "--broker", broker_->endpoint, "--", "echo", "-1", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse("[-1,2]"));
  r = run_dpool({"call", "echo", "1", "--", "--broker", broker_->endpoint});
  EXPECT_EQ(r.exit_code, 2) << "--broker after the mark is an argument";
  EXPECT_EQ(r.err.rfind("dpool: argument 3 ('--broker') is not JSON: ", 0), 0u) << r.err;
  for (const auto& words : std::vector<std::vector<std::string>>{{"call"}, {"call", "--"}}) {
    r = run_dpool(words);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.err, "dpool: call needs a FUNCTION (see dpool call --help)\n");
  }
}

TEST_F(CliCall, AnArgumentNestedDeeperThanAWorkerTakesIsRefusedBeforeSending) {
  const auto nested = [](std::size_t depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  auto r = run_dpool({"call", "--broker", broker_->endpoint, "echo", nested(15)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse(nested(15)));
  // Deep enough to overflow a recursive conversion's stack, and just one level too deep.
  for (std::size_t depth : {16u, 60000u}) {
    r = run_dpool({"call", "--broker", broker_->endpoint, "echo", nested(depth)});
    EXPECT_EQ(r.exit_code, 2) << depth;
    EXPECT_EQ(r.err.rfind("dpool: argument 2 ('[[[[", 0), 0u) << r.err.substr(0, 300);
    EXPECT_NE(r.err.find("') nests deeper than 15 levels"), std::string::npos)
        << r.err.substr(0, 300);
    expect_one_line(r.err);
  }
}

TEST_F(CliCall, TimeoutBoundsTheWait) {
  const auto r =
      run_dpool({"call", "--broker", broker_->endpoint, "--timeout", "1", "sleep", "30"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("did not finish within 1 s"), std::string::npos) << r.err;
  expect_one_line(r.err);
}

TEST_F(CliCall, AFunctionNoWorkerOffersIsAClearErrorNotAWait) {
  const auto r = run_dpool({"call", "--broker", broker_->endpoint, "no_such_function", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("offers 'no_such_function'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("square"), std::string::npos)
      << "names what the workers do offer: " << r.err;
  expect_one_line(r.err);
}

TEST(CliCallUnreachable, ExitsTwoWithinAFewSeconds) {
  auto r = run_dpool({"call", "--broker", "tcp://127.0.0.1:1", "square", "7"}, "", {}, 30s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot reach the broker at tcp://127.0.0.1:1"), std::string::npos) << r.err;
  expect_one_line(r.err);
  EXPECT_LT(r.seconds, 10.0);
  r = run_dpool({"call", "--broker", "tcp://127.0.0.1:1", "--timeout", "1", "square", "7"}, "", {},
                30s);
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line(r.err);
  EXPECT_LT(r.seconds, 4.0);
}

// ---- Detached jobs, status, keygen ------------------------------------------------------

class CliJobs : public WithCluster<2> {
 protected:
  static dpool::test::Run dpool(std::vector<std::string> args, const std::string& input = "") {
    return run_dpool(std::move(args), input, {{"DPOOL_BROKER", broker_->endpoint}});
  }
  static std::string submit(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), "submit");
    auto r = dpool(std::move(args), input);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(r.out.empty());
    return r.out.substr(0, r.out.find('\n'));
  }
};

TEST_F(CliJobs, AJobOutlivesItsSubmitterAndPrintsInInputOrder) {
  // The submitter has exited by the time the slow first item ends.
  const auto job =
      submit({"--", "sh", "-c", "sleep $0; echo done-$0", "{}", ":::", "1.5", "0.1", "0.5", "0"});
  ASSERT_EQ(job.rfind("j-", 0), 0u) << job;
  auto w = dpool({"wait", job});
  EXPECT_EQ(w.exit_code, 0) << w.err;
  auto r = dpool({"result", job});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "done-1.5\ndone-0.1\ndone-0.5\ndone-0\n");
  // Results stay until the TTL: a second reader sees them too, then --forget drops them.
  r = dpool({"result", "--forget", job});
  EXPECT_EQ(r.out, "done-1.5\ndone-0.1\ndone-0.5\ndone-0\n");
  r = dpool({"result", job});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no job " + job), std::string::npos) << r.err;
}

TEST_F(CliJobs, FunctionJobsFromAFileOfJsonArguments) {
  const auto job = submit({"--function", "square", "--id", "squares-cli", "--chunksize", "3"},
                          "[1]\n2\n\n[3]\n[4]\n");
  EXPECT_EQ(job, "squares-cli");
  auto r = dpool({"result", job});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n4\n9\n16\n");
  r = dpool({"result", "--json", job});
  std::istringstream lines(r.out);
  std::string line;
  std::getline(lines, line);
  const auto first = nlohmann::json::parse(line);
  EXPECT_EQ(first["item"], 1);
  EXPECT_EQ(first["value"], 1);
  EXPECT_EQ(first["ok"], true);
}

TEST_F(CliJobs, FailuresAreNamedAndGiveExitOne) {
  const auto job = submit({"--function", "fail"}, "[\"broken\"]\n");
  auto w = dpool({"wait", job});
  EXPECT_EQ(w.exit_code, 1);
  EXPECT_NE(w.err.find("1 failed"), std::string::npos) << w.err;
  auto r = dpool({"result", job});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("item 1: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("broken"), std::string::npos) << r.err;
  const auto commands = submit({"--", "sh", "-c", "exit $0", ":::", "0", "3"});
  r = dpool({"result", commands});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("1 of 2 items failed"), std::string::npos) << r.err;
}

TEST_F(CliJobs, CancelStopsQueuedAndRunningCommands) {
  const auto job = submit({"--", "sleep", "60", ":::", "1", "2", "3", "4", "5", "6"});
  auto c = dpool({"cancel", job});
  EXPECT_EQ(c.exit_code, 0) << c.err;
  auto w = dpool({"wait", "--timeout", "30", job});
  EXPECT_EQ(w.exit_code, 1);
  EXPECT_NE(w.err.find("6 cancelled"), std::string::npos) << w.err;
}

TEST_F(CliJobs, BadInputIsOneLineAndNothingIsLeftRunning) {
  auto r = dpool({"submit", "--function", "square"}, "[1]\nnot json\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("stdin:2: not JSON"), std::string::npos) << r.err;
  expect_one_line(r.err);
  // A line nested deeper than a worker unpacks, deep enough to overflow a recursive parser.
  r = dpool({"submit", "--function", "echo"},
            "[1]\n" + std::string(200000, '[') + std::string(200000, ']') + "\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("stdin:2: nests deeper than 16 levels"), std::string::npos)
      << r.err.substr(0, 300);
  expect_one_line(r.err);
  r = dpool({"submit", "--function", "square", "--", "echo"});
  EXPECT_EQ(r.exit_code, 2) << "a function and a command at once";
  r = dpool({"submit", "--function", "no_such_function"}, "[1]\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("offers 'no_such_function'"), std::string::npos) << r.err;
  r = dpool({"wait", "no-such-job"});
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line(r.err);
  r = dpool({"submit", "--id", "has space", "--function", "square"}, "[1]\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("InvalidJobId"), std::string::npos) << r.err;
}

TEST_F(CliJobs, StatusShowsWorkersQueuesAndJobsAsTextAndJson) {
  const auto job = submit({"--function", "square", "--id", "for-status"}, "[2]\n");
  EXPECT_EQ(dpool({"wait", job}).exit_code, 0);
  auto r = dpool({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("workers: 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("for-status"), std::string::npos) << r.out;
  r = dpool({"status", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["workers"].size(), 1u);
  EXPECT_EQ(j["workers"][0]["processes"], 2);
  EXPECT_TRUE(j["uptime_ms"].is_number());
  bool found = false;
  for (const auto& job_json : j["jobs"]) found = found || job_json["id"] == "for-status";
  EXPECT_TRUE(found) << r.out;
}

TEST_F(CliJobs, StatusSaysWhyTasksNeedingTagsWait) {
  const auto job =
      submit({"--require", "zone=eu", "--id", "needs-eu", "--", "true", ":::", "a", "b"});
  auto r = dpool({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("zone=eu"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("waiting: no connected worker offering 'exec' has tags zone=eu"),
            std::string::npos)
      << r.out;
  r = dpool({"status", "--json"});
  const auto j = nlohmann::json::parse(r.out);
  bool found = false;
  for (const auto& f : j["functions"]) {
    if (f["requires"].contains("zone")) {
      found = true;
      EXPECT_EQ(f["queued"], 2);
      EXPECT_EQ(f["workers"], 0);
    }
  }
  EXPECT_TRUE(found) << r.out;
  EXPECT_EQ(dpool({"cancel", job}).exit_code, 0);
}

TEST(CliMapOnACluster, WithoutAWorkerThatAllowsExecIsAClearError) {
  auto broker = BrokerProcess::start();
  auto worker = start_worker(broker.endpoint, 1);  // no --allow-exec
  const auto r = run_dpool({"map", "--broker", broker.endpoint, "--", "echo"}, "a\n");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--allow-exec"), std::string::npos) << r.err;
  expect_one_line(r.err);
}

TEST_F(CliJobs, MapRunsOnTheClusterToo) {
  const auto r = dpool({"map", "--", "echo"}, "a\nb\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "a\nb\n");
}

TEST(CliStatusUnreachable, ExitsTwoWithinAFewSeconds) {
  auto r = run_dpool({"status", "--broker", "tcp://127.0.0.1:1"}, "", {}, 30s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot reach the broker"), std::string::npos) << r.err;
}

TEST(CliKeygen, WritesAPairWithAPrivateSecretAndNeverOverwrites) {
  TempDir dir;
  const auto prefix = dir.path() + "/broker";
  auto r = run_dpool({"keygen", "--out", prefix});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(slurp(prefix + ".pub").size(), 41u);  // 40 Z85 characters and a newline
  EXPECT_EQ(slurp(prefix + ".key").size(), 41u);
  EXPECT_EQ(std::filesystem::status(prefix + ".key").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  r = run_dpool({"keygen", "--out", prefix});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("never overwritten"), std::string::npos) << r.err;
  r = run_dpool({"keygen"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("public_key: "), std::string::npos);
}

}  // namespace
