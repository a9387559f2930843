/* dpool map -- COMMAND ARG...: each line of stdin runs COMMAND (the `exec` built-in) on a worker.
 *
 * Three threads: a reader that takes lines from stdin as the window allows, the client's I/O
 * thread whose completions only queue events, and this thread, which submits, retries, times
 * out and prints. At most `window` items are read and not yet printed, so memory stays bounded
 * whatever the length of the input; in order mode the slowest item holds the printing back,
 * not the running. */
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "../embedded.hpp"
#include "dpool/client.hpp"
#include "json.hpp"

namespace dpool::cli {
namespace {

using Clock = std::chrono::steady_clock;

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

/* Something for the main thread: a line read, the end of the input, or a task's result. */
struct Event {
  enum Kind { kLine, kEnd, kReadError, kDone } kind = kLine;
  std::string line;
  std::size_t index = 0;
  unsigned attempt = 0;
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
  std::string line;
  unsigned attempt = 0;  // 0 for the first run, n for the n-th retry
  std::uint64_t task = 0;
  Clock::time_point started;      // of the first run
  std::optional<Clock::time_point> deadline;
  bool timed_out = false;         // cancelled for running too long; the result is awaited
};

struct Outcome {
  std::string line;
  bool ok = false;
  std::optional<int> exit_code;  // none when the command never ran to an end
  int signal = 0;
  std::string out, err;
  std::string error;             // a failure that is not the command's: timeout, lost worker
  std::string host;
  double seconds = 0;
};

/* The line as a prefix for messages: cut when it is long. */
std::string label(const std::string& line) {
  constexpr std::size_t kMax = 80;
  if (line.size() <= kMax) return line;
  return line.substr(0, kMax) + "...";
}

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
  Runner(const MapOptions& options, Client& client, std::string broker)
      : options_(options), client_(client), broker_(std::move(broker)),
        slots_(static_cast<std::ptrdiff_t>(options.window)) {
    for (const auto& arg : options_.command) {
      if (arg.find("{}") != std::string::npos) placeholder_ = true;
    }
  }

  int run() {
    std::thread reader([this] { read_input(); });
    reader.detach();  // it may sit in read() at a fatal error; on a normal end it has returned
    bool input_done = false;
    while (!input_done || !items_.empty()) {
      for (auto& e : events_->take(next_deadline())) {
        switch (e.kind) {
          case Event::kLine:
            start(std::move(e.line));
            break;
          case Event::kEnd:
            input_done = true;
            break;
          case Event::kReadError:
            die("cannot read stdin: " + e.line);
          case Event::kDone:
            finished(e.index, e.attempt, std::move(e.result));
            break;
        }
      }
      check_deadlines();
    }
    reader_done_.acquire();
    std::fflush(stdout);
    if (failed_ > 0) {
      std::fprintf(stderr, "dpool: %zu of %zu items failed\n", failed_, count_);
      return 1;
    }
    return 0;
  }

 private:
  void read_input() {
    std::ios::sync_with_stdio(false);
    std::string line;
    for (;;) {
      slots_.acquire();
      if (!std::getline(std::cin, line)) {
        if (std::cin.bad()) events_->push(Event{Event::kReadError, std::strerror(errno)});
        else events_->push(Event{Event::kEnd});
        reader_done_.release();
        return;
      }
      if (!line.empty() && line.back() == '\r') line.pop_back();
      events_->push(Event{Event::kLine, std::move(line)});
      line = {};
    }
  }

  std::string args_for(const std::string& line) const {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> packer(buffer);
    packer.pack_array(static_cast<std::uint32_t>(options_.command.size() + (placeholder_ ? 0 : 1)));
    for (const auto& arg : options_.command) {
      if (!placeholder_) {
        packer.pack(arg);
        continue;
      }
      std::string replaced;
      std::size_t from = 0;
      for (auto at = arg.find("{}"); at != std::string::npos; at = arg.find("{}", from)) {
        replaced.append(arg, from, at - from).append(line);
        from = at + 2;
      }
      replaced.append(arg, from);
      packer.pack(replaced);
    }
    if (!placeholder_) packer.pack(line);
    return std::string(buffer.data(), buffer.size());
  }

  void start(std::string line) {
    const std::size_t index = count_++;
    Item& item = items_[index];
    item.line = std::move(line);
    item.started = Clock::now();
    submit(index, item);
  }

  void submit(std::size_t index, Item& item) {
    item.timed_out = false;
    item.deadline.reset();
    if (options_.timeout) {
      item.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*options_.timeout));
    }
    const unsigned attempt = item.attempt;
    // The completion holds the queue itself, not the runner: a task given up on (timed out,
    // its cancel unconfirmed) may still complete after the runner is gone.
    item.task = client_.submit("exec", args_for(item.line), [events = events_, index, attempt](TaskResult&& r) {
      Event e{Event::kDone};
      e.index = index;
      e.attempt = attempt;
      e.result = std::move(r);
      events->push(std::move(e));
    });
  }

  std::optional<Clock::time_point> next_deadline() const {
    std::optional<Clock::time_point> next;
    for (const auto& [index, item] : items_) {
      if (item.deadline && (!next || *item.deadline < *next)) next = item.deadline;
    }
    return next;
  }

  /* Items past their time limit are cancelled; one whose cancellation is not confirmed within
   * a grace period is given up on (its late result is ignored). */
  void check_deadlines() {
    if (!options_.timeout) return;
    const auto now = Clock::now();
    std::vector<std::size_t> given_up;
    for (auto& [index, item] : items_) {
      if (!item.deadline || *item.deadline > now) continue;
      if (!item.timed_out) {
        item.timed_out = true;
        item.deadline = now + std::chrono::seconds(10);
        client_.cancel({item.task});
      } else {
        given_up.push_back(index);
      }
    }
    for (auto index : given_up) {
      Outcome o;
      o.error = "timed out after " + seconds_text(std::chrono::duration<double>(*options_.timeout));
      retry_or_finish(index, std::move(o));
    }
  }

  void finished(std::size_t index, unsigned attempt, TaskResult r) {
    auto it = items_.find(index);
    if (it == items_.end() || it->second.attempt != attempt) return;  // a run given up on
    Item& item = it->second;
    Outcome o;
    o.host = r.meta.host;
    switch (r.meta.status) {
      case Status::kOk:
        try {
          auto handle = msgpack::unpack(static_cast<const char*>(r.value.data()), r.value.size());
          const auto& m = handle.get();
          if (m.type != msgpack::type::MAP) throw std::runtime_error("not a map");
          for (std::uint32_t i = 0; i < m.via.map.size; ++i) {
            const auto key = m.via.map.ptr[i].key.as<std::string>();
            const auto& val = m.via.map.ptr[i].val;
            if (key == "exit_code") o.exit_code = val.as<int>();
            else if (key == "signal") o.signal = val.as<int>();
            else if (key == "stdout") o.out = val.as<std::string>();
            else if (key == "stderr") o.err = val.as<std::string>();
          }
          if (!o.exit_code) throw std::runtime_error("no exit_code");
          o.ok = *o.exit_code == 0 && o.signal == 0;
        } catch (const std::exception& e) {
          o.error = std::string("exec returned a malformed result (") + e.what() + ")";
        }
        break;
      case Status::kCancelled:
        o.error = item.timed_out ? "timed out after " + seconds_text(std::chrono::duration<double>(*options_.timeout))
                                 : "cancelled: " + r.meta.error_message;
        break;
      case Status::kUnreachable:
        die("lost the broker at " + broker_ + ": " + r.meta.error_message);
      case Status::kRejected:
        die("the broker refused exec: " + r.meta.error_type + ": " + r.meta.error_message);
      case Status::kError:
      case Status::kLost:
      case Status::kTimeout:
        o.error = r.meta.error_type + ": " + r.meta.error_message;
        if (!r.meta.host.empty()) o.error += " (on " + r.meta.host + " pid " + std::to_string(r.meta.pid) + ")";
        break;
    }
    retry_or_finish(index, std::move(o));
  }

  void retry_or_finish(std::size_t index, Outcome o) {
    Item& item = items_.at(index);
    if (!o.ok && item.attempt < options_.retries) {
      ++item.attempt;
      submit(index, item);
      return;
    }
    o.line = std::move(item.line);
    o.seconds = std::chrono::duration<double>(Clock::now() - item.started).count();
    items_.erase(index);
    if (!o.ok) ++failed_;
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

  void print(const Outcome& o) {
    if (options_.json) {
      nlohmann::json j;
      j["item"] = o.line;
      j["exit_code"] = o.exit_code ? nlohmann::json(*o.exit_code) : nlohmann::json(nullptr);
      j["stdout"] = o.out;
      j["stderr"] = o.err;
      j["host"] = o.host;
      j["seconds"] = o.seconds;
      if (o.signal) j["signal"] = o.signal;
      if (!o.error.empty()) j["error"] = o.error;
      write_all(stdout, dump_line(j) + "\n");
    } else {
      write_all(stdout, o.out);
      const auto prefix = label(o.line) + ": ";
      std::string err;
      std::size_t from = 0;
      while (from < o.err.size()) {
        auto nl = o.err.find('\n', from);
        if (nl == std::string::npos) nl = o.err.size();
        err.append(prefix).append(o.err, from, nl - from).append("\n");
        from = nl + 1;
      }
      if (!o.ok) {
        if (!o.error.empty()) err.append(prefix).append("dpool: ").append(o.error).append("\n");
        else if (o.signal) err.append(prefix).append("dpool: killed by signal " + std::to_string(o.signal) + "\n");
        else if (o.err.empty()) err.append(prefix).append("dpool: exit code " + std::to_string(*o.exit_code) + "\n");
      }
      if (!err.empty()) {
        std::fflush(stdout);  // keep the two streams in step for a person reading both
        write_all(stderr, err);
      }
    }
    slots_.release();
  }

  const MapOptions& options_;
  Client& client_;
  std::string broker_;
  bool placeholder_ = false;
  std::shared_ptr<Events> events_ = std::make_shared<Events>();
  std::counting_semaphore<> slots_;
  std::binary_semaphore reader_done_{0};
  std::map<std::size_t, Item> items_;    // running, by input index
  std::map<std::size_t, Outcome> done_;  // finished, waiting for earlier ones to be printed
  std::size_t next_ = 0;                 // the next index to print (in order)
  std::size_t count_ = 0;
  std::size_t failed_ = 0;
};

detail::EmbeddedOptions embedded_options(std::size_t processes) {
  detail::EmbeddedOptions o;
  o.processes = processes;
  o.log_level = "error";  // the command's own output is what the user reads
  return o;
}

int run_map(const MapOptions& options) {
  if (options.command.empty() || options.command[0].empty()) throw Error(Errc::kUsage, "map needs a command to run, after --");
  ClientConfig config;
  std::string broker = options.local ? std::string() : resolve_client_config(options.broker, config);
  std::unique_ptr<detail::EmbeddedCluster> cluster;
  if (broker.empty()) {
    std::size_t processes = options.local.value_or(0);
    if (processes == 0) processes = std::max(1u, std::thread::hardware_concurrency());
    cluster = std::make_unique<detail::EmbeddedCluster>(embedded_options(processes));  // forks: before any thread of ours
    config.broker = cluster->endpoint();
  } else {
    config.broker = broker;
  }
  config.window = static_cast<std::uint32_t>(std::max<std::size_t>(options.window, 1));
  Client client(config);
  if (!client.wait_connected(config.connect_timeout)) {
    throw Error(Errc::kUnreachable, "cannot reach the broker at " + (broker.empty() ? config.broker : broker) +
                                        " (no answer within " + seconds_text(config.connect_timeout) + ")");
  }
  Runner runner(options, client, broker.empty() ? config.broker : broker);
  return runner.run();
}

}  // namespace

Command add_map(CLI::App& parent) {
  auto options = std::make_shared<MapOptions>();
  auto* cmd = parent.add_subcommand("map", "runs COMMAND once per line of stdin on the workers ({} is the line)");
  auto* broker_opt = cmd->add_option("--broker", options->broker, "broker address (default: $DPOOL_BROKER, the config file, else a local cluster)");
  cmd->add_option("--local", options->local, "run on a local cluster of N worker processes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->excludes(broker_opt);
  cmd->add_flag("--unordered", options->unordered, "print results as they finish, not in input order");
  cmd->add_option("--timeout", options->timeout, "fail an item that runs longer than this many seconds")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--retries", options->retries, "run a failed item again, up to N times")
      ->check(CLI::Range(0u, 1000u));
  cmd->add_flag("--json", options->json, "print one JSON object per item instead of its output");
  cmd->add_option("--window", options->window, "items in flight at most (default 1000)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  cmd->add_option("command", options->command, "the command and its arguments, after --")->required();
  return {cmd, [options] { return run_map(*options); }};
}

}  // namespace dpool::cli
