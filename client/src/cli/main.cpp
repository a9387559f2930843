/* dpool: the command line client.
 *
 * The subcommands (call, map, ...) each register themselves from their own file (cli.hpp).
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

  const dpool::cli::Command commands[] = {
      dpool::cli::add_call(app),
      dpool::cli::add_map(app),
  };

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
    for (const auto& command : commands) {
      if (command.app->parsed()) return command.run();
    }
    return 2;  // require_subcommand(1) makes this unreachable
  } catch (const dpool::Error& e) {
    std::fprintf(stderr, "dpool: %s\n", one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpool: internal error: %s\n", one_line(e.what()).c_str());
    return 3;
  }
}
