/* The task policy flags shared by dpool call, map and submit: --priority, --require,
 * --expires and, where the broker's retries apply, --retries, --retry-delay and
 * --task-timeout. They fill a TaskPolicy as the library's Pool::with() takes it. */
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "dpool/cli_main.hpp"
#include "dpool/config.hpp"

namespace dpool::cli {

void add_policy_options(CLI::App& cmd, TaskPolicy& policy, bool retries) {
  cmd.add_option_function<unsigned>(
         "--priority", [&policy](unsigned p) { policy.priority = static_cast<std::uint8_t>(p); },
         "0 to 9, higher runs first (default 5)")
      ->transform(count_validator({0, 9}));
  cmd.add_option_function<std::vector<std::string>>(
         "--require",
         [&policy](const std::vector<std::string>& tags) {
           for (const auto& t : tags) {
             const auto eq = t.find('=');
             if (eq == std::string::npos || eq == 0)
               throw CLI::ValidationError("--require", "wants KEY=VALUE, got '" + t + "'");
             policy.needs[t.substr(0, eq)] = t.substr(eq + 1);
           }
         },
         "KEY=VALUE: run only on workers started with --tag KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  cmd.add_option_function<long long>(
         "--expires", [&policy](long long ms) { policy.expires = std::chrono::milliseconds(ms); },
         "fail a task not started this long after submission, like 30s or 5m")
      ->transform(CLI::Validator(duration_flag(limits::kTimeoutMs), "DURATION"));
  if (!retries) return;
  cmd.add_option_function<unsigned>(
         "--retries", [&policy](unsigned n) { policy.retries = n; },
         "run a task that threw again, up to N times")
      ->transform(count_validator({0, 1000}));
  cmd.add_option_function<long long>(
         "--retry-delay",
         [&policy](long long ms) { policy.retry_delay = std::chrono::milliseconds(ms); },
         "wait this long before the first retry, twice as long before each later one (default 0)")
      ->transform(CLI::Validator(duration_flag(limits::kTimeoutMs), "DURATION"));
  cmd.add_option_function<long long>(
         "--task-timeout",
         [&policy](long long ms) { policy.timeout = std::chrono::milliseconds(ms); },
         "kill a task that runs longer than this on its worker, like 30s (fails as a time-out)")
      ->transform(CLI::Validator(duration_flag(limits::kTimeoutMs), "DURATION"));
}

}  // namespace dpool::cli
