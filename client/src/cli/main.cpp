/* dpool: the command line client.
 *
 *   dpool call FUNCTION [JSON-ARG]... [--broker ADDR] [--timeout SEC]
 *   dpool map [--broker ADDR | --local N] [--unordered] [--timeout SEC] [--retries N] [--json]
 *             -- COMMAND ARG...
 *
 * Errors a person can cause (a bad flag, a bad config file, an unreachable broker, an argument
 * that is not JSON) end in one line on stderr and exit code 2; failed tasks in exit code 1. */
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"

namespace {

/* CLI11's messages may span lines; a person gets one. */
std::string one_line(std::string text) {
  for (auto& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dpool: runs work on a dpool cluster (or on this host, when none is given)"};
  app.require_subcommand(1);

  dpool::cli::CallOptions call;
  auto* call_cmd = app.add_subcommand("call", "calls FUNCTION on a worker with JSON arguments; prints the result as JSON");
  call_cmd->add_option("function", call.function, "the task function's name")->required();
  call_cmd->add_option("args", call.args, "its arguments, one JSON value each (use -- before negative numbers)");
  call_cmd->add_option("--broker", call.broker, "broker address (default: $DPOOL_BROKER, the config file, tcp://127.0.0.1:5555)");
  call_cmd->add_option("--timeout", call.timeout, "give up after this many seconds")->check(CLI::PositiveNumber);

  dpool::cli::MapOptions map;
  auto* map_cmd = app.add_subcommand("map", "runs COMMAND once per line of stdin on the workers ({} is the line)");
  auto* broker_opt = map_cmd->add_option("--broker", map.broker, "broker address (default: $DPOOL_BROKER, the config file, else a local cluster)");
  map_cmd->add_option("--local", map.local, "run on a local cluster of N worker processes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->excludes(broker_opt);
  map_cmd->add_flag("--unordered", map.unordered, "print results as they finish, not in input order");
  map_cmd->add_option("--timeout", map.timeout, "fail an item that runs longer than this many seconds")
      ->check(CLI::PositiveNumber);
  map_cmd->add_option("--retries", map.retries, "run a failed item again, up to N times")
      ->check(CLI::Range(0u, 1000u));
  map_cmd->add_flag("--json", map.json, "print one JSON object per item instead of its output");
  map_cmd->add_option("--window", map.window, "items in flight at most (default 1000)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  map_cmd->add_option("command", map.command, "the command and its arguments, after --")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "dpool: %s (see dpool --help)\n", one_line(e.what()).c_str());
    return 2;
  }

  try {
    dpool::log::init("client", "error");
    if (*call_cmd) return dpool::cli::run_call(call);
    return dpool::cli::run_map(map);
  } catch (const dpool::Error& e) {
    std::fprintf(stderr, "dpool: %s\n", one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool: internal error: %s\n", one_line(e.what()).c_str());
    return 3;
  }
}
