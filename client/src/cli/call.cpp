/* dpool call FUNCTION [JSON-ARG]...: one call through the broker, its result as JSON. */
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "dpool/cli_main.hpp"
#include "dpool/client.hpp"
#include "dpool/codec.hpp"
#include "dpool/config.hpp"
#include "exec_output.hpp"
#include "json.hpp"

namespace dpool::cli {
namespace {

struct CallOptions {
  std::string function;
  std::optional<std::string> first_arg;  // as parsed; args has it first
  std::vector<std::string> args;          // JSON texts
  std::string broker;
  std::optional<double> timeout;  // seconds
  TaskPolicy policy;
};

/* A task's failure: what happened where, after how many attempts, and the last lines its
 * process wrote to stderr when it crashed or timed out. */
void print_failure(const std::string& function, const wire::Result& meta) {
  std::string where = function;
  if (!meta.host.empty()) where += " on " + meta.host + " pid " + std::to_string(meta.pid);
  if (meta.attempts > 1) where += ", after " + std::to_string(meta.attempts) + " attempts";
  std::fprintf(stderr, "dpool: %s: %s (%s)\n", meta.error_type.c_str(), meta.error_message.c_str(),
               where.c_str());
  if (meta.history.size() > 1) {
    for (const auto& a : meta.history) {
      std::fprintf(stderr, "  attempt %u on %s: %s: %s\n", a.attempt,
                   a.host.empty() ? "?" : a.host.c_str(), a.error_type.c_str(),
                   one_line(a.error_message).c_str());
    }
  }
  if (!meta.history.empty() && !meta.history.back().stderr_tail.empty()) {
    std::fprintf(stderr, "  its last stderr lines:\n%s", meta.history.back().stderr_tail.c_str());
  }
}

int run_call(const CallOptions& options) {
  msgpack::sbuffer packed;
  msgpack::packer<msgpack::sbuffer> packer(packed);
  packer.pack_array(static_cast<std::uint32_t>(options.args.size()));
  for (std::size_t i = 0; i < options.args.size(); ++i) {
    nlohmann::json value;
    // Argument 1 is the function; its JSON arguments are 2, 3, ... Quoted, so that a user who
    // counts from the first JSON argument still sees which one.
    const auto which = "argument " + std::to_string(i + 2) + " ('" + label(options.args[i]) + "')";
    try {
      // The list of arguments is the payload's outermost level.
      value = parse_json(options.args[i], kArgumentLimits.max_depth - 1);
    } catch (const nlohmann::json::exception& e) {
      throw Error(Errc::kUsage, which + " is not JSON: " + e.what() +
                                    " (a string is written \"\\\"text\\\"\")");
    } catch (const Error& e) {
      throw Error(
          Errc::kUsage,
          which + " " + e.what() + ", more than a task's arguments may (a worker would refuse it)");
    }
    pack_json(packer, value);
  }

  ClientConfig config;
  auto broker = resolve_client_config(options.broker, config);
  if (broker.empty()) broker = kDefaultBroker;
  config.broker = broker;
  if (options.timeout) {
    const auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::duration<double>(*options.timeout));
    config.connect_timeout =
        std::max(std::chrono::milliseconds(1), std::min(config.connect_timeout, limit));
  }
  const auto connect_timeout = config.connect_timeout;
  Client client(config);
  if (!client.wait_connected(connect_timeout)) {
    throw Error(Errc::kUnreachable, "cannot reach the broker at " + broker + " (no answer within " +
                                        seconds_text(connect_timeout) + ")");
  }
  require_worker_for(client, options.function);

  auto promise = std::make_shared<std::promise<TaskResult>>();
  auto future = promise->get_future();
  TaskOptions task;
  static_cast<TaskPolicy&>(task) = options.policy;
  const auto id = client.submit(
      options.function, std::string(packed.data(), packed.size()),
      [promise](TaskResult&& r) { promise->set_value(std::move(r)); }, std::move(task));
  if (options.timeout && future.wait_for(std::chrono::duration<double>(*options.timeout)) !=
                             std::future_status::ready) {
    client.cancel({id});
    if (!client.connected()) {
      std::fprintf(stderr, "dpool: cannot reach the broker at %s (no answer within %s)\n",
                   broker.c_str(), seconds_text(connect_timeout).c_str());
      return 2;
    }
    std::fprintf(stderr, "dpool: %s did not finish within %s\n", options.function.c_str(),
                 seconds_text(std::chrono::duration<double>(*options.timeout)).c_str());
    return 1;
  }
  TaskResult r = future.get();
  switch (r.meta.status) {
    case Status::kOk: {
      nlohmann::json value;
      try {
        auto handle = unpack_in_place(r.value);
        value = to_json(handle.get());
      } catch (const std::exception& e) {
        throw Error(Errc::kInternal,
                    options.function + " returned a value that is not msgpack: " + e.what());
      }
      std::printf("%s\n", dump_line(value).c_str());
      return std::fflush(stdout) == 0 ? 0 : 3;
    }
    case Status::kError:
    case Status::kLost:
    case Status::kTimeout:
    case Status::kReturned:
      print_failure(options.function, r.meta);
      return 1;
    case Status::kRejected:
      std::fprintf(stderr, "dpool: %s: %s: %s\n", options.function.c_str(),
                   r.meta.error_type.c_str(), r.meta.error_message.c_str());
      return 2;
    case Status::kUnreachable:
      std::fprintf(stderr, "dpool: cannot reach the broker at %s (no answer within %s)\n",
                   broker.c_str(), seconds_text(connect_timeout).c_str());
      return 2;
    case Status::kCancelled:
      std::fprintf(stderr, "dpool: %s was cancelled: %s\n", options.function.c_str(),
                   r.meta.error_message.c_str());
      return 1;
  }
  return 3;
}

/* The arguments in order: the first (when given), the words CLI11 left over, then every word
 * after the "--" (cut off before parsing, see cut_after_mark). Unknown options are among the
 * left-over words too; no JSON starts with "-" but a number. */
std::vector<std::string> call_arguments(const std::optional<std::string>& first,
                                        std::vector<std::string> rest,
                                        const std::vector<std::string>& after_mark) {
  for (const auto& word : rest) {
    const bool number = word.size() > 1 && (std::isdigit(static_cast<unsigned char>(word[1])) != 0);
    if (word.size() > 1 && word[0] == '-' && !number) {
      throw Error(Errc::kUsage, "unknown option " + word + " (see dpool call --help)");
    }
  }
  if (first) rest.insert(rest.begin(), *first);
  rest.insert(rest.end(), after_mark.begin(), after_mark.end());
  return rest;
}

}  // namespace

std::vector<std::string> cut_after_mark(int& argc, char** argv, std::string_view subcommand,
                                        const CLI::App& parent) {
  // The parent's options that take a value: their value may be any word, "call" too.
  std::vector<std::string> value_options;
  for (const auto* option : parent.get_options()) {
    if (option->get_type_size() == 0) continue;  // a flag
    for (const auto& name : option->get_lnames()) value_options.push_back("--" + name);
    for (const auto& name : option->get_snames()) value_options.push_back("-" + name);
  }
  int i = 1;
  for (; i < argc; ++i) {
    const std::string_view word = argv[i];
    if (word == "--") return {};  // before any subcommand: not ours to cut
    if (std::find(value_options.begin(), value_options.end(), word) != value_options.end()) {
      ++i;  // its value
    } else if (word.empty() || word[0] != '-') {
      break;
    }
  }
  if (i >= argc || argv[i] != subcommand) return {};
  for (int mark = i + 1; mark < argc; ++mark) {
    if (std::string_view(argv[mark]) != "--") continue;
    std::vector<std::string> after(argv + mark + 1, argv + argc);
    argc = mark;
    return after;
  }
  return {};
}

Command add_call(CLI::App& parent, std::vector<std::string> after_mark) {
  auto options = std::make_shared<CallOptions>();
  auto* cmd = parent.add_subcommand(
      "call", "calls FUNCTION on a worker with JSON arguments; prints the result as JSON");
  // Not required() to CLI11: after a "--" it is the first word cut off before parsing.
  cmd->add_option("function", options->function, "the task function's name");
  // The arguments are not a vector option: CLI11 reads "[1,2]" given to one as its own list
  // syntax, two arguments 1 and 2. So the first is a plain string positional and every later
  // one is an extra, left as it is in remaining() (call_arguments).
  cmd->add_option("arg", options->first_arg,
                  "its arguments, one JSON value each, like 7 or '[1,2]' or '\"text\"'");
  cmd->allow_extras();
  cmd->footer(
      "ARG...: every word after FUNCTION that is not an option is an argument, and every word "
      "after --.");
  add_broker_option(*cmd, options->broker);
  cmd->add_option("--timeout", options->timeout, "give up after this many seconds")
      ->check(seconds_validator());
  add_policy_options(*cmd, options->policy, true);
  return {cmd, [options, cmd, after_mark = std::move(after_mark)] {
            auto words = call_arguments(options->first_arg, cmd->remaining(), after_mark);
            if (options->function.empty()) {
              if (words.empty()) {
                throw Error(Errc::kUsage, "call needs a FUNCTION (see dpool call --help)");
              }
              options->function = words.front();
              words.erase(words.begin());
            }
            options->args = std::move(words);
            return run_call(*options);
          }};
}

}  // namespace dpool::cli
