/* The built-in tasks every worker offers: echo, sleep, and exec (only where allowed).
 *
 * exec runs a command without a shell (argv as given), dying with the task process, captures stdout and stderr through
 * pipes read with poll() so that neither can fill and block the child, and returns
 * {exit_code, signal, stdout, stderr}. Output beyond kMaxCapture per stream is cut, with a
 * note, rather than exhausting the worker's memory.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "builtins.hpp"
#include "dpool/task.hpp"

namespace dpool::detail {
namespace {

constexpr std::size_t kMaxCapture = 64u << 20;

void echo(const msgpack::object& args, msgpack::sbuffer& out) {
  // One argument comes back as itself, several as the array.
  if (args.type == msgpack::type::ARRAY && args.via.array.size == 1) msgpack::pack(out, args.via.array.ptr[0]);
  else msgpack::pack(out, args);
}

double sleep_for(double seconds) {
  if (!(seconds >= 0) || seconds > 7 * 86400) throw ArgumentError("sleep takes 0 to 604800 seconds");
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return seconds;
}

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (::pipe2(fd, O_CLOEXEC) != 0) throw Error(Errc::kInternal, std::string("pipe: ") + std::strerror(errno));
  }
  ~Pipe() {
    for (int f : fd) if (f >= 0) ::close(f);
  }
  void close_end(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
};

/* Reads both pipes until both reach end of file. */
void capture(int out_fd, int err_fd, std::string& out, std::string& err) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* bufs[2] = {&out, &err};
  int open = 2;
  char chunk[65536];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const auto n = ::read(fds[i].fd, chunk, sizeof chunk);
      if (n > 0) {
        if (bufs[i]->size() < kMaxCapture) bufs[i]->append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open;
      }
    }
  }
  for (auto* b : bufs) {
    if (b->size() >= kMaxCapture) b->append("\n[dpool: output cut at 64 MiB]\n");
  }
}

void exec(const msgpack::object& args, msgpack::sbuffer& out) {
  std::vector<std::string> argv;
  try {
    args.convert(argv);
  } catch (const msgpack::type_error&) {
    throw ArgumentError("exec takes the command and its arguments as strings");
  }
  if (argv.empty() || argv[0].empty()) throw ArgumentError("exec needs a command to run");
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  Pipe out_pipe, err_pipe;
  // fork + exec rather than posix_spawn, for the one call in between: the command dies with
  // the task process, so a task killed for a time limit or a cancel takes its command along.
  // Only async-signal-safe calls run in the child (this process has ZeroMQ's threads).
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  int rc = 0;
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out_pipe.fd[1], 1);
    ::dup2(err_pipe.fd[1], 2);
    ::execvp(cargv[0], cargv.data());
    const int err = errno;
    // A short note the parent reads as stderr: the command could not start.
    const char* what = err == ENOENT ? ": command not found\n" : ": cannot run the command\n";
    [[maybe_unused]] auto n1 = ::write(2, cargv[0], std::strlen(cargv[0]));
    [[maybe_unused]] auto n2 = ::write(2, what, std::strlen(what));
    ::_exit(err == ENOENT ? 127 : 126);
  }
  if (pid < 0) rc = errno;
  out_pipe.close_end(1);
  err_pipe.close_end(1);

  std::string stdout_text, stderr_text;
  int exit_code = 127, signal = 0;
  if (rc != 0) {
    stderr_text = argv[0] + ": cannot start: " + std::strerror(rc) + "\n";
  } else {
    capture(out_pipe.fd[0], err_pipe.fd[0], stdout_text, stderr_text);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) {
      signal = WTERMSIG(status);
      exit_code = 128 + signal;
    }
  }
  msgpack::packer<msgpack::sbuffer> pk(out);
  pk.pack_map(4);
  pk.pack("exit_code");
  pk.pack(exit_code);
  pk.pack("signal");
  pk.pack(signal);
  pk.pack("stdout");
  pk.pack(stdout_text);
  pk.pack("stderr");
  pk.pack(stderr_text);
}

}  // namespace

void register_builtins(bool allow_exec) {
  register_raw_task("echo", echo, "echo(any...)");
  ::dpool::register_task("sleep", &sleep_for);
  if (allow_exec) register_raw_task("exec", exec, "exec(std::string...)");
  else unregister_task("exec");
}

}  // namespace dpool::detail
