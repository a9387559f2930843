/* The exec built-in seen from the command line: its arguments going out, its results coming
 * back, and how an item's outcome is printed. `dpool map` and `dpool result` (a detached job
 * of commands) print alike, so both use these.
 *
 * exec's arguments are [{"timeout": T}, command, arg...] (the map only with a timeout); its
 * result a map {exit_code, signal, stdout, stderr, seconds, timed_out} (docs/protocol.md,
 * "Built-in functions"); a chunk's result one [0, map] or [1, type, message] per item.
 */
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "dpool/protocol.hpp"

namespace dpool::cli {

struct ExecOutcome {
  std::string text;
  bool ok = false;
  std::optional<int> exit_code;  // none when the command never ran to an end
  int signal = 0;
  bool timed_out = false;
  std::string out, err;
  std::string error;             // a failure that is not the command's own: timeout, lost worker
  std::string host;
  std::optional<double> seconds; // the command's run time on its worker
};

/* The item's name as a prefix for messages: cut when it is long. */
[[nodiscard]] std::string label(const std::string& text);

/* exec's arguments for one item. */
[[nodiscard]] std::string pack_exec_args(const std::vector<std::string>& argv,
                                         std::optional<double> timeout);

/* An exec result map as an outcome; `timeout` (when known) names the limit of a timed-out one. */
[[nodiscard]] ExecOutcome decode_exec(const msgpack::object& m, std::optional<double> timeout);

/* The failure of a whole task (every item of its chunk), or of one item that threw. */
[[nodiscard]] ExecOutcome failed_outcome(const std::string& type, const std::string& message,
                                         const wire::Result& meta);

/* A chunk's result, one outcome per item; throws std::runtime_error when it is malformed. */
[[nodiscard]] std::vector<ExecOutcome> decode_exec_chunk(const msgpack::object& a,
                                                         std::size_t count,
                                                         const wire::Result& meta,
                                                         std::optional<double> timeout);

/* One JSON object and a newline: item, exit_code, stdout, stderr, host, seconds (and signal,
 * timed_out, error when they apply). */
[[nodiscard]] std::string json_line(const ExecOutcome& o);

/* The item's stderr, each line named by the item, and for a failure the reason. */
[[nodiscard]] std::string stderr_text(const ExecOutcome& o);

}  // namespace dpool::cli
