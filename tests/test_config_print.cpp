/* The configuration written back and read from elsewhere: durations as flags and as text,
 * to_yaml() (what --print-config prints) reading back to the same configuration, the
 * documented examples in config/ naming exactly the keys the loader knows, and the
 * environment helpers config_file_path(), broker_from_env() and resolve_client_config().
 */
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <algorithm>
#include <cctype>
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

// ---- Durations and flags --------------------------------------------------------------------

TEST(Config, FormatDurationUsesTheLargestWholeUnit) {
  EXPECT_EQ(dpool::format_duration(0ms), "0s");
  EXPECT_EQ(dpool::format_duration(250ms), "250ms");
  EXPECT_EQ(dpool::format_duration(1500ms), "1500ms");
  EXPECT_EQ(dpool::format_duration(90s), "90s");
  EXPECT_EQ(dpool::format_duration(5min), "5m");
  EXPECT_EQ(dpool::format_duration(24h), "24h");
  for (std::chrono::milliseconds d :
       {0ms, 1ms, 999ms, 1001ms, 1000ms * 61, 1000ms * 60 * 59, 1000ms * 3600 * 25}) {
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

std::string example(const std::string& name) {
  return std::string(DPOOL_SOURCE_DIR) + "/config/" + name;
}

/* The top-level keys of a flat example file: the lines that start with a name and a colon. */
std::set<std::string> keys_in(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::set<std::string> keys;
  auto name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || !(std::isalpha(static_cast<unsigned char>(line[0])) || line[0] == '_'))
      continue;
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
  EXPECT_EQ(dpool::to_yaml(loaded), dpool::to_yaml(Config{}))
      << "the example shows other values than the defaults";
}

}  // namespace

TEST(Config, TheBrokerExampleDocumentsEveryKey) {
  expect_example_documents_every_key<dpool::BrokerConfig>("broker.yaml");
}
TEST(Config, TheWorkerExampleDocumentsEveryKey) {
  expect_example_documents_every_key<dpool::WorkerConfig>("worker.yaml");
}
TEST(Config, TheClientExampleDocumentsEveryKey) {
  expect_example_documents_every_key<dpool::ClientConfig>("client.yaml");
}

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
