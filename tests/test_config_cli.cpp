/* The configuration as the three binaries see it: dpool-broker, dpool-worker and dpool run as
 * real processes with --print-config, which prints the effective configuration and exits
 * without starting anything (so nothing here listens or connects).
 *
 * Each run goes through env(1) so that the test controls DPOOL_BROKER and DPOOL_CONFIG exactly
 * (removed, then set as the test says) without touching its own environment. Covers: each
 * layer of flag > environment > file > default; the printed YAML read back by the binary and
 * by the loader giving the same configuration; and every kind of bad file ending in one line
 * that names the file (and line), with exit code 2.
 */
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpool/config.hpp"
#include "support/process.hpp"

namespace {

using namespace std::chrono_literals;
using dpool::test::Process;
using dpool::test::TempDir;
using Env = std::map<std::string, std::string>;

struct Run {
  int exit_code = -1;  // -1: killed by a signal or did not end
  std::string output;  // stdout and stderr together
};

/* Runs `binary args...` with only the DPOOL_* variables of `env`; stopped if it hangs. */
Run run(const std::string& binary, const std::vector<std::string>& args, const Env& env = {}) {
  std::vector<std::string> argv{"/usr/bin/env", "-u", "DPOOL_BROKER", "-u", "DPOOL_CONFIG"};
  for (const auto& [name, value] : env) argv.push_back(name + "=" + value);
  argv.push_back(binary);
  argv.insert(argv.end(), args.begin(), args.end());
  Process process(argv);
  Run r;
  if (const auto status = process.wait(30s); status && WIFEXITED(*status)) {
    r.exit_code = WEXITSTATUS(*status);
  } else if (!status) {
    ADD_FAILURE() << binary << " did not end";
    process.kill();
  }
  r.output = process.log();
  return r;
}

Run broker(const std::vector<std::string>& args, const Env& env = {}) {
  return run(DPOOL_BROKER_BIN, args, env);
}
Run worker(const std::vector<std::string>& args, const Env& env = {}) {
  return run(DPOOL_WORKER_BIN, args, env);
}
Run client(const std::vector<std::string>& args, const Env& env = {}) {
  return run(DPOOL_CLI_BIN, args, env);
}

/* A successful --print-config: exit 0, and `lines` among the lines printed. */
void expect_printed(const Run& r, std::initializer_list<std::string> lines) {
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::istringstream in(r.output);
  std::vector<std::string> printed;
  for (std::string line; std::getline(in, line);) printed.push_back(line);
  for (const auto& line : lines) {
    EXPECT_NE(std::find(printed.begin(), printed.end(), line), printed.end())
        << "no line '" << line << "' in:\n"
        << r.output;
  }
}

/* A person-caused error: exit 2 and one line, naming `where` and saying `what`. */
void expect_error(const Run& r, const std::string& where, const std::string& what) {
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_NE(r.output.find(where), std::string::npos)
      << "expected '" << where << "' in: " << r.output;
  EXPECT_NE(r.output.find(what), std::string::npos) << "expected '" << what << "' in: " << r.output;
}

// ---- Precedence -----------------------------------------------------------------------------

TEST(ConfigCli, BrokerTakesFlagOverFileOverDefault) {
  TempDir dir;
  const auto file =
      dir.write("broker.yaml", "bind: tcp://127.0.0.1:7001\nmax_attempts: 5\njob_ttl: 2h\n");
  expect_printed(broker({"--print-config"}),
                 {"bind: tcp://127.0.0.1:5555", "max_attempts: 3", "job_ttl: 24h"});
  expect_printed(
      broker({"--print-config"}, {{"DPOOL_CONFIG", file}}),
      {"bind: tcp://127.0.0.1:7001", "max_attempts: 5", "job_ttl: 2h", "client_timeout: 1m"});
  expect_printed(
      broker({"--print-config", "--bind", "tcp://127.0.0.1:7002", "--job-ttl", "30m", "--insecure",
              "--heartbeat-interval", "250", "--client-timeout", "90s", "--max-attempts", "7",
              "--heartbeat-liveness", "4", "--log-level", "debug"},
             {{"DPOOL_CONFIG", file}}),
      {"bind: tcp://127.0.0.1:7002", "job_ttl: 30m", "insecure: true", "heartbeat_interval: 250ms",
       "client_timeout: 90s", "max_attempts: 7", "heartbeat_liveness: 4", "log_level: debug"});
}

TEST(ConfigCli, ConfigFlagBeatsDpoolConfig) {
  TempDir dir;
  const auto from_env =
      dir.write("env.yaml", "broker:\n  max_attempts: 5\nworker:\n  processes: 5\n");
  const auto from_flag = dir.write(
      "flag.yaml", "broker:\n  max_attempts: 6\nworker:\n  processes: 6\nclient:\n  window: 6\n");
  const Env env{{"DPOOL_CONFIG", from_env}};
  expect_printed(broker({"--print-config", "--config", from_flag}, env), {"max_attempts: 6"});
  expect_printed(worker({"--print-config", "--config", from_flag}, env), {"processes: 6"});
  expect_printed(client({"--config", from_flag, "--print-config"}, env), {"window: 6"});
}

TEST(ConfigCli, WorkerTakesFlagOverEnvironmentOverFileOverDefault) {
  TempDir dir;
  const auto file = dir.write(
      "worker.yaml", "broker: tcp://127.0.0.1:7001\nprocesses: 3\ntags: {zone: eu, gpu: none}\n");
  expect_printed(worker({"--print-config"}), {"broker: tcp://127.0.0.1:5555", "processes: 0"});
  Env env{{"DPOOL_CONFIG", file}};
  expect_printed(worker({"--print-config"}, env),
                 {"broker: tcp://127.0.0.1:7001", "processes: 3", "  zone: eu"});
  env["DPOOL_BROKER"] = "tcp://127.0.0.1:7002";
  expect_printed(worker({"--print-config"}, env), {"broker: tcp://127.0.0.1:7002", "processes: 3"});
  expect_printed(
      worker({"--print-config", "--broker", "tcp://127.0.0.1:7003", "--processes", "6", "--tag",
              "gpu=a100", "--prefetch", "0", "--allow-exec", "--max-tasks-per-child", "9",
              "--heartbeat-interval", "2s", "--heartbeat-liveness", "5", "--log-level", "warn"},
             env),
      {"broker: tcp://127.0.0.1:7003", "processes: 6", "  zone: eu", "  gpu: a100", "prefetch: 0",
       "allow_exec: true", "max_tasks_per_child: 9", "heartbeat_interval: 2s",
       "heartbeat_liveness: 5", "log_level: warn"});
}

TEST(ConfigCli, ClientTakesEnvironmentOverFile) {
  TempDir dir;
  const auto file =
      dir.write("client.yaml", "broker: tcp://127.0.0.1:7001\nwindow: 64\nconnect_timeout: 2s\n");
  const auto none = client({"--print-config"});
  expect_printed(none, {"window: 10000", "connect_timeout: 5s"});
  EXPECT_NE(none.output.find("# broker: none named"), std::string::npos) << none.output;
  EXPECT_NE(none.output.find("local cluster"), std::string::npos) << none.output;
  Env env{{"DPOOL_CONFIG", file}};
  expect_printed(client({"--print-config"}, env),
                 {"broker: tcp://127.0.0.1:7001", "window: 64", "connect_timeout: 2s"});
  env["DPOOL_BROKER"] = "tcp://127.0.0.1:7002";
  expect_printed(client({"--print-config"}, env), {"broker: tcp://127.0.0.1:7002", "window: 64"});
  expect_printed(client({"--print-config"}, {{"DPOOL_BROKER", "tcp://127.0.0.1:7003"}}),
                 {"broker: tcp://127.0.0.1:7003"});
}

TEST(ConfigCli, DpoolWithoutASubcommandIsAUsageError) {
  const auto r = client({});
  expect_error(r, "dpool: ", "subcommand");
}

// ---- Round trip -----------------------------------------------------------------------------

/* What `print` prints, written to a file and given back with --config, prints the same; the
 * loader reads it too, over `start`. */
template <class Config>
void expect_round_trip(Run (*print)(const std::vector<std::string>&, const Env&),
                       std::vector<std::string> args, const Env& env = {}, Config start = {}) {
  TempDir dir;
  args.push_back("--print-config");
  const auto first = print(args, env);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto file = dir.write("printed.yaml", first.output);
  const auto second = print({"--config", file, "--print-config"}, {});
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(second.output, first.output);
  ASSERT_NO_THROW(dpool::load_config_file(file, start));
  EXPECT_EQ(dpool::to_yaml(start), first.output);
}

TEST(ConfigCli, PrintedBrokerConfigReadsBack) {
  expect_round_trip<dpool::BrokerConfig>(broker, {});
  expect_round_trip<dpool::BrokerConfig>(
      broker, {"--bind", "ipc:///tmp/dpool-test.sock", "--job-ttl", "36h", "--client-timeout",
               "1500ms", "--insecure", "--log-level", "off"});
}

TEST(ConfigCli, PrintedWorkerConfigReadsBack) {
  expect_round_trip<dpool::WorkerConfig>(worker, {});
  expect_round_trip<dpool::WorkerConfig>(
      worker,
      {"--processes", "2", "--tag", "zone=eu", "--tag", "note=a: b #c", "--allow-exec",
       "--heartbeat-interval", "1500"},
      {{"DPOOL_BROKER", "tcp://127.0.0.1:7002"}});
}

TEST(ConfigCli, PrintedClientConfigReadsBack) {
  TempDir dir;
  const auto file = dir.write("client.yaml", "client:\n  window: 7\n  broker_timeout: 2m\n");
  dpool::ClientConfig none;
  none.broker.clear();  // as resolve_client_config() starts: to tell a broker named in the file
  expect_round_trip<dpool::ClientConfig>(client, {}, {}, none);  // a comment, read back as none
  expect_round_trip<dpool::ClientConfig>(
      client, {}, {{"DPOOL_CONFIG", file}, {"DPOOL_BROKER", "tcp://127.0.0.1:7004"}});
}

// ---- Errors ---------------------------------------------------------------------------------

/* Each kind of bad file, with the line it is reported at and what the message must say. */
struct BadFile {
  const char* text;
  int line;
  const char* what;
};

const BadFile kBadFiles[] = {
    {"log_level: info\nwindow: [1\n", 3, "invalid YAML"},
    {"log_level: info\n\nprocesess: 3\nbind: x\n", 3, "unknown key 'procesess'"},
    {"log_level: 7\n", 1, "log_level: must be trace, debug, info, warn, error or off, got '7'"},
    {"heartbeat_liveness: [3]\n", 1, "heartbeat_liveness: expected a whole number"},
    {"log_level: info\nheartbeat_liveness: 0\n", 2, "heartbeat_liveness: must be 1 or more, got 0"},
    {"heartbeat_interval: 10\n", 1, "heartbeat_interval: a duration needs a unit"},
};

void expect_bad_files_reported(Run (*print)(const std::vector<std::string>&, const Env&),
                               const char* program) {
  TempDir dir;
  for (const auto& bad : kBadFiles) {
    SCOPED_TRACE(bad.what);
    const auto file = dir.write("bad.yaml", bad.text);
    const auto where = std::string(program) + ": " + file + ":" + std::to_string(bad.line) + ": ";
    expect_error(print({"--print-config"}, {{"DPOOL_CONFIG", file}}), where, bad.what);
  }
  const auto missing = dir.path() + "/missing.yaml";
  expect_error(print({"--print-config"}, {{"DPOOL_CONFIG", missing}}),
               missing + ": cannot read the file", "No such file or directory");
}

TEST(ConfigCli, BrokerReportsABadFileInOneLine) {
  expect_bad_files_reported(broker, "dpool-broker");
  TempDir dir;
  const auto file = dir.write("b.yaml", "job_ttl: 10ms\n");
  expect_error(broker({"--config", file, "--print-config"}),
               file + ":1: job_ttl: ", "must be 1s or more");
}

TEST(ConfigCli, WorkerReportsABadFileInOneLine) {
  expect_bad_files_reported(worker, "dpool-worker");
  TempDir dir;
  const auto file = dir.write("w.yaml", "processes: 1\nprocesess: 3\n");
  expect_error(worker({"--config", file}),
               file + ":2: ", "unknown key 'procesess' (did you mean 'processes'?)");
}

TEST(ConfigCli, DpoolReportsABadFileInOneLine) {
  expect_bad_files_reported(client, "dpool");
  TempDir dir;
  const auto file = dir.write("c.yaml", "client:\n  window: many\n");
  expect_error(client({"call", "echo", "1"}, {{"DPOOL_CONFIG", file}}), file + ":2: window: ",
               "expected a whole number, got 'many'");
}

TEST(ConfigCli, BadFlagValuesAreOneLineErrors) {
  expect_error(broker({"--job-ttl", "24", "--print-config"}), "dpool-broker: --job-ttl", "unit");
  expect_error(broker({"--heartbeat-interval", "5ms", "--print-config"}),
               "dpool-broker: --heartbeat-interval", "10ms or more");
  expect_error(worker({"--processes", "5000", "--print-config"}), "dpool-worker: --processes",
               "must be at most 4096, got 5000");
  expect_error(worker({"--processes", "two", "--print-config"}), "dpool-worker: --processes",
               "expected a whole number, got 'two'");
  expect_error(broker({"--max-attempts", "0", "--print-config"}), "dpool-broker: --max-attempts",
               "must be 1 or more, got 0");
  expect_error(worker({"--log-level", "loud", "--print-config"}), "dpool-worker: --log-level",
               "loud");
  expect_error(worker({"--tag", "novalue", "--print-config"}),
               "dpool-worker: ", "--tag wants KEY=VALUE");
}

}  // namespace
