/* dpool-broker: parses flags, loads the configuration (flag > environment > file > default),
 * and runs the broker until SIGINT or SIGTERM. Every error a person can cause ends in one line
 * on stderr and exit code 2. */
#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "dpool/broker.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"

namespace {

dpool::Broker* g_broker = nullptr;

extern "C" void on_signal(int) {
  if (g_broker) g_broker->stop();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dpool-broker: routes tasks from dpool clients to dpool workers"};
  std::string bind, config_file, log_level;
  bool insecure = false;
  long heartbeat_ms = 0;
  app.add_option("--bind", bind, "address to listen on (default tcp://127.0.0.1:5555)");
  app.add_option("--config", config_file, "YAML configuration file (default: $DPOOL_CONFIG)");
  app.add_flag("--insecure", insecure, "allow listening on non-loopback addresses without CURVE");
  app.add_option("--heartbeat-interval", heartbeat_ms, "heartbeat interval in milliseconds")
      ->check(CLI::Range(10, 600000));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off");
  CLI11_PARSE(app, argc, argv);

  try {
    dpool::BrokerConfig config;
    if (auto path = dpool::config_file_path(config_file)) dpool::load_config_file(*path, config);
    if (!bind.empty()) config.bind = bind;
    if (heartbeat_ms) config.heartbeat.interval = std::chrono::milliseconds(heartbeat_ms);
    if (!log_level.empty()) config.log_level = log_level;
    dpool::log::init("broker", config.log_level);

    dpool::Broker broker(config, insecure);
    g_broker = &broker;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    broker.run();
    g_broker = nullptr;
    return 0;
  } catch (const dpool::Error& e) {
    std::fprintf(stderr, "dpool-broker: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool-broker: internal error: %s\n", e.what());
    return 3;
  }
}
