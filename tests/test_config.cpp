/* The YAML configuration loader and writer (config.hpp), on files written to a private temp
 * directory.
 *
 * Covers: flat files for each role; sectioned files where each role reads only its own
 * section; duration syntax (ms, s, m, h) for keys and flags; every error being a
 * dpool::Error(kConfig) whose message names the file, the 1-based line and the key (unknown
 * key or section with a suggestion, wrong type, duration without a unit, out-of-range values,
 * invalid YAML, a missing or unreadable file); an empty file changing nothing; to_yaml()
 * reading back to the same configuration; the documented examples in config/ loading, holding
 * the defaults and naming exactly the keys the loader knows; and the environment helpers
 * config_file_path() and broker_from_env().
 */
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <algorithm>
#include <cctype>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "dpool/config.hpp"
#include "dpool/error.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

/* A fresh directory under the system temp dir, removed with everything in it at the end. */
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "dpool-test-config-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /* Writes `text` to `name` in this directory and returns the file's path. */
  [[nodiscard]] std::string write(const std::string& name, const std::string& text) const {
    const auto file = path_ / name;
    std::ofstream(file) << text;
    return file.string();
  }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

/* Sets or unsets an environment variable for one scope, restoring the old value after. */
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/* Runs `load`, which must throw dpool::Error(kConfig) whose message holds "<file>:<line>:" and
 * every one of `fragments`. */
void expect_config_error(const std::function<void()>& load, const std::string& file, int line,
                         std::initializer_list<std::string> fragments) {
  try {
    load();
    ADD_FAILURE() << "no error thrown";
  } catch (const dpool::Error& e) {
    EXPECT_EQ(e.code(), dpool::Errc::kConfig);
    const std::string what = e.what();
    EXPECT_NE(what.find(file + ":" + std::to_string(line) + ":"), std::string::npos)
        << "expected " << file << ":" << line << " in: " << what;
    for (const auto& f : fragments) {
      EXPECT_NE(what.find(f), std::string::npos) << "expected '" << f << "' in: " << what;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than dpool::Error: " << e.what();
  }
}

template <class Config>
void expect_config_error(const std::string& file, int line,
                         std::initializer_list<std::string> fragments) {
  expect_config_error([&] { Config c; dpool::load_config_file(file, c); }, file, line, fragments);
}

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
  expect_config_error<dpool::WorkerConfig>(file, 2, {"heartbeat_interval", "must be 10ms or more", "got 0s"});
  const auto slow = dir.write("s.yaml", "heartbeat_interval: 11m\n");
  expect_config_error<dpool::WorkerConfig>(slow, 1, {"heartbeat_interval", "at most 10m", "got 11m"});
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
  expect_config_error<dpool::BrokerConfig>(file, 3, {"unknown key 'max_atempts' (did you mean 'max_attempts'?)"});
  const auto swapped = dir.write("w.yaml", "procesess: 3\n");
  expect_config_error<dpool::WorkerConfig>(swapped, 1, {"unknown key 'procesess' (did you mean 'processes'?)"});
  const auto cased = dir.write("c.yaml", "Window: 3\n");
  expect_config_error<dpool::ClientConfig>(cased, 1, {"(did you mean 'window'?)"});
}

TEST(Config, UnknownKeyFarFromEveryKnownOneListsThem) {
  TempDir dir;
  const auto file = dir.write("b.yaml", "bind: tcp://*:1\ncolour: blue\n");
  expect_config_error<dpool::BrokerConfig>(
      file, 2, {"unknown key 'colour' (known: bind, insecure, heartbeat_interval, heartbeat_liveness, "
                "max_attempts, client_timeout, job_ttl, log_level)"});
}

/* A misspelt section would otherwise be skipped by every role, and its settings silently lost. */
TEST(Config, UnknownSectionIsAnErrorForEveryRole) {
  TempDir dir;
  const auto file = dir.write("cluster.yaml",
                              "broker:\n"
                              "  bind: tcp://*:7000\n"
                              "wroker:\n"
                              "  processes: 2\n");
  expect_config_error<dpool::BrokerConfig>(file, 3, {"unknown section 'wroker' (did you mean 'worker'?)"});
  expect_config_error<dpool::WorkerConfig>(file, 3, {"unknown section 'wroker'"});
  expect_config_error<dpool::ClientConfig>(file, 3, {"unknown section 'wroker'"});
}

TEST(Config, LogLevelMustBeAKnownLevel) {
  TempDir dir;
  expect_config_error<dpool::WorkerConfig>(dir.write("w.yaml", "log_level: loud\n"), 1,
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
  expect_config_error<dpool::BrokerConfig>(dir.write("c.yaml", "job_ttl: 24\n"), 1, {"job_ttl", "unit"});
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
    dpool::load_config_file(dir.path().string(), c);
    ADD_FAILURE() << "no error thrown";
  } catch (const dpool::Error& e) {
    EXPECT_EQ(e.code(), dpool::Errc::kConfig);
    EXPECT_NE(std::string(e.what()).find("cannot read the file: it is a directory"), std::string::npos) << e.what();
  }
}

TEST(Config, MissingFileIsAnError) {
  TempDir dir;
  const auto file = (dir.path() / "does-not-exist.yaml").string();
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

// ---- Durations and flags --------------------------------------------------------------------

TEST(Config, FormatDurationUsesTheLargestWholeUnit) {
  EXPECT_EQ(dpool::format_duration(0ms), "0s");
  EXPECT_EQ(dpool::format_duration(250ms), "250ms");
  EXPECT_EQ(dpool::format_duration(1500ms), "1500ms");
  EXPECT_EQ(dpool::format_duration(90s), "90s");
  EXPECT_EQ(dpool::format_duration(5min), "5m");
  EXPECT_EQ(dpool::format_duration(24h), "24h");
  for (std::chrono::milliseconds d : {0ms, 1ms, 999ms, 1001ms, 1000ms * 61, 1000ms * 60 * 59, 1000ms * 3600 * 25}) {
    EXPECT_EQ(dpool::parse_duration(dpool::format_duration(d)), d) << d.count();
  }
}

TEST(Config, DurationFlagBecomesMillisecondsOrSaysWhatIsWrong) {
  const auto flag = dpool::duration_flag(dpool::limits::kJobTtlMs);
  std::string text = "90m";
  EXPECT_EQ(flag(text), "");
  EXPECT_EQ(text, "5400000");
  text = "90";
  EXPECT_NE(flag(text).find("unit"), std::string::npos) << "a bare number is not a duration";
  text = "10ms";
  EXPECT_NE(flag(text).find("must be 1s or more"), std::string::npos);
  text = "-1s";
  EXPECT_NE(flag(text).find("negative"), std::string::npos);

  const auto heartbeat = dpool::duration_flag(dpool::limits::kHeartbeatMs, true);
  text = "200";
  EXPECT_EQ(heartbeat(text), "") << "--heartbeat-interval still takes milliseconds";
  EXPECT_EQ(text, "200");
  text = "2s";
  EXPECT_EQ(heartbeat(text), "");
  EXPECT_EQ(text, "2000");
  text = "5";
  EXPECT_NE(heartbeat(text).find("10ms or more"), std::string::npos);
}

// ---- Writing --------------------------------------------------------------------------------

/* Loads `yaml` (as written by to_yaml) into a default Config. */
template <class Config>
Config reload(const TempDir& dir, const std::string& yaml) {
  Config c;
  dpool::load_config_file(dir.write("printed.yaml", yaml), c);
  return c;
}

TEST(Config, PrintedBrokerConfigReadsBackTheSame) {
  TempDir dir;
  dpool::BrokerConfig c;
  c.bind = "tcp://0.0.0.0:7000";
  c.insecure = true;
  c.heartbeat = {250ms, 7};
  c.max_attempts = 5;
  c.client_timeout = 1500ms;
  c.job_ttl = 36h;
  c.log_level = "debug";
  const auto yaml = dpool::to_yaml(c);
  EXPECT_NE(yaml.find("job_ttl: 36h\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("client_timeout: 1500ms\n"), std::string::npos) << yaml;
  const auto back = reload<dpool::BrokerConfig>(dir, yaml);
  EXPECT_EQ(back.bind, c.bind);
  EXPECT_TRUE(back.insecure);
  EXPECT_EQ(back.job_ttl, 36h);
  EXPECT_EQ(back.client_timeout, 1500ms);
  EXPECT_EQ(dpool::to_yaml(back), yaml);
}

TEST(Config, PrintedWorkerConfigReadsBackTheSame) {
  TempDir dir;
  dpool::WorkerConfig c;
  c.broker = "tcp://head:5555";
  c.processes = 3;
  c.prefetch = 0;
  c.allow_exec = true;
  c.max_tasks_per_child = 50;
  c.plugins = {"/opt/a.so", "/opt/with space/b.so"};
  c.tags = {{"gpu", "a100"}, {"empty", ""}, {"odd", "#not: a comment"}, {"flag", "true"}};
  c.heartbeat = {2s, 4};
  c.log_level = "trace";
  const auto yaml = dpool::to_yaml(c);
  const auto back = reload<dpool::WorkerConfig>(dir, yaml);
  EXPECT_EQ(back.plugins, c.plugins);
  EXPECT_EQ(back.tags, c.tags);
  EXPECT_EQ(back.processes, 3u);
  EXPECT_EQ(dpool::to_yaml(back), yaml);

  const auto empty = dpool::to_yaml(dpool::WorkerConfig{});
  EXPECT_NE(empty.find("plugins: []\n"), std::string::npos) << empty;
  EXPECT_NE(empty.find("tags: {}\n"), std::string::npos) << empty;
  EXPECT_EQ(dpool::to_yaml(reload<dpool::WorkerConfig>(dir, empty)), empty);
}

TEST(Config, PrintedClientConfigReadsBackTheSame) {
  TempDir dir;
  dpool::ClientConfig c;
  c.broker = "ipc:///run/dpool.sock";
  c.connect_timeout = 2s;
  c.broker_timeout = 1h;
  c.window = 64;
  c.log_level = "off";
  const auto yaml = dpool::to_yaml(c);
  EXPECT_EQ(dpool::to_yaml(reload<dpool::ClientConfig>(dir, yaml)), yaml);
}

/* No broker named anywhere is said in a comment, so the printed file read back still names
 * none (a `broker:` key would turn a local cluster into a connection attempt). */
TEST(Config, PrintedClientConfigWithoutABrokerSaysSoInAComment) {
  TempDir dir;
  dpool::ClientConfig c;
  c.broker.clear();
  const auto yaml = dpool::to_yaml(c);
  EXPECT_EQ(yaml.find("broker:"), yaml.find("# broker:") + 2) << yaml;
  EXPECT_NE(yaml.find("local cluster"), std::string::npos) << yaml;
  const auto file = dir.write("printed.yaml", yaml);
  ScopedEnv config("DPOOL_CONFIG", file.c_str());
  ScopedEnv broker("DPOOL_BROKER", nullptr);
  dpool::ClientConfig loaded;
  EXPECT_EQ(dpool::resolve_client_config("", loaded), "");
}

// ---- Environment ----------------------------------------------------------------------------

TEST(Config, ConfigFilePathPrefersTheFlagOverTheEnvironment) {
  {
    ScopedEnv env("DPOOL_CONFIG", "/etc/dpool/from-env.yaml");
    EXPECT_EQ(dpool::config_file_path("/from/flag.yaml"), "/from/flag.yaml");
    EXPECT_EQ(dpool::config_file_path(""), "/etc/dpool/from-env.yaml");
  }
  {
    ScopedEnv env("DPOOL_CONFIG", nullptr);
    EXPECT_EQ(dpool::config_file_path(""), std::nullopt);
    EXPECT_EQ(dpool::config_file_path("/from/flag.yaml"), "/from/flag.yaml");
  }
  {
    ScopedEnv env("DPOOL_CONFIG", "");
    EXPECT_EQ(dpool::config_file_path(""), std::nullopt) << "empty counts as unset";
  }
}

TEST(Config, BrokerFromEnvReadsDpoolBroker) {
  {
    ScopedEnv env("DPOOL_BROKER", "tcp://queue.example:5555");
    EXPECT_EQ(dpool::broker_from_env(), "tcp://queue.example:5555");
  }
  {
    ScopedEnv env("DPOOL_BROKER", nullptr);
    EXPECT_EQ(dpool::broker_from_env(), std::nullopt);
  }
  {
    ScopedEnv env("DPOOL_BROKER", "");
    EXPECT_EQ(dpool::broker_from_env(), std::nullopt) << "empty counts as unset";
  }
}

}  // namespace

namespace {

std::string example(const std::string& name) { return std::string(DPOOL_SOURCE_DIR) + "/config/" + name; }

/* The top-level keys of a flat example file: the lines that start with a name and a colon. */
std::set<std::string> keys_in(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::set<std::string> keys;
  auto name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || !(std::isalpha(static_cast<unsigned char>(line[0])) || line[0] == '_')) continue;
    const auto end = std::find_if_not(line.begin(), line.end(), name_char);
    if (end != line.end() && *end == ':') keys.insert(std::string(line.begin(), end));
  }
  return keys;
}

/* An example must name every key the loader knows (so a new option fails this test until it is
 * documented), no other, and show the built-in defaults. */
template <class Config>
void expect_example_documents_every_key(const std::string& name) {
  SCOPED_TRACE(name);
  const auto known = dpool::config_keys(Config{});
  EXPECT_EQ(keys_in(example(name)), std::set<std::string>(known.begin(), known.end()));
  Config loaded;
  ASSERT_NO_THROW(dpool::load_config_file(example(name), loaded));
  EXPECT_EQ(dpool::to_yaml(loaded), dpool::to_yaml(Config{})) << "the example shows other values than the defaults";
}

}  // namespace

TEST(Config, TheBrokerExampleDocumentsEveryKey) { expect_example_documents_every_key<dpool::BrokerConfig>("broker.yaml"); }
TEST(Config, TheWorkerExampleDocumentsEveryKey) { expect_example_documents_every_key<dpool::WorkerConfig>("worker.yaml"); }
TEST(Config, TheClientExampleDocumentsEveryKey) { expect_example_documents_every_key<dpool::ClientConfig>("client.yaml"); }

/* The one-file-for-a-cluster example serves each role its own section. */
TEST(Config, TheClusterExampleLoadsForEveryRole) {
  dpool::BrokerConfig b;
  dpool::WorkerConfig w;
  dpool::ClientConfig c;
  EXPECT_NO_THROW(dpool::load_config_file(example("cluster.yaml"), b));
  EXPECT_NO_THROW(dpool::load_config_file(example("cluster.yaml"), w));
  EXPECT_NO_THROW(dpool::load_config_file(example("cluster.yaml"), c));
  EXPECT_EQ(w.processes, 4u);
}

/* A client takes the config file's settings, and its broker by precedence: explicit (flag or
 * option), then DPOOL_BROKER, then the file; none anywhere means an embedded cluster. */
TEST(Config, ClientBrokerPrecedenceIsExplicitThenEnvironmentThenFile) {
  TempDir dir;
  const auto file = dir.write("c.yaml", "client:\n  broker: tcp://from-file:1\n  window: 64\n");
  ScopedEnv config("DPOOL_CONFIG", file.c_str());
  {
    ScopedEnv broker("DPOOL_BROKER", nullptr);
    dpool::ClientConfig c;
    EXPECT_EQ(dpool::resolve_client_config("", c), "tcp://from-file:1");
    EXPECT_EQ(c.window, 64u);
  }
  {
    ScopedEnv broker("DPOOL_BROKER", "tcp://from-env:2");
    dpool::ClientConfig c;
    EXPECT_EQ(dpool::resolve_client_config("", c), "tcp://from-env:2");
    EXPECT_EQ(c.window, 64u);  // the file's other settings still apply
    EXPECT_EQ(dpool::resolve_client_config("tcp://explicit:3", c), "tcp://explicit:3");
  }
  {
    ScopedEnv broker("DPOOL_BROKER", nullptr);
    ScopedEnv none("DPOOL_CONFIG", nullptr);
    dpool::ClientConfig c;
    EXPECT_EQ(dpool::resolve_client_config("", c), "");
  }
}
