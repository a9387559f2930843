/* dpool: the command line client.
 *
 * The subcommands (call, map, ...) each register themselves from their own file (cli.hpp).
 * Two top-level options concern them all: --config names the YAML file, and --print-config
 * prints the client configuration they would run with and exits (the one case where no
 * subcommand is needed). The subcommands and the client library read the file through
 * $DPOOL_CONFIG, so --config beats the environment by replacing it for this process; so do
 * --broker-key and --curve-key, through $DPOOL_BROKER_KEY and $DPOOL_CURVE_KEY.
 *
 * Errors a person can cause (a bad flag, a bad config file, an unreachable broker, an argument
 * that is not JSON) end in one line on stderr and exit code 2; failed tasks in exit code 1. */
#include <cstdio>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "dpool/cli_main.hpp"

#include "cli.hpp"
#include "dpool/config.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"

namespace {

/* The client configuration as the subcommands resolve it: the file, then DPOOL_BROKER. */
int print_config() {
  dpool::ClientConfig config;
  config.broker = dpool::resolve_client_config("", config);
  std::fputs(dpool::to_yaml(config).c_str(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dpool: runs work on a dpool cluster (or on this host, when none is given)"};
  app.require_subcommand(0, 1);  // one, unless --print-config: checked after parsing
  std::string config_file;
  bool print = false;
  app.add_option("--config", config_file, "YAML configuration file (default: $DPOOL_CONFIG)");
  app.add_flag("--print-config", print,
               "print the effective client configuration as YAML and exit");
  std::string broker_key, curve_key;
  app.add_option("--broker-key", broker_key,
                 "CURVE: the broker's public key, its .pub file or Z85 (default: "
                 "$DPOOL_BROKER_KEY, the file)");
  app.add_option("--curve-key", curve_key,
                 "CURVE: this client's secret key, PREFIX.key from dpool keygen --out PREFIX "
                 "(default: $DPOOL_CURVE_KEY, the file)");

  auto after_mark = dpool::cli::cut_after_mark(argc, argv, "call", app);
  const dpool::cli::Command commands[] = {
      dpool::cli::add_call(app, std::move(after_mark)),
      dpool::cli::add_map(app),
      dpool::cli::add_submit(app),
      dpool::cli::add_wait(app),
      dpool::cli::add_result(app),
      dpool::cli::add_cancel(app),
      dpool::cli::add_status(app),
      dpool::cli::add_keygen(app),
  };

  return dpool::run_main("dpool", app, argc, argv, [&] {
    if (!print && app.get_subcommands().empty()) {
      std::fprintf(stderr, "dpool: a subcommand is required (see dpool --help)\n");
      return 2;
    }
    // Single-threaded still: setenv is safe here.
    if (!config_file.empty()) ::setenv("DPOOL_CONFIG", config_file.c_str(), 1);
    if (!broker_key.empty()) ::setenv("DPOOL_BROKER_KEY", broker_key.c_str(), 1);
    if (!curve_key.empty()) ::setenv("DPOOL_CURVE_KEY", curve_key.c_str(), 1);
    if (print) return print_config();
    dpool::log::init("client", "error");
    for (const auto& command : commands) {
      if (command.app->parsed()) return command.run();
    }
    return 2;  // unreachable: a subcommand or --print-config was checked for above
  });
}
