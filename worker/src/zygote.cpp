/* The zygote's two sides (see zygote.hpp). Messages are fixed-size structs on a
 * SOCK_SEQPACKET socketpair, so each read is one whole message. */
#include "zygote.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "dpool/error.hpp"

namespace dpool::detail {
namespace {

struct Request {
  std::uint32_t slot = 0;
  char endpoint[240] = {};
};

[[noreturn]] void zygote_main(int fd, pid_t supervisor, const Zygote::ChildMain& child_main) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != supervisor) std::_Exit(0);
  ::signal(SIGINT, SIG_IGN);  // Ctrl-C is the supervisor's to handle
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, nullptr);
  const int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  std::set<pid_t> children;
  auto report = [fd](const Zygote::Event& e) { [[maybe_unused]] auto n = ::send(fd, &e, sizeof e, MSG_NOSIGNAL); };
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sfd, &info, sizeof info) > 0) {
      }
      int status = 0;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
        children.erase(pid);
        report(Zygote::Event{Zygote::Event::Kind::kExited, 0, pid, status});
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      Request req;
      const auto n = ::recv(fd, &req, sizeof req, 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;  // the supervisor is gone
      if (n != static_cast<ssize_t>(sizeof req)) continue;
      req.endpoint[sizeof req.endpoint - 1] = '\0';
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(fd);
        ::close(sfd);
        ::setpgid(0, 0);
        ::sigprocmask(SIG_UNBLOCK, &chld, nullptr);
        ::signal(SIGINT, SIG_DFL);
        child_main(req.slot, req.endpoint);
        std::_Exit(70);
      }
      if (pid < 0) {
        report(Zygote::Event{Zygote::Event::Kind::kFailed, req.slot, -1, errno});
      } else {
        // Each child leads a process group (the child says so too: whichever runs first wins
        // the race), so that killing the group also kills the commands its tasks started.
        ::setpgid(pid, pid);
        children.insert(pid);
        report(Zygote::Event{Zygote::Event::Kind::kSpawned, req.slot, pid, 0});
      }
    }
  }
  for (pid_t pid : children) ::kill(-pid, SIGKILL);  // each child leads a process group
  for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
  std::_Exit(0);
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

void Zygote::spawn(std::size_t slot, const std::string& endpoint) {
  Request req;
  req.slot = static_cast<std::uint32_t>(slot);
  std::strncpy(req.endpoint, endpoint.c_str(), sizeof req.endpoint - 1);
  [[maybe_unused]] auto n = ::send(fd_, &req, sizeof req, MSG_NOSIGNAL);
}

std::vector<Zygote::Event> Zygote::events(bool& alive) {
  std::vector<Event> out;
  alive = true;
  for (;;) {
    Event e;
    const auto n = ::recv(fd_, &e, sizeof e, MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(sizeof e)) {
      out.push_back(e);
      continue;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) alive = false;
    break;
  }
  return out;
}

}  // namespace dpool::detail
