/* The YAML configuration loader (config.hpp), on files written to a private temp directory.
 *
 * Covers: flat files for each role; sectioned files where each role reads only its own
 * section; duration syntax (ms, s, m, h); every error being a dpool::Error(kConfig) whose
 * message names the file, the 1-based line and the key (unknown key or section with a
 * suggestion, wrong type, duration without a unit, out-of-range values, invalid YAML, a
 * missing or unreadable file); an empty file changing nothing. Writing and the examples are
 * in test_config_print.cpp; sizes and the number flags in test_config_values.cpp.
 */
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpool/config.hpp"
#include "dpool/error.hpp"
#include "support/config_files.hpp"
#include "support/process.hpp"

namespace {

using namespace std::chrono_literals;
using namespace dpool::test;

// ---- Flat files -----------------------------------------------------------------------------

TEST(Config, FlatBrokerFileSetsEveryKey) {
  TempDir dir;
  const auto file = dir.write("broker.yaml",
                              "bind: tcp://0.0.0.0:6000\n"
                              "heartbeat_interval: 250ms\n"
                              "heartbeat_liveness: 5\n"
                              "max_attempts: 7\n"
                              "client_timeout: 5m\n"
                              "log_level: debug\n"
                              "insecure: true\n"
                              "job_ttl: 90m\n");
  dpool::BrokerConfig c;
  dpool::load_config_file(file, c);
  EXPECT_TRUE(c.insecure);
  EXPECT_EQ(c.job_ttl, 90min);
  EXPECT_EQ(c.bind, "tcp://0.0.0.0:6000");
  EXPECT_EQ(c.heartbeat.interval, 250ms);
  EXPECT_EQ(c.heartbeat.liveness, 5u);
  EXPECT_EQ(c.heartbeat.expiry(), 1250ms);
  EXPECT_EQ(c.max_attempts, 7u);
  EXPECT_EQ(c.client_timeout, 300s);
  EXPECT_EQ(c.log_level, "debug");
}

TEST(Config, FlatWorkerFileSetsEveryKeyButBroker) {
  TempDir dir;
  const auto file = dir.write("worker.yaml",
                              "processes: 4\n"
                              "prefetch: 0\n"
                              "allow_exec: true\n"
                              "max_tasks_per_child: 100\n"
                              "plugins: [/opt/a.so, /opt/b.so]\n"
                              "tags:\n"
                              "  gpu: a100\n"
                              "  zone: eu\n"
                              "heartbeat_interval: 2s\n"
                              "heartbeat_liveness: 4\n"
                              "log_level: trace\n");
  dpool::WorkerConfig c;
  dpool::load_config_file(file, c);
  EXPECT_EQ(c.broker, dpool::kDefaultBroker);
  EXPECT_EQ(c.processes, 4u);
  EXPECT_EQ(c.prefetch, 0u);
  EXPECT_TRUE(c.allow_exec);
  EXPECT_EQ(c.max_tasks_per_child, 100u);
  EXPECT_EQ(c.plugins, (std::vector<std::string>{"/opt/a.so", "/opt/b.so"}));
  EXPECT_EQ(c.tags, (std::map<std::string, std::string>{{"gpu", "a100"}, {"zone", "eu"}}));
  EXPECT_EQ(c.heartbeat.interval, 2s);
  EXPECT_EQ(c.heartbeat.liveness, 4u);
  EXPECT_EQ(c.log_level, "trace");
}

/* `broker` is both a section name and a worker's and client's own key: a flat file that sets
 * it must not be mistaken for a sectioned file (a regression once). */
TEST(Config, FlatWorkerFileMaySetItsBroker) {
  TempDir dir;
  const auto file = dir.write("worker.yaml",
                              "broker: tcp://queue.example:7000\n"
                              "processes: 3\n");
  dpool::WorkerConfig c;
  dpool::load_config_file(file, c);
  EXPECT_EQ(c.broker, "tcp://queue.example:7000");
  EXPECT_EQ(c.processes, 3u);
}

TEST(Config, FlatClientFileSetsEveryKeyButBroker) {
  TempDir dir;
  const auto file = dir.write("client.yaml",
                              "heartbeat_interval: 500ms\n"
                              "heartbeat_liveness: 2\n"
                              "connect_timeout: 2s\n"
                              "broker_timeout: 1h\n"
                              "window: 500\n"
                              "log_level: error\n");
  dpool::ClientConfig c;
  dpool::load_config_file(file, c);
  EXPECT_EQ(c.broker, dpool::kDefaultBroker);
  EXPECT_EQ(c.heartbeat.interval, 500ms);
  EXPECT_EQ(c.heartbeat.liveness, 2u);
  EXPECT_EQ(c.connect_timeout, 2s);
  EXPECT_EQ(c.broker_timeout, 1h);
  EXPECT_EQ(c.window, 500u);
  EXPECT_EQ(c.log_level, "error");
}

/* The client's twin of FlatWorkerFileMaySetItsBroker. */
TEST(Config, FlatClientFileMaySetItsBroker) {
  TempDir dir;
  const auto file = dir.write("client.yaml",
                              "broker: tcp://queue.example:7000\n"
                              "window: 64\n");
  dpool::ClientConfig c;
  dpool::load_config_file(file, c);
  EXPECT_EQ(c.broker, "tcp://queue.example:7000");
  EXPECT_EQ(c.window, 64u);
}

TEST(Config, OnlyKeysPresentChange) {
  TempDir dir;
  const auto file = dir.write("broker.yaml", "max_attempts: 9\n");
  dpool::BrokerConfig c;
  c.bind = "tcp://set-before:1";
  dpool::load_config_file(file, c);
  EXPECT_EQ(c.max_attempts, 9u);
  EXPECT_EQ(c.bind, "tcp://set-before:1");
  EXPECT_EQ(c.heartbeat.interval, 1000ms);
  EXPECT_EQ(c.log_level, "info");
}

// ---- Sectioned files ------------------------------------------------------------------------

TEST(Config, SectionedFileGivesEachRoleItsOwnSection) {
  TempDir dir;
  const auto file = dir.write("cluster.yaml",
                              "# one file for the whole cluster\n"
                              "broker:\n"
                              "  bind: tcp://*:7000\n"
                              "  max_attempts: 2\n"
                              "  log_level: warn\n"
                              "worker:\n"
                              "  broker: tcp://queue:7000\n"
                              "  processes: 8\n"
                              "  log_level: debug\n"
                              "client:\n"
                              "  broker: tcp://queue:7001\n"
                              "  window: 20\n");
  dpool::BrokerConfig b;
  dpool::WorkerConfig w;
  dpool::ClientConfig c;
  dpool::load_config_file(file, b);
  dpool::load_config_file(file, w);
  dpool::load_config_file(file, c);

  EXPECT_EQ(b.bind, "tcp://*:7000");
  EXPECT_EQ(b.max_attempts, 2u);
  EXPECT_EQ(b.log_level, "warn");
  EXPECT_EQ(w.broker, "tcp://queue:7000");
  EXPECT_EQ(w.processes, 8u);
  EXPECT_EQ(w.log_level, "debug");
  EXPECT_EQ(c.broker, "tcp://queue:7001");
  EXPECT_EQ(c.window, 20u);
  EXPECT_EQ(c.log_level, "warn") << "the client's default, untouched by other sections";
}

TEST(Config, SectionedFileWithoutARolesSectionChangesNothingForIt) {
  TempDir dir;
  const auto file = dir.write("cluster.yaml",
                              "broker:\n"
                              "  max_attempts: 5\n"
                              "client:\n");
  dpool::WorkerConfig w;
  dpool::load_config_file(file, w);
  EXPECT_EQ(w.broker, dpool::kDefaultBroker);
  EXPECT_EQ(w.processes, 0u);
  dpool::ClientConfig c;
  dpool::load_config_file(file, c);  // an empty section
  EXPECT_EQ(c.window, 10000u);
}

TEST(Config, SectionedFileDoesNotAcceptOtherRolesKeysInASection) {
  TempDir dir;
  const auto file = dir.write("cluster.yaml",
                              "broker:\n"
                              "  bind: tcp://*:7000\n"
                              "worker:\n"
                              "  processes: 2\n"
                              "  window: 20\n");
  expect_config_error<dpool::WorkerConfig>(file, 5, {"unknown key 'window'"});
  dpool::BrokerConfig b;
  EXPECT_NO_THROW(dpool::load_config_file(file, b)) << "the broker never reads worker:";
}

TEST(Config, SectionThatIsNotAMapIsAnError) {
  TempDir dir;
  const auto file = dir.write("cluster.yaml",
                              "broker:\n"
                              "  bind: tcp://*:7000\n"
                              "worker: 5\n");
  expect_config_error<dpool::WorkerConfig>(file, 3, {"worker", "expected a map"});
}

// ---- Durations ------------------------------------------------------------------------------

TEST(Config, DurationsTakeMillisecondsSecondsMinutesAndHours) {
  TempDir dir;
  dpool::ClientConfig c;
  dpool::load_config_file(dir.write("a.yaml", "connect_timeout: 500ms\n"), c);
  EXPECT_EQ(c.connect_timeout, 500ms);
  dpool::load_config_file(dir.write("b.yaml", "connect_timeout: 2s\n"), c);
  EXPECT_EQ(c.connect_timeout, 2000ms);
  dpool::load_config_file(dir.write("c.yaml", "connect_timeout: 5m\n"), c);
  EXPECT_EQ(c.connect_timeout, 300000ms);
  dpool::load_config_file(dir.write("d.yaml", "connect_timeout: 1h\n"), c);
  EXPECT_EQ(c.connect_timeout, 3600000ms);
  dpool::load_config_file(dir.write("e.yaml", "connect_timeout: 1.5s\n"), c);
  EXPECT_EQ(c.connect_timeout, 1500ms);

  dpool::BrokerConfig b;
  dpool::load_config_file(dir.write("f.yaml", "client_timeout: 1h\nheartbeat_interval: 10ms\n"), b);
  EXPECT_EQ(b.client_timeout, 3600s);
  EXPECT_EQ(b.heartbeat.interval, 10ms);
}

TEST(Config, DurationWithoutAUnitIsAnError) {
  TempDir dir;
  const auto file = dir.write("c.yaml",
                              "window: 5\n"
                              "connect_timeout: 500\n");
  expect_config_error<dpool::ClientConfig>(file, 2, {"connect_timeout", "unit", "'500'"});
}

TEST(Config, DurationWithUnknownUnitOrNoNumberIsAnError) {
  TempDir dir;
  const auto unit = dir.write("a.yaml", "connect_timeout: 5days\n");
  expect_config_error<dpool::ClientConfig>(unit, 1, {"connect_timeout", "unit"});
  const auto word = dir.write("b.yaml", "connect_timeout: soon\n");
  expect_config_error<dpool::ClientConfig>(word, 1, {"connect_timeout", "duration"});
}

TEST(Config, NegativeDurationIsAnError) {
  TempDir dir;
  const auto file = dir.write("b.yaml", "client_timeout: -2s\n");
  expect_config_error<dpool::BrokerConfig>(file, 1, {"client_timeout", "negative"});
}

TEST(Config, HeartbeatIntervalBelowTenMillisecondsIsAnError) {
  TempDir dir;
  const auto file = dir.write("w.yaml", "processes: 1\nheartbeat_interval: 0ms\n");
  expect_config_error<dpool::WorkerConfig>(
      file, 2, {"heartbeat_interval", "must be 10ms or more", "got 0s"});
  const auto slow = dir.write("s.yaml", "heartbeat_interval: 11m\n");
  expect_config_error<dpool::WorkerConfig>(slow, 1,
                                           {"heartbeat_interval", "at most 10m", "got 11m"});
}

/* std::stod accepts "inf", "nan" and huge exponents; casting those to an integer count is
 * undefined, so they must be refused (a regression once). */
TEST(Config, NonFiniteOrHugeDurationIsAnError) {
  TempDir dir;
  for (const char* text : {"infs", "nanms", "1e300h"}) {
    SCOPED_TRACE(text);
    const auto file = dir.write("c.yaml", std::string("connect_timeout: ") + text + "\n");
    expect_config_error<dpool::ClientConfig>(file, 1, {"connect_timeout"});
  }
}

// ---- Errors ---------------------------------------------------------------------------------

TEST(Config, UnknownKeyCloseToAKnownOneSuggestsIt) {
  TempDir dir;
  const auto file = dir.write("b.yaml",
                              "bind: tcp://*:1\n"
                              "\n"
                              "max_atempts: 3\n");
  expect_config_error<dpool::BrokerConfig>(
      file, 3, {"unknown key 'max_atempts' (did you mean 'max_attempts'?)"});
  const auto swapped = dir.write("w.yaml", "procesess: 3\n");
  expect_config_error<dpool::WorkerConfig>(swapped, 1,
                                           {"unknown key 'procesess' (did you mean 'processes'?)"});
  const auto cased = dir.write("c.yaml", "Window: 3\n");
  expect_config_error<dpool::ClientConfig>(cased, 1, {"(did you mean 'window'?)"});
}

TEST(Config, UnknownKeyFarFromEveryKnownOneListsThem) {
  TempDir dir;
  const auto file = dir.write("b.yaml", "bind: tcp://*:1\ncolour: blue\n");
  expect_config_error<dpool::BrokerConfig>(
      file, 2,
      {"unknown key 'colour' (known: bind, insecure, heartbeat_interval, heartbeat_liveness, "
       "max_attempts, client_timeout, job_ttl, priority_aging, result_delay, data_dir, "
       "max_tasks_per_client, max_bytes_per_client, max_jobs, max_message_size, decode_max_array, "
       "decode_max_map, decode_max_str, decode_max_depth, curve, log_level)"});
}

/* A misspelt section would otherwise be skipped by every role, and its settings silently lost. */
TEST(Config, UnknownSectionIsAnErrorForEveryRole) {
  TempDir dir;
  const auto file = dir.write("cluster.yaml",
                              "broker:\n"
                              "  bind: tcp://*:7000\n"
                              "wroker:\n"
                              "  processes: 2\n");
  expect_config_error<dpool::BrokerConfig>(file, 3,
                                           {"unknown section 'wroker' (did you mean 'worker'?)"});
  expect_config_error<dpool::WorkerConfig>(file, 3, {"unknown section 'wroker'"});
  expect_config_error<dpool::ClientConfig>(file, 3, {"unknown section 'wroker'"});
}

TEST(Config, LogLevelMustBeAKnownLevel) {
  TempDir dir;
  expect_config_error<dpool::WorkerConfig>(
      dir.write("w.yaml", "log_level: loud\n"), 1,
      {"log_level", "trace, debug, info, warn, error or off", "'loud'"});
  for (const auto& level : dpool::log_levels()) {
    dpool::ClientConfig c;
    dpool::load_config_file(dir.write("c.yaml", "log_level: " + level + "\n"), c);
    EXPECT_EQ(c.log_level, level);
  }
}

TEST(Config, JobTtlIsADurationOfAtLeastOneSecond) {
  TempDir dir;
  dpool::BrokerConfig b;
  EXPECT_EQ(b.job_ttl, 24h) << "the default";
  dpool::load_config_file(dir.write("a.yaml", "job_ttl: 90s\n"), b);
  EXPECT_EQ(b.job_ttl, 90s);
  expect_config_error<dpool::BrokerConfig>(dir.write("b.yaml", "job_ttl: 500ms\n"), 1,
                                           {"job_ttl", "must be 1s or more"});
  expect_config_error<dpool::BrokerConfig>(dir.write("c.yaml", "job_ttl: 24\n"), 1,
                                           {"job_ttl", "unit"});
}

TEST(Config, WrongTypeIsAnErrorNamingKeyAndLine) {
  TempDir dir;
  const auto file = dir.write("w.yaml",
                              "prefetch: 1\n"
                              "processes: \"many\"\n");
  expect_config_error<dpool::WorkerConfig>(file, 2, {"processes", "whole number", "'many'"});

  const auto flag = dir.write("x.yaml", "allow_exec: sometimes\n");
  expect_config_error<dpool::WorkerConfig>(flag, 1, {"allow_exec", "true or false"});

  const auto list = dir.write("p.yaml", "log_level: info\nplugins: /opt/a.so\n");
  expect_config_error<dpool::WorkerConfig>(list, 2, {"plugins", "list"});

  const auto map = dir.write("t.yaml", "tags: [a, b]\n");
  expect_config_error<dpool::WorkerConfig>(map, 1, {"tags", "map"});

  const auto nested = dir.write("n.yaml", "bind:\n  - tcp://a:1\n");
  expect_config_error<dpool::BrokerConfig>(nested, 2, {"bind", "expected an address"});
}

TEST(Config, ZeroOrNegativeWherePositiveRequiredIsAnError) {
  TempDir dir;
  expect_config_error<dpool::BrokerConfig>(dir.write("a.yaml", "max_attempts: 0\n"), 1,
                                           {"max_attempts", "1 or more"});
  expect_config_error<dpool::ClientConfig>(dir.write("b.yaml", "window: -3\n"), 1,
                                           {"window", "1 or more"});
  expect_config_error<dpool::BrokerConfig>(dir.write("c.yaml", "heartbeat_liveness: 0\n"), 1,
                                           {"heartbeat_liveness", "1 or more"});
  expect_config_error<dpool::WorkerConfig>(dir.write("d.yaml", "processes: -1\n"), 1,
                                           {"processes", "0 or more", "got -1"});
  expect_config_error<dpool::WorkerConfig>(dir.write("f.yaml", "processes: 5000\n"), 1,
                                           {"processes", "at most 4096", "got 5000"});
  // Zero is allowed where it means "automatic".
  dpool::WorkerConfig w;
  dpool::load_config_file(dir.write("e.yaml", "processes: 0\nmax_tasks_per_child: 0\n"), w);
  EXPECT_EQ(w.processes, 0u);
}

TEST(Config, NumberTooLargeIsAnError) {
  TempDir dir;
  expect_config_error<dpool::ClientConfig>(dir.write("a.yaml", "window: 99999999999\n"), 1,
                                           {"window"});
}

TEST(Config, InvalidYamlIsAnErrorWithTheLineOfTheProblem) {
  TempDir dir;
  const auto file = dir.write("bad.yaml",
                              "bind: tcp://*:1\n"
                              "max_attempts: 3\n"
                              "log_level: [debug\n"
                              "client_timeout: 5m\n");
  try {
    dpool::BrokerConfig c;
    dpool::load_config_file(file, c);
    ADD_FAILURE() << "no error thrown";
  } catch (const dpool::Error& e) {
    EXPECT_EQ(e.code(), dpool::Errc::kConfig);
    const std::string what = e.what();
    EXPECT_NE(what.find(file + ":"), std::string::npos) << what;
    EXPECT_NE(what.find("invalid YAML"), std::string::npos) << what;
  }

  const auto indent = dir.write("indent.yaml",
                                "bind: tcp://*:1\n"
                                "max_attempts: 3\n"
                                "  log_level: debug\n");
  expect_config_error<dpool::BrokerConfig>(indent, 3, {"invalid YAML"});
}

TEST(Config, TopLevelThatIsNotAMapIsAnError) {
  TempDir dir;
  expect_config_error<dpool::BrokerConfig>(dir.write("a.yaml", "- bind\n- tcp://*:1\n"), 1,
                                           {"expected a map"});
  expect_config_error<dpool::BrokerConfig>(dir.write("b.yaml", "just text\n"), 1,
                                           {"expected a map"});
}

/* A key that is not a scalar must be a dpool::Error(kConfig), not a yaml-cpp exception
 * (a regression once). */
TEST(Config, NonScalarKeyIsAConfigError) {
  TempDir dir;
  const auto file = dir.write("a.yaml", "bind: tcp://*:1\n? [a, b]\n: 1\n");
  try {
    dpool::BrokerConfig c;
    dpool::load_config_file(file, c);
    ADD_FAILURE() << "no error thrown";
  } catch (const dpool::Error& e) {
    EXPECT_EQ(e.code(), dpool::Errc::kConfig);
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than dpool::Error: " << e.what();
  }
}

TEST(Config, DirectoryIsAnUnreadableFile) {
  TempDir dir;
  try {
    dpool::BrokerConfig c;
    dpool::load_config_file(dir.path(), c);
    ADD_FAILURE() << "no error thrown";
  } catch (const dpool::Error& e) {
    EXPECT_EQ(e.code(), dpool::Errc::kConfig);
    EXPECT_NE(std::string(e.what()).find("cannot read the file: it is a directory"),
              std::string::npos)
        << e.what();
  }
}

TEST(Config, MissingFileIsAnError) {
  TempDir dir;
  const auto file = dir.path() + "/does-not-exist.yaml";
  try {
    dpool::WorkerConfig c;
    dpool::load_config_file(file, c);
    ADD_FAILURE() << "no error thrown";
  } catch (const dpool::Error& e) {
    EXPECT_EQ(e.code(), dpool::Errc::kConfig);
    const std::string what = e.what();
    EXPECT_NE(what.find(file), std::string::npos) << what;
    EXPECT_NE(what.find("cannot read"), std::string::npos) << what;
    EXPECT_NE(what.find("No such file"), std::string::npos) << what;
  }
}

TEST(Config, EmptyFileChangesNothing) {
  TempDir dir;
  for (const char* text : {"", "# only a comment\n", "---\n"}) {
    SCOPED_TRACE(text);
    const auto file = dir.write("empty.yaml", text);
    dpool::BrokerConfig b;
    dpool::WorkerConfig w;
    dpool::ClientConfig c;
    EXPECT_NO_THROW(dpool::load_config_file(file, b));
    EXPECT_NO_THROW(dpool::load_config_file(file, w));
    EXPECT_NO_THROW(dpool::load_config_file(file, c));
    EXPECT_EQ(b.bind, dpool::kDefaultBroker);
    EXPECT_EQ(b.max_attempts, 3u);
    EXPECT_EQ(w.prefetch, 2u);
    EXPECT_EQ(c.connect_timeout, 5000ms);
    EXPECT_EQ(c.log_level, "warn");
  }
}

}  // namespace
