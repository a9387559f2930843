/* The zygote's two sides (see zygote.hpp). Requests are fixed-size structs carrying one
 * descriptor (SCM_RIGHTS), and events a fixed-size header and the stderr tail, on a
 * SOCK_SEQPACKET socketpair, so each read is one whole message. */
#include "zygote.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "dpool/error.hpp"
#include "stderr_tail.hpp"

namespace dpool::detail {
namespace {

struct Request {
  std::uint32_t slot = 0;
};

struct EventHeader {
  Zygote::Event::Kind kind = Zygote::Event::Kind::kSpawned;
  std::uint32_t slot = 0;
  pid_t pid = -1;
  int status = 0;
  std::uint32_t tail_size = 0;  // bytes of stderr tail after this header
};
constexpr std::size_t kMaxEvent = sizeof(EventHeader) + StderrTail::kMaxBytes;

/* Writes all of `data` to `fd`, giving up on an error: a worker whose stderr is gone keeps
 * running its tasks. */
void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const auto n = ::write(fd, data, size);
    if (n > 0) {
      data += n;
      size -= static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 1000) <= 0) return;
    } else if (!(n < 0 && errno == EINTR)) {
      return;
    }
  }
}

class ZygoteLoop {
 public:
  ZygoteLoop(int fd, const Zygote::ChildMain& child_main) : fd_(fd), child_main_(child_main) {
    sigemptyset(&chld_);
    sigaddset(&chld_, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld_, nullptr);
    sfd_ = ::signalfd(-1, &chld_, SFD_CLOEXEC | SFD_NONBLOCK);
    // A closed stderr must not kill the zygote: the children get the disposition back.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &saved_pipe_);
  }

  [[noreturn]] void run() {
    std::vector<pollfd> fds;
    std::vector<pid_t> owners;
    for (;;) {
      fds.assign({{fd_, POLLIN, 0}, {sfd_, POLLIN, 0}});
      owners.assign(2, 0);
      for (const auto& [pid, io] : children_) {
        if (io.out < 0) continue;
        fds.push_back({io.out, POLLIN, 0});
        owners.push_back(pid);
      }
      if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) break;
      for (std::size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents) pump(children_[owners[i]]);
      }
      if (fds[1].revents & POLLIN) reap();
      if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) && !take_request()) break;
    }
    for (const auto& [pid, io] : children_)
      ::kill(-pid, SIGKILL);  // each child leads a process group
    for (const auto& [pid, io] : children_) ::waitpid(pid, nullptr, 0);
    std::_Exit(0);
  }

 private:
  struct ChildIo {
    int out = -1;  // the read end of the child's stderr; -1 once at end of file
    StderrTail tail;
  };

  void report(const EventHeader& h, const std::string& tail = {}) {
    char buf[kMaxEvent];
    EventHeader header = h;
    header.tail_size = static_cast<std::uint32_t>(std::min(tail.size(), StderrTail::kMaxBytes));
    std::memcpy(buf, &header, sizeof header);
    std::memcpy(buf + sizeof header, tail.data(), header.tail_size);
    [[maybe_unused]] auto n = ::send(fd_, buf, sizeof header + header.tail_size, MSG_NOSIGNAL);
  }

  /* Copies what the child wrote to our stderr and its tail. */
  void pump(ChildIo& io) {
    char buf[65536];
    for (;;) {
      const auto n = ::read(io.out, buf, sizeof buf);
      if (n > 0) {
        write_all(STDERR_FILENO, buf, static_cast<std::size_t>(n));
        io.tail.append(std::string_view(buf, static_cast<std::size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || errno != EAGAIN) {
        ::close(io.out);
        io.out = -1;
      }
      return;
    }
  }

  void reap() {
    signalfd_siginfo info;
    while (::read(sfd_, &info, sizeof info) > 0) {
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      auto it = children_.find(pid);
      std::string tail;
      if (it != children_.end()) {
        // All the child wrote is in the pipe now: read it before the exit is reported.
        if (it->second.out >= 0) pump(it->second);
        if (it->second.out >= 0) ::close(it->second.out);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) tail = it->second.tail.text();
        children_.erase(it);
      }
      report(EventHeader{Zygote::Event::Kind::kExited, 0, pid, status}, tail);
    }
  }

  /* Returns false when the supervisor is gone. */
  bool take_request() {
    Request req;
    int link = -1;
    const auto n = receive_request(req, link);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return false;
    if (n != static_cast<ssize_t>(sizeof req)) {
      if (link >= 0) ::close(link);
      return true;
    }
    if (link < 0) {
      report(EventHeader{Zygote::Event::Kind::kFailed, req.slot, -1, EBADF});
      return true;
    }
    spawn(req, link);
    ::close(link);  // the child's now: no later child may inherit it
    return true;
  }

  /* One request and the descriptor that comes with it (close-on-exec), -1 if none came. */
  ssize_t receive_request(Request& req, int& link) {
    iovec iov{&req, sizeof req};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    header.msg_control = control;
    header.msg_controllen = sizeof control;
    const auto n = ::recvmsg(fd_, &header, MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    for (cmsghdr* c = CMSG_FIRSTHDR(&header); c; c = CMSG_NXTHDR(&header, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
          c->cmsg_len == CMSG_LEN(sizeof(int))) {
        std::memcpy(&link, CMSG_DATA(c), sizeof link);
      }
    }
    return n;
  }

  void spawn(const Request& req, int link) {
    int err[2] = {-1, -1};
    // Without a pipe the child still runs, writing to our stderr directly (no tail).
    const bool piped = ::pipe2(err, O_CLOEXEC) == 0;
    const pid_t pid = ::fork();
    if (pid == 0) child(req, link, piped ? err[1] : -1);
    if (piped) ::close(err[1]);
    if (pid < 0) {
      const int why = errno;
      if (piped) ::close(err[0]);
      report(EventHeader{Zygote::Event::Kind::kFailed, req.slot, -1, why});
      return;
    }
    // Each child leads a process group (the child says so too: whichever runs first wins the
    // race), so that killing the group also kills the commands its tasks started.
    ::setpgid(pid, pid);
    ChildIo io;
    if (piped) {
      ::fcntl(err[0], F_SETFL, ::fcntl(err[0], F_GETFL) | O_NONBLOCK);
      io.out = err[0];
    }
    children_[pid] = std::move(io);
    report(EventHeader{Zygote::Event::Kind::kSpawned, req.slot, pid, 0});
  }

  [[noreturn]] void child(const Request& req, int link, int err_write) {
    ::close(fd_);
    ::close(sfd_);
    for (const auto& [pid, io] : children_) {
      if (io.out >= 0) ::close(io.out);  // the other children's pipes are not this one's
    }
    if (err_write >= 0) {
      ::dup2(err_write, STDERR_FILENO);  // dup2 clears close-on-exec: commands inherit it
      ::close(err_write);
    }
    ::setpgid(0, 0);
    ::sigprocmask(SIG_UNBLOCK, &chld_, nullptr);
    ::sigaction(SIGPIPE, &saved_pipe_, nullptr);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    child_main_(req.slot, link);
    std::_Exit(70);
  }

  int fd_;
  int sfd_ = -1;
  const Zygote::ChildMain& child_main_;
  sigset_t chld_;
  struct sigaction saved_pipe_ {};
  std::map<pid_t, ChildIo> children_;
};

[[noreturn]] void zygote_main(int fd, pid_t supervisor, const Zygote::ChildMain& child_main) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != supervisor) std::_Exit(0);
  // Ctrl-C and a SIGTERM sent to the whole process group or cgroup are the supervisor's to
  // handle: it drains, and this process dies with it.
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ZygoteLoop(fd, child_main).run();
}

}  // namespace

Zygote::Zygote(ChildMain child_main) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    throw Error(Errc::kInternal, std::string("socketpair: ") + std::strerror(errno));
  }
  const pid_t supervisor = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw Error(Errc::kInternal, std::string("fork: ") + std::strerror(errno));
  if (pid_ == 0) {
    ::close(pair[0]);
    zygote_main(pair[1], supervisor, child_main);
  }
  ::close(pair[1]);
  fd_ = pair[0];
}

Zygote::~Zygote() {
  if (fd_ >= 0) ::close(fd_);  // the zygote sees end of file, kills its children and exits
  if (pid_ > 0) {
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

void Zygote::spawn(std::size_t slot, int link) {
  Request req;
  req.slot = static_cast<std::uint32_t>(slot);
  iovec iov{&req, sizeof req};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr header{};
  header.msg_iov = &iov;
  header.msg_iovlen = 1;
  header.msg_control = control;
  header.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&header);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &link, sizeof link);
  // A zygote gone is seen by events(); the descriptor in flight is then closed by the kernel.
  [[maybe_unused]] auto n = ::sendmsg(fd_, &header, MSG_NOSIGNAL);
}

std::vector<Zygote::Event> Zygote::events(bool& alive) {
  std::vector<Event> out;
  alive = true;
  char buf[kMaxEvent];
  for (;;) {
    const auto n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n >= static_cast<ssize_t>(sizeof(EventHeader))) {
      EventHeader h;
      std::memcpy(&h, buf, sizeof h);
      Event e{h.kind, h.slot, h.pid, h.status, {}};
      const auto tail = std::min<std::size_t>(h.tail_size, static_cast<std::size_t>(n) - sizeof h);
      e.stderr_tail.assign(buf + sizeof h, tail);
      out.push_back(std::move(e));
      continue;
    }
    if (n > 0) continue;  // not an event of ours: skip it
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      alive = false;
    break;
  }
  return out;
}

}  // namespace dpool::detail
