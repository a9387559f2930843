/* `dpool map` run as a real process (support/cli.hpp): stdin from a file or a pipe held open,
 * stdout and stderr captured (stderr to a pseudo-terminal for the progress bar), exit status
 * checked, on the embedded local cluster: order, failures, `:::` input, per-item timeouts
 * counted on the worker, chunks, and the progress bar. */
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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
  const auto r = run_dpool(
      {"map", "--local", "2", "--", "sh", "-c", "echo out$0; echo oops$0 >&2; exit $0", "{}"},
      "0\n1\n0\n2\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "out0\nout1\nout0\nout2\n");  // every item's stdout, failed or not
  EXPECT_NE(r.err.find("1: oops1\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2: oops2\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dpool: 2 of 4 items failed\n"), std::string::npos) << r.err;
}

TEST(CliMap, MissingCommandFailsEveryItemWith127) {
  const auto r =
      run_dpool({"map", "--local", "2", "--", "dpool-no-such-command-xyz", "{}"}, "a\nb\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("a: dpool-no-such-command-xyz: command not found"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("dpool: 2 of 2 items failed"), std::string::npos) << r.err;

  const auto j =
      run_dpool({"map", "--local", "1", "--json", "--", "dpool-no-such-command-xyz"}, "a\n");
  EXPECT_EQ(j.exit_code, 1);
  const auto line = nlohmann::json::parse(j.out);
  EXPECT_EQ(line["exit_code"], 127);
}

TEST(CliMap, ACommandThatCannotStartSaysWhy) {
  // Linux refuses an argument over 128 KiB; a file without the execute bit is not a command.
  const std::string line(200000, 'x');
  auto r = run_dpool({"map", "--local", "1", "--", "echo"}, line + "\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("echo: cannot run the command: its arguments are too long"),
            std::string::npos)
      << r.err.substr(0, 500);
  r = run_dpool({"map", "--local", "1", "--", DPOOL_SOURCE_DIR "/README.md"}, "a\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("README.md: cannot run the command: permission denied"), std::string::npos)
      << r.err;
}

// A NUL cannot be part of a command's argument: the item fails and says so, rather than running
// the command on the bytes before the NUL. Items are named on stderr with control bytes escaped.
TEST(CliMap, AnItemHoldingANulByteFailsAndSaysSo) {
  const auto r = run_dpool({"map", "--local", "1", "--", "echo"}, std::string("a\0b\nc\n", 6));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "c\n");
  EXPECT_NE(r.err.find("a\\x00b: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("exec: argument 1 holds a NUL byte"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\0'), std::string::npos) << r.err;
  const auto clear = run_dpool({"map", "--local", "1", "--", "false"}, "\x1b[2J\n");
  EXPECT_EQ(clear.exit_code, 1);
  EXPECT_NE(clear.err.find("\\x1b[2J: "), std::string::npos) << clear.err;
  EXPECT_EQ(clear.err.find('\x1b'), std::string::npos) << clear.err;
}

TEST(CliMap, JsonLinesParse) {
  const auto r = run_dpool({"map", "--local", "2", "--json", "--", "sh", "-c",
                            "echo out $0; echo err >&2; exit $0", "{}"},
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

// A command whose worker process dies never reported its run: its seconds are null, as its exit
// code is, not the time the item spent queued and retried.
TEST(CliMap, AnItemWhoseProcessIsLostHasNoRunTime) {
  const auto r =
      run_dpool({"map", "--local", "1", "--json", "--", "sh", "-c", "kill -9 $PPID", "{}"}, "x\n");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out << r.err;
  const auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["item"], "x");
  EXPECT_TRUE(j["seconds"].is_null()) << lines[0];
  EXPECT_TRUE(j["exit_code"].is_null()) << lines[0];
  EXPECT_NE(j["error"].get<std::string>().find("WorkerLost"), std::string::npos) << lines[0];
}

TEST(CliMap, RetriesRunAFailedItemAgain) {
  TempDir dir;
  const auto counter = dir.path() + "/runs";
  const auto r = run_dpool({"map", "--local", "1", "--retries", "2", "--", "sh", "-c",
                            "echo x >> \"$0\"; exit 1", counter},
                           "only\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines_of(slurp(counter)).size(), 3u);  // the first run and two retries
  EXPECT_NE(r.err.find("dpool: 1 of 1 items failed"), std::string::npos) << r.err;
}

TEST(CliMap, TimeoutFailsASlowItemOnly) {
  // One process: the quick item after the slow one waits for it, and its limit, counted from
  // its own start, is not spent by the wait.
  const auto r = run_dpool(
      {"map", "--local", "1", "--timeout", "4", "--", "sh", "-c", "sleep $0; echo done $0", "{}"},
      "0\n30\n0\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "done 0\ndone 0\n");
  EXPECT_NE(r.err.find("30: dpool: timed out after 4 s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dpool: 1 of 3 items failed (1 timed out)"), std::string::npos) << r.err;
  EXPECT_LT(r.seconds, 25.0);  // not the 30 s of the slow item
}

TEST(CliMap, VeryLongLine) {
  const std::string line(100000, 'x');
  const auto r = run_dpool(
      {"map", "--local", "1", "--", "sh", "-c", "printf %s \"$0\" | wc -c", "{}"}, line + "\n");
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
           {"map", "--chunksize", "0", "--", "echo"},
           {"map", "--timeout", "0", "--", "echo"},
           {"map", "--progress", "--no-progress", "--", "echo"},
           {"map", "--local", "1", "--", "echo", "{2}", ":::", "a"},
           {"map", "--local", "1", "--", ":::", "a"},
           {"frobnicate"},
           {}}) {
    const auto r = run_dpool(args, "a\n");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    expect_one_line(r.err);
  }
  // Number flags say what is wrong in words, as their YAML keys do.
  for (const auto& [args, says] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"map", "--retries", "x", "--", "echo"}, "--retries: expected a whole number, got 'x'"},
           {{"map", "--timeout", "-1", "--", "echo"}, "--timeout: must be 0.001 s or more, got -1"},
           {{"call", "--timeout", "nan", "square", "3"},
            "--timeout: expected a number of seconds like 30 or 2.5, got 'nan'"},
           {{"call", "--timeout", "1e300", "square", "3"},
            "--timeout: must be at most 360000000 s, got 1e300"},
           {{"call", "--priority", "12", "square", "3"},
            "--priority: must be at most 9, got 12"}}) {
    const auto r = run_dpool(args, "a\n");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  }
  TempDir dir;
  const auto config = dir.path() + "/bad.yaml";
  { std::ofstream(config) << "client:\n  broker: [unclosed\n"; }
  const auto r = run_dpool({"map", "--", "echo"}, "a\n", {{"DPOOL_CONFIG", config}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(config), std::string::npos) << r.err;
  expect_one_line(r.err);
}

// --- dpool map: ::: input ------------------------------------------------------------------

TEST(CliMapInput, ValuesAfterTripleColonAreTheItems) {
  const auto r =
      run_dpool({"map", "--local", "2", "--", "echo", "<{}>", ":::", "c", "b", "a"}, "ignored\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<c>\n<b>\n<a>\n");
  EXPECT_EQ(r.err, "");
}

TEST(CliMapInput, TripleColonUnordered) {
  std::vector<std::string> args{"map", "--local", "2", "--unordered", "--", "echo", ":::"};
  std::vector<std::string> want;
  for (int i = 0; i < 40; ++i) {
    args.push_back(std::to_string(i));
    want.push_back(std::to_string(i));
  }
  const auto r = run_dpool(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto got = lines_of(r.out);
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
}

TEST(CliMapInput, SeveralGroupsGiveEveryCombination) {
  // As GNU parallel: the last group turns fastest; {} is the values joined by a space; with no
  // replacement string the values are the last arguments.
  auto r = run_dpool(
      {"map", "--local", "2", "--", "echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "a-1\na-2\na-3\nb-1\nb-2\nb-3\n");
  r = run_dpool({"map", "--local", "2", "--", "echo", "[{}]", ":::", "a", "b", ":::", "1"});
  EXPECT_EQ(r.out, "[a 1]\n[b 1]\n");
  r = run_dpool({"map", "--local", "2", "--", "echo", "x", ":::", "a", ":::", "1", "2"});
  EXPECT_EQ(r.out, "x a 1\nx a 2\n");
  r = run_dpool({"map", "--local", "1", "--json", "--", "true", ":::", "a", ":::", "1"});
  EXPECT_EQ(nlohmann::json::parse(r.out)["item"], "a 1");
}

TEST(CliMapInput, ReplacementStringsOfGnuParallel) {
  const auto r = run_dpool({"map", "--local", "1", "--", "echo", "{/}", "{//}", "{.}", "{/.}",
                            "{#}", "{1/}", "{x}", ":::", "dir/sub/file.tar.gz", "plain"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "file.tar.gz dir/sub dir/sub/file.tar file.tar 1 file.tar.gz {x}\n"
                   "plain . plain plain 2 plain {x}\n");
}

TEST(CliMapInput, AnEmptyGroupIsNoItems) {
  const auto r = run_dpool({"map", "--local", "1", "--", "echo", ":::"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CliMapInput, StartsRunningBeforeStdinEnds) {
  for (const char* chunksize : {"1", "4"}) {
    SCOPED_TRACE(std::string("--chunksize ") + chunksize);
    TempDir dir;
    const auto out_path = dir.path() + "/stdout";
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int err =
        ::open((dir.path() + "/stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int in[2];
    ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
    const pid_t pid = spawn_dpool(
        {"map", "--local", "1", "--chunksize", chunksize, "--", "echo", "{}"}, in[0], out, err);
    for (int fd : {in[0], out, err}) ::close(fd);
    ASSERT_GT(pid, 0);
    ASSERT_EQ(::write(in[1], "first\n", 6), 6);
    // stdin stays open: the first item's output must come all the same.
    EXPECT_TRUE(dpool::test::wait_for([&] { return slurp(out_path) == "first\n"; }, 60s))
        << slurp(out_path);
    ASSERT_EQ(::write(in[1], "second\n", 7), 7);
    ::close(in[1]);
    EXPECT_EQ(wait_dpool(pid, 60s), 0);
    EXPECT_EQ(slurp(out_path), "first\nsecond\n");
  }
}

// --- dpool map: time limits ---------------------------------------------------------------

TEST(CliMapTimeout, CountsFromTheItemsStartNotItsSubmission) {
  // One process runs the six items one after the other: the last starts some 2.5 s after its
  // submission, past the limit, and still succeeds.
  const auto r = run_dpool({"map", "--local", "1", "--timeout", "2", "--", "sleep", ":::", "0.5",
                            "0.5", "0.5", "0.5", "0.5", "0.5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

/* Whether `pid` is gone (or a zombie nobody has reaped yet). */
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

TEST(CliMapTimeout, KillsTheCommandsWholeProcessGroup) {
  TempDir dir;
  const auto pids = dir.path() + "/pids";
  // The first item starts a shell with a sleep in the background and times out; the second
  // runs after it on the same process and lists which of the two still live.
  const std::string slow = "echo $$ >> " + pids + "; sleep 60 & echo $! >> " + pids + "; wait";
  const std::string check = "for p in $(cat " + pids +
                            "); do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); "
                            "[ -n \"$s\" ] && [ \"$s\" != Z ] && echo alive $p; done; echo checked";
  const auto r =
      run_dpool({"map", "--local", "1", "--timeout", "1", "--json", "--", "sh", "-c", "{}"},
                slow + "\n" + check + "\n");
  EXPECT_EQ(r.exit_code, 1);
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  const auto first = nlohmann::json::parse(lines[0]), second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(first["timed_out"], true);
  EXPECT_EQ(first["error"], "timed out after 1 s");
  EXPECT_EQ(second["stdout"], "checked\n");  // nothing of the first item left alive
  EXPECT_EQ(second["exit_code"], 0);
  EXPECT_FALSE(second.contains("timed_out"));
  const auto started = lines_of(slurp(pids));
  ASSERT_EQ(started.size(), 2u);
  for (const auto& pid : started) EXPECT_TRUE(process_gone(std::stoi(pid))) << pid;
}

TEST(CliMapTimeout, ATimedOutItemIsRetried) {
  TempDir dir;
  const auto mark = dir.path() + "/mark";
  // Slow on its first run only.
  const auto r =
      run_dpool({"map", "--local", "1", "--timeout", "1", "--retries", "1", "--", "sh", "-c",
                 "if [ -e \"$0\" ]; then echo quick; else touch \"$0\"; sleep 60; fi", mark},
                "x\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "quick\n");
}

// --- dpool map: chunks --------------------------------------------------------------------

TEST(CliMapChunks, FailingItemsInTheMiddleFailAlone) {
  std::string input;
  for (int i = 1; i <= 10; ++i) input += std::to_string(i) + "\n";
  const std::vector<std::string> command{"--", "sh", "-c", "echo o$0; [ $0 -ne 4 ] && [ $0 -ne 8 ]",
                                         "{}"};
  auto args = std::vector<std::string>{"map", "--local", "2", "--chunksize", "3"};
  args.insert(args.end(), command.begin(), command.end());
  auto r = run_dpool(args, input);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "o1\no2\no3\no4\no5\no6\no7\no8\no9\no10\n");
  EXPECT_NE(r.err.find("4: dpool: exit code 1\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("8: dpool: exit code 1\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dpool: 2 of 10 items failed"), std::string::npos) << r.err;

  args = {"map", "--local", "2", "--chunksize", "4", "--json"};
  args.insert(args.end(), command.begin(), command.end());
  r = run_dpool(args, input);
  EXPECT_EQ(r.exit_code, 1);
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 10u) << r.out;
  for (int i = 1; i <= 10; ++i) {
    const auto j = nlohmann::json::parse(lines[static_cast<std::size_t>(i - 1)]);
    EXPECT_EQ(j["item"], std::to_string(i));
    EXPECT_EQ(j["exit_code"], i == 4 || i == 8 ? 1 : 0);
    // Appended, not "o" + std::to_string(i): GCC 12 warns falsely (-Wrestrict) on that.
    std::string out = "o";
    out += std::to_string(i) + "\n";
    EXPECT_EQ(j["stdout"], out);
  }
}

TEST(CliMapChunks, OnlyTheFailedItemsRunAgain) {
  TempDir dir;
  const auto runs = dir.path() + "/runs", mark = dir.path() + "/mark";
  // Item 5 fails on its first run only; every run is logged.
  const std::string script = "echo $1 >> " + runs + "; if [ $1 = 5 ] && [ ! -e " + mark +
                             " ]; then touch " + mark + "; exit 1; fi; echo $1";
  const auto r = run_dpool(
      {"map", "--local", "2", "--chunksize", "4", "--retries", "2", "--", "sh", "-c", script, "sh"},
      "1\n2\n3\n4\n5\n6\n7\n8\n9\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n2\n3\n4\n5\n6\n7\n8\n9\n");
  auto logged = lines_of(slurp(runs));
  std::sort(logged.begin(), logged.end());
  EXPECT_EQ(logged, (std::vector<std::string>{"1", "2", "3", "4", "5", "5", "6", "7", "8", "9"}));
}

TEST(CliMapChunks, TimeoutsArePerItem) {
  const auto r = run_dpool({"map", "--local", "1", "--chunksize", "3", "--timeout", "2", "--", "sh",
                            "-c", "sleep $0; echo done $0", "{}"},
                           "0.5\n30\n0.5\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "done 0.5\ndone 0.5\n");
  EXPECT_NE(r.err.find("30: dpool: timed out after 2 s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dpool: 1 of 3 items failed (1 timed out)"), std::string::npos) << r.err;
}

// --- dpool map: the progress bar ----------------------------------------------------------

/* `err` without the progress bar's drawings ("\r...\033[K") and erasures ("\r\033[K"). */
std::string without_bar(const std::string& err) {
  std::string out;
  for (std::size_t i = 0; i < err.size();) {
    const auto end = err[i] == '\r' ? err.find("\033[K", i) : std::string::npos;
    if (end == std::string::npos) {
      out += err[i++];
    } else {
      i = end + 3;
    }
  }
  return out;
}

TEST(CliMapProgress, NoneWhenStderrIsNotATerminal) {
  const auto r = run_dpool({"map", "--local", "1", "--", "sh", "-c", "exit $0", ":::", "0", "3"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "3: dpool: exit code 3\ndpool: 1 of 2 items failed\n");
}

TEST(CliMapProgress, ForcedOnItIsDrawnAndClearedAroundOtherLines) {
  const auto r = run_dpool(
      {"map", "--local", "1", "--progress", "--", "sh", "-c", "exit $0", ":::", "0", "3", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("0/3"), std::string::npos) << r.err;  // drawn at the start, the total known
  EXPECT_EQ(without_bar(r.err), "3: dpool: exit code 3\ndpool: 1 of 3 items failed\n") << r.err;
}

TEST(CliMapProgress, ShownOnATerminalUnlessTurnedOff) {
  for (const bool turned_off : {false, true}) {
    SCOPED_TRACE(turned_off ? "--no-progress" : "default");
    int master = -1, slave = -1;
    if (::openpty(&master, &slave, nullptr, nullptr, nullptr) != 0)
      GTEST_SKIP() << "no pseudo-terminal here";
    for (int fd : {master, slave}) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    TempDir dir;
    const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const int out =
        ::open((dir.path() + "/stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    std::vector<std::string> args{"map", "--local", "1", "--", "true", ":::", "a", "b", "c"};
    if (turned_off) args.insert(args.begin() + 1, "--no-progress");
    const pid_t pid = spawn_dpool(args, in, out, slave);
    for (int fd : {in, out, slave}) ::close(fd);
    // The terminal is read while dpool runs, so that its writes never block on a full one.
    std::string seen;
    std::atomic<bool> ended{false};
    std::thread reader([&] {
      char buf[4096];
      for (;;) {
        pollfd p{master, POLLIN, 0};
        const int ready = ::poll(&p, 1, 200);
        if (ready == 0 && ended) return;
        if (ready <= 0) continue;
        const auto n = ::read(master, buf, sizeof buf);
        if (n <= 0) return;  // EIO: every writer has closed it
        seen.append(buf, static_cast<std::size_t>(n));
      }
    });
    EXPECT_EQ(pid > 0 ? wait_dpool(pid, 60s) : -1, 0);
    ended = true;
    reader.join();
    ::close(master);
    if (turned_off) EXPECT_EQ(seen, "");
    else EXPECT_NE(seen.find("0/3"), std::string::npos) << seen;
  }
}

}  // namespace
