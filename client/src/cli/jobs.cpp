/* dpool submit / wait / result / cancel: detached jobs (docs/protocol.md, "Detached jobs").
 *
 * `submit` sends every task with the job's id and its position, waits until the broker holds
 * each of them, seals the job with the number sent and prints the id: once it has printed, the
 * job is the broker's, and the submitter may go. The other three find the job by id from any
 * client. Results are read in pages in position order, so `result` prints in input order with
 * bounded memory whatever the job's size, and streams while the job still runs.
 */
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <semaphore>
#include <thread>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "dpool/cli_main.hpp"
#include "dpool/client.hpp"
#include "dpool/util.hpp"
#include "dpool/codec.hpp"
#include "json.hpp"
#include "exec_output.hpp"
#include "input.hpp"
#include "progress.hpp"
#include "results.hpp"

namespace dpool::cli {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(200);
constexpr std::ptrdiff_t kMaxUnaccepted = 10000;  // tasks submitted, not yet held by the broker

std::string new_job_id() {
  char buf[32];
  std::snprintf(buf, sizeof buf, "j-%012llx",
                static_cast<unsigned long long>(random_u64() & 0xffffffffffffULL));
  return buf;
}

/* ---- submit ------------------------------------------------------------------------------- */

struct SubmitOptions {
  std::string broker;
  std::string id;
  std::string function;
  std::string args_file = "-";
  std::uint32_t chunksize = 1;
  std::optional<double> timeout;      // per command (exec jobs)
  std::vector<std::string> command;  // COMMAND ARG... [::: VALUE...]...
  TaskPolicy policy;  // priority, required tags, deadline, retries of --function tasks
};

/* Puts tasks into a job, at most kMaxUnaccepted not yet held by the broker at a time. */
class JobWriter {
 public:
  JobWriter(Client& client, std::string job, TaskPolicy policy)
      : client_(client), job_(std::move(job)), policy_(std::move(policy)) {}

  void add(const std::string& function, std::string args, std::uint32_t items) {
    state_->slots.acquire();
    TaskOptions options;
    static_cast<TaskPolicy&>(options) = policy_;
    options.items = items;
    options.job = job_;
    options.index = sent_++;
    // The completion holds the state, not the writer: on an error path the writer is gone
    // before the Client completes what is left.
    client_.submit(function, std::move(args), [state = state_](TaskResult&& r) {
      if (!r.ok()) {
        std::lock_guard lock(state->mutex);
        if (state->error.empty()) state->error = r.meta.error_type + ": " + r.meta.error_message;
      }
      state->slots.release();
    }, std::move(options));
  }

  /* Waits until the broker holds every task, then seals the job; throws what went wrong. */
  void seal() {
    for (std::ptrdiff_t i = 0; i < kMaxUnaccepted; ++i) state_->slots.acquire();
    {
      std::lock_guard lock(state_->mutex);
      if (!state_->error.empty())
        throw Error(Errc::kRejected, "job " + job_ + ": " + state_->error);
    }
    const auto info = client_.job(job_, JobOp::kSeal, sent_).get();
    if (sent_ > 0 && (!info.found || info.total != sent_)) {
      throw Error(Errc::kRejected, "job " + job_ + " is incomplete: " +
                                       (info.note.empty() ? "the broker lost it" : info.note));
    }
  }

 private:
  struct State {
    std::counting_semaphore<> slots{kMaxUnaccepted};
    std::mutex mutex;
    std::string error;  // the first refusal
  };
  Client& client_;
  std::string job_;
  TaskPolicy policy_;
  std::uint64_t sent_ = 0;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

/* One line of the arguments file: a JSON array is the argument list, any other value the one
 * argument. */
void pack_line(msgpack::packer<msgpack::sbuffer>& packer, const nlohmann::json& value) {
  if (value.is_array()) {
    pack_json(packer, value);
  } else {
    packer.pack_array(1);
    pack_json(packer, value);
  }
}

/* Packs calls `chunksize` to a task and hands the tasks to a JobWriter. */
class Chunker {
 public:
  Chunker(JobWriter& writer, std::string function, std::uint32_t chunksize)
      : writer_(writer), function_(std::move(function)), chunksize_(chunksize) {}
  ~Chunker() = default;

  void add(std::string packed_args) {
    pending_.push_back(std::move(packed_args));
    if (pending_.size() >= chunksize_) flush();
  }

  void flush() {
    if (pending_.empty()) return;
    if (chunksize_ == 1) {
      writer_.add(function_, std::move(pending_.front()), 0);
    } else {
      msgpack::sbuffer head;
      msgpack::packer<msgpack::sbuffer>(head).pack_array(
          static_cast<std::uint32_t>(pending_.size()));
      std::string args(head.data(), head.size());
      for (auto& p : pending_) args += p;
      writer_.add(function_, std::move(args), static_cast<std::uint32_t>(pending_.size()));
    }
    pending_.clear();
  }

 private:
  JobWriter& writer_;
  std::string function_;
  std::uint32_t chunksize_;
  std::vector<std::string> pending_;
};

/* The calls of `--function`: one JSON argument list a line of the file (or stdin). */
void submit_calls(const SubmitOptions& options, Client& client, const std::string& job,
                  Chunker& chunker) {
  std::ifstream file;
  std::istream* in = &std::cin;
  const std::string name = options.args_file == "-" ? "stdin" : options.args_file;
  if (options.args_file != "-") {
    file.open(options.args_file);
    if (!file)
      throw Error(Errc::kUsage, "cannot read " + options.args_file + ": " + std::strerror(errno));
    in = &file;
  }
  msgpack::sbuffer packed;
  msgpack::packer<msgpack::sbuffer> packer(packed);
  std::string line;
  for (std::size_t number = 1; std::getline(*in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json value;
    try {
      // A line that is an array is the list of arguments, the payload's outermost level; any
      // other value is wrapped in one (pack_line).
      const bool is_list = line[line.find_first_not_of(" \t\r")] == '[';
      value = parse_json(line, kArgumentLimits.max_depth - (is_list ? 0 : 1));
    } catch (const nlohmann::json::exception& e) {
      (void)client.job(job, JobOp::kForget).wait_for(std::chrono::seconds(5));
      throw Error(Errc::kUsage, name + ":" + std::to_string(number) + ": not JSON (" + e.what() +
                                    "); the job was dropped");
    } catch (const Error& e) {
      (void)client.job(job, JobOp::kForget).wait_for(std::chrono::seconds(5));
      throw Error(Errc::kUsage, name + ":" + std::to_string(number) + ": " + e.what() +
                                    ", more than a task's arguments may; the job was dropped");
    }
    packed.clear();
    pack_line(packer, value);
    chunker.add(std::string(packed.data(), packed.size()));
  }
  if (in->bad()) throw Error(Errc::kUsage, "cannot read " + name + ": " + std::strerror(errno));
}

/* The commands of `-- COMMAND ...`: the same input forms as dpool map. */
void submit_commands(const SubmitOptions& options, Chunker& chunker) {
  const auto line = split_command_line(options.command);
  auto source = open_input(line);
  const CommandTemplate command(line.command, source->sources());
  while (auto item = source->next())
    chunker.add(pack_exec_args(command.expand(*item), options.timeout));
}

int run_submit(const SubmitOptions& options) {
  const bool commands = !options.command.empty();
  if (commands == !options.function.empty()) {
    throw Error(Errc::kUsage,
                "submit takes either --function NAME (arguments from --args or stdin) or a command "
                "after --");
  }
  if (options.timeout && !commands)
    throw Error(Errc::kUsage, "--timeout applies to commands (after --), not to --function");
  auto client = connect_client(options.broker);
  const std::string function = commands ? "exec" : options.function;
  require_worker_for(*client, function,
                     commands ? "start a worker with --allow-exec to run commands" : "");
  const std::string job = options.id.empty() ? new_job_id() : options.id;
  if (client->job(job).get().found)
    throw Error(Errc::kUsage, "a job " + job + " exists already on " + client->config().broker);
  JobWriter writer(*client, job, options.policy);
  Chunker chunker(writer, function, options.chunksize);
  if (commands) submit_commands(options, chunker);
  else submit_calls(options, *client, job, chunker);
  chunker.flush();
  writer.seal();
  std::printf("%s\n", job.c_str());
  return std::fflush(stdout) == 0 ? 0 : 3;
}

/* ---- wait --------------------------------------------------------------------------------- */

struct JobOptions {
  std::string broker;
  std::string job;
  std::optional<double> timeout;
  bool json = false;
  bool forget = false;
};

wire::JobInfo job_info(Client& client, const std::string& job) {
  auto info = client.job(job).get();
  if (!info.found) {
    throw Error(Errc::kUsage, "no job " + job + " on the broker at " + client.config().broker +
                                  " (never submitted, forgotten, or expired)");
  }
  return info;
}

bool finished(const wire::JobInfo& info) { return info.sealed && info.finished == info.total; }

std::string summary(const wire::JobInfo& info) {
  std::string s = "job " + info.job + ": " + std::to_string(info.finished) + " of " +
                  std::to_string(info.total) + " tasks done, " + std::to_string(info.failed) +
                  " failed";
  if (info.cancelled) s += " (" + std::to_string(info.cancelled) + " cancelled)";
  if (!info.note.empty()) s += "; " + info.note;
  return s;
}

int run_wait(const JobOptions& options) {
  auto client = connect_client(options.broker);
  const auto deadline =
      options.timeout
          ? std::optional(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(*options.timeout)))
          : std::nullopt;
  Progress progress(Progress::wanted(std::nullopt));
  for (;;) {
    const auto info = job_info(*client, options.job);
    progress.update(info.finished, info.failed,
                    info.sealed ? std::optional(info.total) : std::nullopt);
    if (finished(info)) {
      progress.finish();
      if (info.failed > 0 || !info.note.empty()) {
        std::fprintf(stderr, "dpool: %s\n", summary(info).c_str());
        return 1;
      }
      return 0;
    }
    if (deadline && Clock::now() >= *deadline) {
      progress.finish();
      std::fprintf(stderr, "dpool: %s; still running after %s\n", summary(info).c_str(),
                   seconds_text(std::chrono::duration<double>(*options.timeout)).c_str());
      return 1;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

/* ---- result ------------------------------------------------------------------------------- */

int run_result(const JobOptions& options) {
  auto client = connect_client(options.broker);
  auto info = job_info(*client, options.job);
  ResultPrinter printer(info.function, options.json);
  std::uint64_t next = 0;
  for (;;) {
    auto page = client->fetch(options.job, next).get();
    if (!page.meta.found)
      throw Error(Errc::kUsage, "job " + options.job + " was forgotten while being read");
    for (std::size_t i = 0; i < page.meta.results.size(); ++i) {
      printer.print(page.meta.results[i], page.values[i]);
    }
    next = page.meta.next;
    if (!page.meta.results.empty()) continue;
    info = job_info(*client, options.job);
    if (finished(info) && next >= info.total) break;
    std::this_thread::sleep_for(kPollInterval);
  }
  std::fflush(stdout);
  if (options.forget) (void)client->job(options.job, JobOp::kForget).get();
  if (printer.failed() > 0 || !info.note.empty()) {
    std::fprintf(stderr, "dpool: job %s: %llu of %llu items failed%s\n", info.job.c_str(),
                 static_cast<unsigned long long>(printer.failed()),
                 static_cast<unsigned long long>(printer.items()),
                 info.note.empty() ? "" : ("; " + info.note).c_str());
    return 1;
  }
  return 0;
}

/* ---- cancel ------------------------------------------------------------------------------- */

int run_cancel(const JobOptions& options) {
  auto client = connect_client(options.broker);
  (void)job_info(*client, options.job);
  const auto info = client->job(options.job, JobOp::kCancel).get();
  std::fprintf(stderr, "dpool: cancelled %s\n", summary(info).c_str());
  return 0;
}

CLI::App* job_command(CLI::App& parent, const char* name, const char* what, JobOptions& options) {
  auto* cmd = parent.add_subcommand(name, what);
  cmd->add_option("job", options.job, "the job id that dpool submit printed")->required();
  add_broker_option(*cmd, options.broker);
  return cmd;
}

}  // namespace

Command add_submit(CLI::App& parent) {
  auto options = std::make_shared<SubmitOptions>();
  auto* cmd = parent.add_subcommand(
      "submit", "submits a detached job, prints its id and exits; the broker keeps the results");
  add_broker_option(*cmd, options->broker);
  cmd->add_option("--id", options->id, "the job's id (default: a new random one)");
  cmd->add_option("--function", options->function,
                  "the task function each line of arguments calls");
  cmd->add_option("--args", options->args_file,
                  "with --function: a file of one JSON argument list a line (default: stdin)");
  cmd->add_option("--chunksize", options->chunksize, "calls per task (default 1)")
      ->transform(count_validator({1, 100000}));
  cmd->add_option("--timeout", options->timeout,
                  "fail a command that runs longer than this many seconds")
      ->check(seconds_validator(limits::kCommandTimeoutMs));
  add_policy_options(*cmd, options->policy, true);
  cmd->prefix_command();  // the command's words are kept as typed (see dpool map)
  auto first = std::make_shared<std::string>();
  cmd->add_option(
      "command", *first,
      "or: a command to run per item, after -- (items from stdin or after :::, as in dpool map)");
  return {cmd, [options, first, cmd] {
            if (!first->empty())
              options->command = command_words("submit", *first, cmd->remaining());
            return run_submit(*options);
          }};
}

Command add_wait(CLI::App& parent) {
  auto options = std::make_shared<JobOptions>();
  auto* cmd = job_command(
      parent, "wait", "waits until a detached job is done; exit 1 if any task failed", *options);
  cmd->add_option("--timeout", options->timeout, "give up after this many seconds (exit 1)")
      ->check(seconds_validator());
  return {cmd, [options] { return run_wait(*options); }};
}

Command add_result(CLI::App& parent) {
  auto options = std::make_shared<JobOptions>();
  auto* cmd = job_command(parent, "result",
                          "prints a detached job's results in order, as they arrive", *options);
  cmd->add_flag("--json", options->json, "one JSON object per result");
  cmd->add_flag("--forget", options->forget,
                "drop the job from the broker once every result is printed");
  return {cmd, [options] { return run_result(*options); }};
}

Command add_cancel(CLI::App& parent) {
  auto options = std::make_shared<JobOptions>();
  auto* cmd =
      job_command(parent, "cancel", "cancels a detached job's queued and running tasks", *options);
  return {cmd, [options] { return run_cancel(*options); }};
}

}  // namespace dpool::cli
