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
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dpool/client.hpp"
#include "dpool/error.hpp"

namespace CLI {
class App;
}

namespace dpool::cli {

/* A registered subcommand: `app` is set by the parser when it was chosen. */
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

/* `dpool call F 1 -- 2`: CLI11 hands the words after a "--" that follows the last positional
 * to the parent command, which refuses them. For call every word after the "--" is an
 * argument, so main cuts them off argv before parsing (when `subcommand` is the one given
 * after `parent`'s own options, which must all be added by then) and hands them to add_call. */
std::vector<std::string> cut_after_mark(int& argc, char** argv, std::string_view subcommand,
                                        const CLI::App& parent);
Command add_call(CLI::App& parent, std::vector<std::string> after_mark);
Command add_map(CLI::App& parent);
Command add_submit(CLI::App& parent);
Command add_wait(CLI::App& parent);
Command add_result(CLI::App& parent);
Command add_cancel(CLI::App& parent);
Command add_status(CLI::App& parent);
Command add_keygen(CLI::App& parent);

/* --priority, --require KEY=VALUE, --expires, and with `retries` --retries, --retry-delay and
 * --task-timeout: the broker-side task policy (dpool::TaskPolicy). */
void add_policy_options(CLI::App& cmd, TaskPolicy& policy, bool retries);

/* --broker for the subcommands that need a standing broker (connect_client's `flag`). */
void add_broker_option(CLI::App& cmd, std::string& broker);

/* A Client of the broker named by `flag`, else $DPOOL_BROKER, the config file, or the default
 * address, once it has answered; Error(kUnreachable) when it does not within the connect
 * timeout. For the commands that need a standing broker (a job outlives the command). */
[[nodiscard]] std::unique_ptr<Client> connect_client(const std::string& flag);

/* Returns once a worker connected to the client's broker offers `function`, waiting up to the
 * connect timeout for workers still registering; else Error(kUsage) naming what the workers
 * offer, followed by `hint`. Tasks for a function nobody offers would wait silently. */
void require_worker_for(Client& client, const std::string& function, const std::string& hint = {});

/* "1.5 s", "5 s": a duration as a person reads it. */
[[nodiscard]] std::string seconds_text(std::chrono::duration<double> d);

}  // namespace dpool::cli
