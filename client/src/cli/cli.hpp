/* The dpool command line: its subcommands and the pieces they share.
 *
 * Every error a person can cause is a dpool::Error (or UsageError) caught in main(), which
 * prints it as one line on stderr and exits 2. Task failures are reported by the subcommand
 * itself, which exits 1. */
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "dpool/config.hpp"

namespace dpool::cli {

/* "1.5 s", "5 s": a duration as a person reads it. */
[[nodiscard]] std::string seconds_text(std::chrono::duration<double> d);

struct CallOptions {
  std::string function;
  std::vector<std::string> args;  // JSON texts
  std::string broker;
  std::optional<double> timeout;  // seconds
};
int run_call(const CallOptions& options);

struct MapOptions {
  std::string broker;
  std::optional<std::size_t> local;  // embedded cluster with this many processes
  bool unordered = false;
  std::optional<double> timeout;     // per item, seconds
  unsigned retries = 0;
  bool json = false;
  std::size_t window = 1000;         // items read but not yet printed, at most
  std::vector<std::string> command;
};
int run_map(const MapOptions& options);

}  // namespace dpool::cli
