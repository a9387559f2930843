/* The dpool command line: its subcommands and the pieces they share.
 *
 * Each subcommand lives in its own file and registers itself on the app with add_<name>(),
 * which returns the parsed subcommand and what to run when it was chosen; main() knows only
 * that list. Every error a person can cause is a dpool::Error caught in main(), which prints
 * it as one line on stderr and exits 2. Task failures are reported by the subcommand itself,
 * which exits 1. */
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace dpool::cli {

/* A registered subcommand: `app` is set by the parser when it was chosen. */
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Command add_call(CLI::App& parent);
Command add_map(CLI::App& parent);

/* "1.5 s", "5 s": a duration as a person reads it. */
[[nodiscard]] std::string seconds_text(std::chrono::duration<double> d);

}  // namespace dpool::cli
