/* The built-in tasks every worker offers: echo, sleep, and exec (only where allowed).
 *
 * exec runs a command without a shell (argv as given), dying with the task process, captures
 * stdout and stderr through pipes read with poll() so that neither can fill and block the
 * child, and returns {exit_code, signal, stdout, stderr, seconds}. Output beyond kMaxCapture
 * per stream is cut, with a note, rather than exhausting the worker's memory.
 *
 * Its arguments may start with a map of options: {"timeout": seconds} limits the run, counted
 * from the command's start here (not from its submission, which a caller cannot see past the
 * queue). Past it the command's whole process group gets SIGTERM, then SIGKILL after kGrace,
 * and the result says "timed_out": true; the task process itself is not touched, so the rest
 * of a chunk and later tasks run on.
 *
 * A command that can be stopped alone needs a process group of its own, and that takes it out
 * of the task process's group, through which the supervisor kills whatever a task started when
 * it cancels or loses the task. So such a command's group is led by a keeper: a small process
 * forked first, which waits on a socket whose other end only the task process holds, and kills
 * the group when that socket ends without a word (the task process died). Without a time limit
 * nothing needs stopping alone: the command stays in the task process's group and costs one
 * fork, as before.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "builtins.hpp"
#include "dpool/config.hpp"
#include "dpool/task.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kMaxCapture = 64u << 20;

void echo(const msgpack::object& args, msgpack::sbuffer& out) {
  // One argument comes back as itself, several as the array.
  if (args.type == msgpack::type::ARRAY && args.via.array.size == 1)
    msgpack::pack(out, args.via.array.ptr[0]);
  else msgpack::pack(out, args);
}

double sleep_for(double seconds) {
  if (!(seconds >= 0) || seconds > 7 * 86400)
    throw ArgumentError("sleep takes 0 to 604800 seconds");
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return seconds;
}

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
constexpr Deadline kNever = Deadline::max();

// Between the SIGTERM and the SIGKILL of a timed-out command's group.
constexpr auto kGrace = std::chrono::seconds(2);
// Longer limits are refused: past this a time point could overflow, and nobody means it.
constexpr double kMaxTimeout = static_cast<double>(limits::kCommandTimeoutMs.max) / 1000;

struct ExecRequest {
  std::vector<std::string> argv;
  std::optional<std::chrono::duration<double>> timeout;
};

double number_of(const msgpack::object& o, const std::string& what) {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER:
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return o.as<double>();
    default:
      throw ArgumentError("exec: " + what + " must be a number");
  }
}

void read_options(const msgpack::object& map, ExecRequest& r) {
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& [key, value] = map.via.map.ptr[i];
    const auto name = key.type == msgpack::type::STR ? key.as<std::string>() : std::string("?");
    if (name != "timeout")
      throw ArgumentError("exec: unknown option '" + name + "' (known: timeout)");
    if (value.is_nil()) continue;
    const double seconds = number_of(value, "the timeout");
    if (!(seconds > 0 && seconds <= kMaxTimeout))
      throw ArgumentError("exec: the timeout must be above 0 and at most 1e7 seconds");
    r.timeout = std::chrono::duration<double>(seconds);
  }
}

/* [options?, command, arg...]: an args array whose first element is a string is the plain form. */
ExecRequest parse_request(const msgpack::object& args) {
  if (args.type != msgpack::type::ARRAY)
    throw ArgumentError("exec takes the command and its arguments as strings");
  ExecRequest r;
  std::uint32_t first = 0;
  if (args.via.array.size > 0 && args.via.array.ptr[0].type == msgpack::type::MAP) {
    read_options(args.via.array.ptr[0], r);
    first = 1;
  }
  for (std::uint32_t i = first; i < args.via.array.size; ++i) {
    const auto& a = args.via.array.ptr[i];
    if (a.type != msgpack::type::STR && a.type != msgpack::type::BIN)
      throw ArgumentError("exec takes the command and its arguments as strings");
    r.argv.push_back(a.as<std::string>());
    // execvp would end the word at the NUL and run the command on what came before it.
    if (r.argv.back().find('\0') != std::string::npos) {
      throw ArgumentError(
          r.argv.size() == 1 ? "exec: the command holds a NUL byte, which no command name can carry"
                             : "exec: argument " + std::to_string(r.argv.size() - 1) +
                                   " holds a NUL byte, which no command argument can carry");
    }
  }
  if (r.argv.empty() || r.argv[0].empty()) throw ArgumentError("exec needs a command to run");
  return r;
}

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (::pipe2(fd, O_CLOEXEC) != 0)
      throw Error(Errc::kInternal, std::string("pipe: ") + std::strerror(errno));
  }
  ~Pipe() {
    for (int f : fd) if (f >= 0) ::close(f);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void close_end(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
};

/* The keeper of a command's process group (see the top of this file). It runs only
 * async-signal-safe calls: the task process has ZeroMQ's threads. */
[[noreturn]] void keep(int lifeline, int lifeline_write) {
  ::setpgid(0, 0);
  ::close(lifeline_write);
  ::dup2(lifeline, STDIN_FILENO);
  // Nothing of the task process's stays open here, its output pipes least of all.
  if (::close_range(3, ~0u, 0) != 0) {
    for (int fd = 3; fd < 4096; ++fd) ::close(fd);
  }
  ::signal(SIGTERM, SIG_IGN);  // a timeout's SIGTERM is for the command; its SIGKILL ends this too
  char word = 0;
  ssize_t n = 0;
  while ((n = ::read(STDIN_FILENO, &word, 1)) < 0 && errno == EINTR) {
  }
  if (n != 1) ::kill(0, SIGKILL);  // the task process is gone: so is everything it started
  ::_exit(0);
}

/* What the command's process needs before it becomes the command. */
struct CommandStart {
  char** argv;
  const Pipe* out;
  const Pipe* err;
  pid_t parent;
  pid_t group;  // > 0: the keeper's group to join
};

/* Why execvp failed, as the end of a line after the command's name. Fixed strings: strerror
 * is not async-signal-safe. */
const char* exec_failure(int e) {
  switch (e) {
    case ENOENT:
      return ": command not found\n";
    case EACCES:
      return ": cannot run the command: permission denied\n";
    case E2BIG:
      // An item longer than this, appended as an argument, lands here (dpool map).
      return ": cannot run the command: its arguments are too long (Linux takes at most 128 KiB "
             "an argument)\n";
    case ENOEXEC:
      return ": cannot run the command: not an executable this system can run\n";
    case ENOMEM:
      return ": cannot run the command: out of memory\n";
    default:
      return ": cannot run the command\n";
  }
}

/* The command's process until execvp. It shares the task process's memory (start_command), so
 * only system calls and async-signal-safe functions, on its own stack, and no return. */
[[noreturn]] int become_command(void* start_ptr) {
  const auto& start = *static_cast<const CommandStart*>(start_ptr);
  char** argv = start.argv;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != start.parent) ::_exit(127);
  if (start.group > 0) ::setpgid(0, start.group);
  // The task process's handlers, ignored signals and mask are its own, not the command's:
  // handlers reset first, so that a signal let through by the mask meets the default.
  for (int sig : {SIGINT, SIGTERM, SIGPIPE}) ::signal(sig, SIG_DFL);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const int devnull = ::open("/dev/null", O_RDONLY);
  if (devnull >= 0) ::dup2(devnull, 0);
  ::dup2(start.out->fd[1], 1);
  ::dup2(start.err->fd[1], 2);
  ::execvp(argv[0], argv);
  const int e = errno;
  // A short note the parent reads as stderr: the command could not start, and why.
  const char* what = exec_failure(e);
  [[maybe_unused]] auto n1 = ::write(2, argv[0], std::strlen(argv[0]));
  [[maybe_unused]] auto n2 = ::write(2, what, std::strlen(what));
  ::_exit(e == ENOENT ? 127 : 126);
}

int poll_timeout(Deadline deadline) {
  if (deadline == kNever) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60000));
}

/* One run of a command: started by the constructor, reaped (with its keeper) by the destructor
 * whatever happens in between. */
class CommandRun {
 public:
  CommandRun(std::vector<std::string>& argv, bool own_group) {
    for (auto& a : argv) argv_.push_back(a.data());
    argv_.push_back(nullptr);
    if (own_group) start_keeper();
    start_command();
  }

  ~CommandRun() {
    if (pid_ > 0 && !reaped_) {
      kill_all();
      reap(kNever);
    }
    release_keeper();
  }

  CommandRun(const CommandRun&) = delete;
  CommandRun& operator=(const CommandRun&) = delete;

  /* Reads the output and waits for the exit; false if `deadline` passed first. */
  bool wait(Deadline deadline) {
    if (pid_ <= 0) return true;
    return capture(deadline) && reap(deadline);
  }

  /* Ends the command's whole group: SIGTERM, then SIGKILL after the grace. */
  void stop() {
    signal_group(SIGTERM);
    wait(Clock::now() + kGrace);
    kill_all();
    // Only a process that left the group can hold the pipes now: its output is not waited for.
    if (!wait(Clock::now() + kGrace)) {
      reading_[0] = reading_[1] = -1;
      reap(kNever);
    }
  }

  void pack(msgpack::sbuffer& out, bool timed_out, double seconds) {
    for (auto* b : {&out_text_, &err_text_}) {
      if (b->size() >= kMaxCapture) b->append("\n[dpool: output cut at 64 MiB]\n");
    }
    int exit_code = pid_ > 0 && WIFEXITED(status_) ? WEXITSTATUS(status_) : 127;
    const int signal = pid_ > 0 && WIFSIGNALED(status_) ? WTERMSIG(status_) : 0;
    if (signal) exit_code = 128 + signal;
    msgpack::packer<msgpack::sbuffer> pk(out);
    pk.pack_map(timed_out ? 6 : 5);
    pk.pack("exit_code");
    pk.pack(exit_code);
    pk.pack("signal");
    pk.pack(signal);
    pk.pack("stdout");
    pk.pack(out_text_);
    pk.pack("stderr");
    pk.pack(err_text_);
    pk.pack("seconds");
    pk.pack(seconds);
    if (timed_out) {
      pk.pack("timed_out");
      pk.pack(true);
    }
  }

 private:
  // The lifeline is a socket pair rather than a pipe: a word sent to a keeper already killed
  // with its group (MSG_NOSIGNAL) must not raise SIGPIPE in the task process.
  void start_keeper() {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
      throw Error(Errc::kInternal, std::string("exec: socketpair: ") + std::strerror(errno));
    }
    const pid_t pid = ::fork();
    if (pid == 0) keep(ends[0], ends[1]);
    const int e = errno;
    ::close(ends[0]);
    if (pid < 0) {
      ::close(ends[1]);
      throw Error(Errc::kInternal, std::string("exec: cannot fork: ") + std::strerror(e));
    }
    ::setpgid(pid, pid);  // the keeper does it too: whichever runs first, the group exists below
    keeper_ = pid;
    lifeline_ = ends[1];
  }

  // As posix_spawn does it (a process sharing our memory, on a stack of its own, while this
  // one waits for its exec), which copies no page table: a fork of the task process, with its
  // libraries and heap, cost more than running `true` itself. Not posix_spawn, for the calls in
  // between: the command dies with the task process (PR_SET_PDEATHSIG).
  void start_command() {
    CommandStart start{argv_.data(), &out_, &err_, ::getpid(), keeper_};
    constexpr std::size_t kStack = 256u << 10;
    const auto stack = std::make_unique<char[]>(kStack);
    // No signal handler of ours may run on the command's side before its exec.
    sigset_t all, before;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &before);
    pid_ = ::clone(become_command, stack.get() + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &start);
    const int e = errno;
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    if (pid_ < 0) {
      err_text_ = std::string(argv_[0]) + ": cannot start: " + std::strerror(e) + "\n";
      return;
    }
    if (keeper_ > 0) ::setpgid(pid_, keeper_);  // as the child does: no window outside the group
    out_.close_end(1);
    err_.close_end(1);
    reading_[0] = out_.fd[0];
    reading_[1] = err_.fd[0];
  }

  /* Reads both pipes until both end; false if `deadline` passed first. */
  bool capture(Deadline deadline) {
    std::string* bufs[2] = {&out_text_, &err_text_};
    char chunk[65536];
    while (reading_[0] >= 0 || reading_[1] >= 0) {
      if (Clock::now() >= deadline) return false;  // checked even while output pours in
      pollfd fds[2] = {{reading_[0], POLLIN, 0}, {reading_[1], POLLIN, 0}};  // poll skips fd -1
      const int ready = ::poll(fds, 2, poll_timeout(deadline));
      if (ready < 0 && errno != EINTR) return true;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const auto n = ::read(fds[i].fd, chunk, sizeof chunk);
        if (n > 0) {
          if (bufs[i]->size() < kMaxCapture) bufs[i]->append(chunk, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          reading_[i] = -1;
        }
      }
    }
    return true;
  }

  /* Waits for the command's exit; false if `deadline` passed first. */
  bool reap(Deadline deadline) {
    while (!reaped_) {
      const pid_t r = ::waitpid(pid_, &status_, deadline == kNever ? 0 : WNOHANG);
      if (r == pid_ || (r < 0 && errno != EINTR)) {
        reaped_ = true;
      } else if (r == 0) {
        // Rare: the command closed its output and runs on. Checked every few milliseconds.
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    return true;
  }

  void signal_group(int sig) const {
    if (keeper_ > 0) ::kill(-keeper_, sig);
    else if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
  }

  void kill_all() const {
    signal_group(SIGKILL);
    if (pid_ > 0 && !reaped_) ::kill(pid_, SIGKILL);  // even one that left the group
  }

  /* Tells the keeper the run ended here (a word, then the end of the pipe) and reaps it. A
   * keeper killed with the group is only reaped. */
  void release_keeper() {
    if (keeper_ <= 0) return;
    const char word = 1;
    while (::send(lifeline_, &word, 1, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    ::close(lifeline_);
    while (::waitpid(keeper_, nullptr, 0) < 0 && errno == EINTR) {
    }
    keeper_ = -1;
  }

  std::vector<char*> argv_;
  Pipe out_, err_;
  int reading_[2] = {-1, -1};  // the pipes' read ends until their end of file; -1 after
  pid_t pid_ = -1;
  pid_t keeper_ = -1;  // the group's leader and id; -1: the command is in the task process's group
  int lifeline_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  std::string out_text_, err_text_;
};

void exec(const msgpack::object& args, msgpack::sbuffer& out) {
  auto request = parse_request(args);
  const auto start = Clock::now();
  CommandRun run(request.argv, request.timeout.has_value());
  Deadline deadline = kNever;
  if (request.timeout)
    deadline = start + std::chrono::duration_cast<Clock::duration>(*request.timeout);
  const bool timed_out = !run.wait(deadline);
  if (timed_out) run.stop();
  run.pack(out, timed_out, std::chrono::duration<double>(Clock::now() - start).count());
}
}  // namespace

void register_builtins(bool allow_exec) {
  register_raw_task("echo", echo, "echo(any...)");
  ::dpool::register_task("sleep", &sleep_for);
  if (allow_exec) register_raw_task("exec", exec, "exec([{timeout}], std::string...)");
  else unregister_task("exec");
}

}  // namespace dpool::detail
