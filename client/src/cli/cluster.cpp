/* The helpers the subcommands share (see cli.hpp). */

#include <algorithm>
#include <cstdio>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "dpool/config.hpp"
#include "dpool/curve.hpp"
#include "dpool/error.hpp"
#include "dpool/util.hpp"

namespace dpool::cli {

void add_broker_option(CLI::App& cmd, std::string& broker) {
  cmd.add_option("--broker", broker,
                 std::string("broker address (default: $DPOOL_BROKER, the config file, ") +
                     kDefaultBroker + ")");
}

std::unique_ptr<Client> connect_client(const std::string& flag) {
  ClientConfig config;
  auto broker = resolve_client_config(flag, config);
  config.broker = broker.empty() ? kDefaultBroker : broker;
  auto client = std::make_unique<Client>(config);
  if (!client->wait_connected(config.connect_timeout)) {
    throw Error(Errc::kUnreachable,
                "cannot reach the broker at " + config.broker + " (no answer within " +
                    seconds_text(config.connect_timeout) + ")" + unreachable_hint(config.curve));
  }
  return client;
}

std::string seconds_text(std::chrono::duration<double> d) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g s", d.count());
  return buf;
}

namespace {

bool offered(const wire::Report& r, const std::string& function) {
  return std::any_of(r.workers.begin(), r.workers.end(), [&](const wire::WorkerStatus& w) {
    return std::find(w.functions.begin(), w.functions.end(), function) != w.functions.end();
  });
}

}  // namespace

void require_worker_for(Client& client, const std::string& function, const std::string& hint) {
  // Workers may still be registering (an embedded cluster, a cluster starting up): give them
  // the connect timeout before calling it an error.
  const auto deadline = Clock::now() + client.config().connect_timeout;
  for (;;) {
    const auto report = client.status().get();
    if (offered(report, function)) return;
    if (Clock::now() >= deadline) {
      std::set<std::string> names;
      for (const auto& w : report.workers) names.insert(w.functions.begin(), w.functions.end());
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      throw Error(Errc::kUsage, "no worker connected to " + client.config().broker + " offers '" +
                                    function + "'" +
                                    (report.workers.empty() ? " (no worker is connected)"
                                                            : " (they offer: " + known + ")") +
                                    (hint.empty() ? "" : "; " + hint));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace dpool::cli
