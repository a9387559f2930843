/* Test support: the dpool command line run as a real process, for the CLI test files.
 *
 * stdin comes from a file holding the test's input, stdout and stderr go to files read back
 * afterwards, and the run is killed past a time limit so that a hang fails the test instead of
 * stalling the suite. DPOOL_BROKER and DPOOL_CONFIG are removed from the environment unless the
 * test sets them, so the machine's own settings never leak into a test.
 */
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace dpool::test {

using Env = std::map<std::string, std::string>;

struct Run {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string out, err;
  double seconds = 0;
};

/* A file's whole contents ("" when it cannot be read). */
[[nodiscard]] std::string slurp(const std::string& path);

/* Starts dpool with `args` and these descriptors as its stdin, stdout and stderr, in the
 * environment described above; -1 (and a test failure) if it cannot start. */
pid_t spawn_dpool(const std::vector<std::string>& args, int in, int out, int err,
                  const Env& env = {});

/* Waits for `pid` to end, killing it after `limit`; its exit code, -1 if killed or signalled. */
int wait_dpool(pid_t pid, std::chrono::seconds limit);

/* Runs dpool with `args` and `input` on stdin; killed (and failed) after `limit`. */
Run run_dpool(const std::vector<std::string>& args, const std::string& input = "",
              const Env& env = {}, std::chrono::seconds limit = std::chrono::seconds(60));

[[nodiscard]] std::vector<std::string> lines_of(const std::string& text);

/* A person-caused error: exactly one line on stderr. */
void expect_one_line(const std::string& err);

}  // namespace dpool::test
