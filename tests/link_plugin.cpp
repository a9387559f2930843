/* Tasks that abuse their worker process's link to the supervisor, loaded into dpool-worker by
 * tests/test_worker_link.cpp: user code can reach any descriptor of its process, and the
 * supervisor must survive whatever it writes there, or its closing the link.
 *
 * The link is found as the process's one AF_UNIX stream socket (the zygote leaves a child no
 * other), which keeps these tasks free of the worker's internals. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "dpool/worker.hpp"

namespace {

int link_fd() {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(entry.path().filename().string());
    struct stat st {};
    int domain = 0, type = 0;
    socklen_t size = sizeof(int);
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &size) != 0 || domain != AF_UNIX) continue;
    size = sizeof(int);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) == 0 && type == SOCK_STREAM) return fd;
  }
  throw std::runtime_error("no link to the supervisor in this process");
}

/* Writes `bytes` to the link, then naps `millis` (so the task is still running when the
 * supervisor acts) and returns this process's pid. */
int link_write(const std::string& bytes, int millis) {
  const int fd = link_fd();
  if (::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    throw std::runtime_error("short write to the link");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return static_cast<int>(::getpid());
}
DPOOL_TASK(link_write);

/* Closes the link, then naps `millis`. */
int link_close(int millis) {
  ::close(link_fd());
  std::this_thread::sleep_for(std::chrono::milliseconds(millis));
  return static_cast<int>(::getpid());
}
DPOOL_TASK(link_close);

/* The size of what it got, and as much back: payloads both ways. */
std::string sized(std::uint64_t size, const std::string& in) {
  if (in.size() != size) throw std::runtime_error("got " + std::to_string(in.size()) + " octets");
  return std::string(in.rbegin(), in.rend());
}
DPOOL_TASK(sized);

}  // namespace
