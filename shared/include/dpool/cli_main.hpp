/* The frame of every dpool binary's main(): parse the flags, run, and turn what went wrong
 * into one line on stderr and an exit code, so that dpool-broker, dpool-worker and dpool fail
 * alike: 2 for what a person caused (a bad flag, a bad config file, an unreachable broker), 3
 * for a dpool bug. Also the validators of number flags, so that the three binaries word a bad
 * number alike, and as their YAML keys do. Header-only: only the binaries link CLI11.
 */
#pragma once

#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "dpool/config.hpp"
#include "dpool/error.hpp"

namespace dpool {

/* Number flags checked as their YAML keys are (config.hpp's count_flag and seconds_flag): CLI11's
 * own Range says "Value abc not in range 1 to 1000" of a word, and prints DBL_MAX in full for
 * PositiveNumber. Use count_validator() with transform(), which keeps its decimal rewrite. */
inline CLI::Validator count_validator(Limits limits) {
  const auto range =
      "INT in [" + std::to_string(limits.min) + " - " + std::to_string(limits.max) + "]";
  return CLI::Validator(count_flag(limits), range);
}
inline CLI::Validator seconds_validator(Limits limits = limits::kTimeoutMs) {
  return CLI::Validator(seconds_flag(limits), "SECONDS");
}

template <class Run>
int run_main(const char* program, CLI::App& app, int argc, char** argv, Run run) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "%s: %s (see %s --help)\n", program, one_line(e.what()).c_str(), program);
    return 2;
  }
  try {
    return run();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", program, one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", program, one_line(e.what()).c_str());
    return 3;
  }
}

}  // namespace dpool
