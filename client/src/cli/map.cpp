/* dpool map -- COMMAND ARG...: each item (a line of stdin, or a combination of the values after
 * `:::`) runs COMMAND (the `exec` built-in) on a worker.
 *
 * Three threads: a reader that takes items from the input as the window allows, the client's
 * I/O thread whose completions only queue events, and this thread, which submits, retries and
 * prints. At most `window` items are read and not yet printed, so memory stays bounded
 * whatever the length of the input; in order mode the slowest item holds the printing back,
 * not the running.
 *
 * Items travel `chunksize` to a task (the protocol's chunks), each succeeding, failing and
 * being retried on its own. A chunk is sent when full, when the input ends, or once its first
 * item has waited kLinger for company: input that trickles in (a pipe held open) still starts
 * running at once.
 *
 * --timeout is enforced by the exec built-in, counted from the command's start on its worker:
 * only the worker knows when an item leaves the queue, so a client-side clock would fail items
 * that merely waited. There is no client-side clock at all: the broker already answers for a
 * lost result (a dead worker is retried, an unreachable broker ends the run). */
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <string>
#include <thread>
#include <unordered_map>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "dpool/cli_main.hpp"
#include "../embedded.hpp"
#include "dpool/curve.hpp"
#include "dpool/client.hpp"
#include "exec_output.hpp"
#include "input.hpp"
#include "json.hpp"
#include "progress.hpp"

namespace dpool::cli {
namespace {

using Clock = std::chrono::steady_clock;

// How long a partial chunk waits for more items before it is sent as it is.
constexpr auto kLinger = std::chrono::milliseconds(20);
// How often the progress bar is brought up to date when nothing happens.
constexpr auto kProgressTick = std::chrono::milliseconds(100);

struct MapOptions {
  std::string broker;
  std::optional<std::size_t> local;  // embedded cluster with this many processes
  bool unordered = false;
  std::optional<double> timeout;     // per item, seconds, from its start on the worker
  unsigned retries = 0;
  bool json = false;
  std::size_t window = 1000;         // items read but not yet printed, at most
  std::string on_full;               // wait or error; empty: the config file's, else wait
  std::size_t chunksize = 1;         // items per task
  bool progress = false, no_progress = false;
  std::vector<std::string> command;  // the command, then any ::: groups
  TaskPolicy policy;                 // --priority, --require, --expires
};

/* Something for the main thread: an item read, the end of the input, or a task's result. */
struct Event {
  enum Kind { kItem, kEnd, kReadError, kDone } kind = kItem;
  InputItem item;
  std::string message;     // kReadError
  std::uint64_t chunk = 0; // kDone
  TaskResult result;
};

class Events {
 public:
  void push(Event e) {
    // Notified under the lock: a waiter that wakes and goes on to destroy the queue cannot
    // do so while this call still touches it.
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(e));
    cv_.notify_one();
  }
  /* Everything queued, waiting until `deadline` for something. */
  std::deque<Event> take(std::optional<Clock::time_point> deadline) {
    std::unique_lock lock(mutex_);
    if (deadline) cv_.wait_until(lock, *deadline, [&] { return !queue_.empty(); });
    else cv_.wait(lock, [&] { return !queue_.empty(); });
    std::deque<Event> out;
    out.swap(queue_);
    return out;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Event> queue_;
};

struct Item {
  std::string text;        // how messages and --json name it
  std::string args;        // exec's arguments, packed once for every attempt
  unsigned attempt = 0;    // 0 for the first run, n for the n-th retry
};

/* A fatal error mid-run: the reader may be blocked in read(), so leave without unwinding. */
[[noreturn]] void die(const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "dpool: %s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(2);
}

void write_all(std::FILE* f, const std::string& s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), f) != s.size()) {
    if (f == stdout) die(std::string("cannot write to stdout: ") + std::strerror(errno));
  }
}


class Runner {
 public:
  Runner(const MapOptions& options, Client& client, std::string broker, ItemSource& source,
         const CommandTemplate& command)
      : options_(options),
        client_(client),
        broker_(std::move(broker)),
        source_(source),
        command_(command),
        progress_(Progress::wanted(options.progress      ? std::optional(true)
                                   : options.no_progress ? std::optional(false)
                                                         : std::nullopt)),
        slots_(static_cast<std::ptrdiff_t>(options.window)) {}

  int run() {
    std::thread reader([this] { read_input(); });
    reader.detach();  // it may sit in read() at a fatal error; on a normal end it has returned
    progress_.update(0, 0, source_.total());
    while (!input_done_ || !items_.empty()) {
      for (auto& e : events_->take(wake_up())) handle(e);
      flush_pending(input_done_ || Clock::now() - pending_since_ >= kLinger);
      progress_.update(finished_, failed_, source_.total());
      // Once a turn, not once an item: output reaches a pipe or file while it comes, in
      // writes as large as the load makes them.
      std::fflush(stdout);
    }
    reader_done_.acquire();
    progress_.finish();
    std::fflush(stdout);
    if (failed_ == 0) return 0;
    std::string summary =
        std::to_string(failed_) + " of " + std::to_string(finished_) + " items failed";
    if (timed_out_ > 0) summary += " (" + std::to_string(timed_out_) + " timed out)";
    std::fprintf(stderr, "dpool: %s\n", summary.c_str());
    return 1;
  }

 private:
  void read_input() {
    for (;;) {
      slots_.acquire();
      std::optional<InputItem> item;
      try {
        item = source_.next();
      } catch (const std::exception& e) {
        events_->push(Event{Event::kReadError, {}, e.what()});
        return;
      }
      if (!item) {
        events_->push(Event{Event::kEnd});
        reader_done_.release();
        return;
      }
      events_->push(Event{Event::kItem, std::move(*item)});
    }
  }

  void handle(Event& e) {
    switch (e.kind) {
      case Event::kItem:
        add(e.item);
        break;
      case Event::kEnd:
        input_done_ = true;
        break;
      case Event::kReadError:
        fatal(e.message);
      case Event::kDone:
        finished(e.chunk, std::move(e.result));
        break;
    }
  }

  /* When the main thread must look again though nothing arrives: a partial chunk's linger, a
   * progress bar to keep current. */
  std::optional<Clock::time_point> wake_up() const {
    std::optional<Clock::time_point> at;
    if (!pending_.empty()) at = pending_since_ + kLinger;
    if (progress_.enabled()) {
      const auto tick = Clock::now() + kProgressTick;
      if (!at || tick < *at) at = tick;
    }
    return at;
  }

  void add(const InputItem& input) {
    const std::size_t index = count_++;
    Item& item = items_[index];
    item.text = input.text();
    item.args = pack_exec_args(command_.expand(input), options_.timeout);
    queue(index);
  }

  /* Puts an item (new, or to run again) in the next chunk. */
  void queue(std::size_t index) {
    if (pending_.empty()) pending_since_ = Clock::now();
    pending_.push_back(index);
  }

  /* Sends the full chunks, and with `all` the last partial one too. */
  void flush_pending(bool all) {
    while (pending_.size() >= options_.chunksize || (all && !pending_.empty())) {
      const auto n = std::min(pending_.size(), options_.chunksize);
      std::vector<std::size_t> chunk(pending_.begin(),
                                     pending_.begin() + static_cast<std::ptrdiff_t>(n));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
      submit(std::move(chunk));
    }
  }

  /* One item is a plain exec task; several are a chunk of exec calls. */
  void submit(std::vector<std::size_t> chunk) {
    const auto id = ++chunks_sent_;
    std::string args;
    TaskOptions task;
    static_cast<TaskPolicy&>(task) = options_.policy;
    if (chunk.size() == 1) {
      args = items_.at(chunk[0]).args;
    } else {
      msgpack::sbuffer buffer;
      msgpack::packer<msgpack::sbuffer>(buffer).pack_array(
          static_cast<std::uint32_t>(chunk.size()));
      for (auto index : chunk)
        buffer.write(items_.at(index).args.data(), items_.at(index).args.size());
      args.assign(buffer.data(), buffer.size());
      task.items = static_cast<std::uint32_t>(chunk.size());
    }
    chunks_.emplace(id, std::move(chunk));
    // The completion holds the queue itself, not the runner, which it may outlive.
    client_.submit("exec", std::move(args), [events = events_, id](TaskResult&& r) {
      Event e{Event::kDone};
      e.chunk = id;
      e.result = std::move(r);
      events->push(std::move(e));
    }, task);
  }

  void finished(std::uint64_t id, TaskResult r) {
    auto it = chunks_.find(id);
    if (it == chunks_.end()) return;
    const auto chunk = std::move(it->second);
    chunks_.erase(it);
    auto outcomes = outcomes_of(r, chunk.size());
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      outcomes[i].host = r.meta.host;
      retry_or_finish(chunk[i], std::move(outcomes[i]));
    }
  }

  /* One outcome per item of a task: its own, or the whole task's failure. */
  std::vector<ExecOutcome> outcomes_of(const TaskResult& r, std::size_t count) {
    switch (r.meta.status) {
      case Status::kOk:
        break;
      case Status::kUnreachable:
        fatal("lost the broker at " + broker_ + ": " + r.meta.error_message);
      case Status::kRejected:
        fatal("the broker refused exec: " + r.meta.error_type + ": " + r.meta.error_message);
      case Status::kCancelled:
        return std::vector<ExecOutcome>(count,
                                        failed_outcome("Cancelled", r.meta.error_message, r.meta));
      case Status::kError:
      case Status::kLost:
      case Status::kTimeout:
      case Status::kReturned:
        return std::vector<ExecOutcome>(
            count, failed_outcome(r.meta.error_type, r.meta.error_message, r.meta));
    }
    try {
      auto handle = unpack_in_place(r.value);
      if (count == 1) return {decode_exec(handle.get(), options_.timeout)};
      return decode_exec_chunk(handle.get(), count, r.meta, options_.timeout);
    } catch (const std::exception& e) {
      return std::vector<ExecOutcome>(
          count, failed_outcome("Malformed",
                                std::string("exec returned a malformed result (") + e.what() + ")",
                                r.meta));
    }
  }

  void retry_or_finish(std::size_t index, ExecOutcome o) {
    Item& item = items_.at(index);
    if (!o.ok && item.attempt < options_.retries) {
      ++item.attempt;
      queue(index);
      return;
    }
    o.text = std::move(item.text);
    items_.erase(index);
    ++finished_;
    if (!o.ok) ++failed_;
    if (o.timed_out) ++timed_out_;
    if (options_.unordered) {
      print(o);
      return;
    }
    done_.emplace(index, std::move(o));
    for (auto it = done_.find(next_); it != done_.end(); it = done_.find(next_)) {
      print(it->second);
      done_.erase(it);
      ++next_;
    }
  }

  void print(const ExecOutcome& o) {
    progress_.clear();  // the bar shares the terminal: nothing is written across it
    if (options_.json) {
      write_all(stdout, json_line(o));
    } else {
      write_all(stdout, o.out);
      const auto err = stderr_text(o);
      if (!err.empty()) {
        std::fflush(stdout);  // keep the two streams in step for a person reading both
        write_all(stderr, err);
      }
    }
    slots_.release();
  }

  [[noreturn]] void fatal(const std::string& message) {
    progress_.clear();
    die(message);
  }

  const MapOptions& options_;
  Client& client_;
  std::string broker_;
  ItemSource& source_;
  const CommandTemplate& command_;
  Progress progress_;
  std::shared_ptr<Events> events_ = std::make_shared<Events>();
  std::counting_semaphore<> slots_;
  std::binary_semaphore reader_done_{0};
  bool input_done_ = false;
  std::map<std::size_t, Item> items_;    // read and not finished, by input index
  std::deque<std::size_t> pending_;      // items waiting to be sent, in the next chunk
  Clock::time_point pending_since_;      // when the first of them began to wait
  std::unordered_map<std::uint64_t, std::vector<std::size_t>> chunks_;  // sent, by our id
  std::uint64_t chunks_sent_ = 0;
  std::map<std::size_t, ExecOutcome> done_;  // finished, waiting for earlier ones to be printed
  std::size_t next_ = 0;                 // the next index to print (in order)
  std::size_t count_ = 0;
  std::size_t finished_ = 0, failed_ = 0, timed_out_ = 0;
};

detail::EmbeddedOptions embedded_options(std::size_t processes) {
  detail::EmbeddedOptions o;
  o.processes = processes;
  o.log_level = "error";  // the command's own output is what the user reads
  return o;
}

int run_map(const MapOptions& options) {
  auto line = split_command_line(options.command);
  if (line.command.empty() || line.command[0].empty())
    throw Error(Errc::kUsage, "map needs a command to run, after --");
  // Opening the input starts no thread: the embedded cluster below forks.
  auto source = open_input(line);
  const CommandTemplate command(line.command, source->sources());
  if (line.groups.empty() && ::isatty(STDIN_FILENO) == 1) {
    // Most likely a forgotten pipe or :::, which would look like a hang.
    std::fprintf(stderr,
                 "dpool: reading the items from the terminal, one a line (Ctrl-D ends them)\n");
  }

  ClientConfig config;
  std::string broker =
      options.local ? std::string() : resolve_client_config(options.broker, config);
  std::unique_ptr<detail::EmbeddedCluster> cluster;
  if (broker.empty()) {
    std::size_t processes = options.local.value_or(0);
    if (processes == 0) processes = std::max(1u, std::thread::hardware_concurrency());
    cluster = std::make_unique<detail::EmbeddedCluster>(
        embedded_options(processes));  // forks: before any thread of ours
    config.broker = cluster->endpoint();
    config.curve = {};  // the embedded broker listens on loopback, without CURVE
  } else {
    config.broker = broker;
  }
  config.window = static_cast<std::uint32_t>(std::max<std::size_t>(options.window, 1));
  if (!options.on_full.empty())
    config.on_full =
        options.on_full == "error" ? ClientConfig::OnFull::kError : ClientConfig::OnFull::kWait;
  Client client(config);
  if (!client.wait_connected(config.connect_timeout)) {
    throw Error(Errc::kUnreachable,
                "cannot reach the broker at " + (broker.empty() ? config.broker : broker) +
                    " (no answer within " + seconds_text(config.connect_timeout) + ")" +
                    (broker.empty() ? std::string() : unreachable_hint(config.curve)));
  }
  // On a cluster, commands run only where a worker allows them: say so instead of waiting.
  if (!broker.empty())
    require_worker_for(client, "exec", "start dpool-worker with --allow-exec to run commands");
  Runner runner(options, client, broker.empty() ? config.broker : broker, *source, command);
  return runner.run();
}

}  // namespace

Command add_map(CLI::App& parent) {
  auto options = std::make_shared<MapOptions>();
  auto* cmd = parent.add_subcommand("map",
                                    "runs COMMAND once per item on the workers: items are the "
                                    "lines of stdin, or the values after ::: ({} is the item)");
  auto* broker_opt = cmd->add_option(
      "--broker", options->broker,
      "broker address (default: $DPOOL_BROKER, the config file, else a local cluster)");
  cmd->add_option("--local", options->local, "run on a local cluster of N worker processes")
      ->transform(count_validator({1, 4096}))
      ->excludes(broker_opt);
  cmd->add_flag("--unordered", options->unordered,
                "print results as they finish, not in input order");
  cmd->add_option("--timeout", options->timeout,
                  "fail an item that runs longer than this many seconds (from its start)")
      ->check(seconds_validator(limits::kCommandTimeoutMs));
  cmd->add_option("--retries", options->retries, "run a failed item again, up to N times")
      ->transform(count_validator({0, 1000}));
  cmd->add_flag("--json", options->json, "print one JSON object per item instead of its output");
  add_policy_options(*cmd, options->policy, false);
  cmd->add_option("--window", options->window,
                  "items read and not yet printed, at most (default 1000)")
      ->transform(count_validator({1, 1000000}));
  cmd->add_option(
         "--on-full", options->on_full,
         "when the broker holds as many of this client's tasks as it allows: wait for room, "
         "or fail the item (default: the config file's on_full, else wait)")
      ->check(CLI::IsMember({"wait", "error"}));
  cmd->add_option("--chunksize", options->chunksize,
                  "items sent to a worker in one task (default 1)")
      ->transform(count_validator({1, 10000}));
  auto* progress = cmd->add_flag("--progress", options->progress,
                                 "show a progress bar on stderr (default: when it is a terminal)");
  cmd->add_flag("--no-progress", options->no_progress, "never show a progress bar")
      ->excludes(progress);
  // Only the command's first word is CLI11's: it would read a later argument like "[a,b]" as a
  // list. The rest is taken as typed from what the parser leaves over (a prefix command).
  cmd->prefix_command();
  auto first = std::make_shared<std::string>();
  cmd->add_option(
         "command", *first,
         "the command and its arguments, after --; then ::: and the items, if not on stdin")
      ->required();
  return {cmd, [options, first, cmd] {
            options->command = command_words("map", *first, cmd->remaining());
            return run_map(*options);
          }};
}

}  // namespace dpool::cli
