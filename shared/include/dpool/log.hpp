/* Logging for every dpool process: one spdlog logger of dpool's own, on stderr, one line an
 * event, prefixed with the role and pid so that the interleaved output of a broker and its
 * workers stays readable. It never touches spdlog's default logger, so a program that uses
 * dpool as a library keeps its own logging (and its stdout) to itself. */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace dpool::log {

/* Names this process in log lines ("broker", "worker", "client") and sets the level from
 * `level` ("trace".."off"); an unknown level name throws dpool::Error(kConfig). */
void init(std::string_view role, std::string_view level = "info");

/* dpool's logger (stderr, level warn until init() says otherwise). */
spdlog::logger& logger();

/* A routing id or other peer-supplied bytes made safe to print (hex for non-printables), and
 * cut after 256 octets with their size said: a peer's text must neither start a log line of
 * its own nor make one line of it a megabyte long. */
[[nodiscard]] std::string printable(std::string_view bytes);

/* Lets at most `per_second` lines of one kind through each second; the rest are only counted,
 * and the next line let through says how many (`skipped`). For events a peer can cause as fast
 * as it can send, so that the peer does not set the log's pace. Not thread-safe: one per loop. */
class Budget {
 public:
  explicit Budget(std::uint32_t per_second) : per_second_(per_second) {}
  /* True when a line may be logged now; `skipped` is then the number refused since the last. */
  [[nodiscard]] bool allow(std::uint64_t& skipped);

 private:
  std::uint32_t per_second_;
  std::int64_t second_ = 0;
  std::uint32_t used_ = 0;
  std::uint64_t skipped_ = 0;
};

template <class... A>
void debug(spdlog::format_string_t<A...> f, A&&... a) {
  logger().debug(f, std::forward<A>(a)...);
}
template <class... A>
void info(spdlog::format_string_t<A...> f, A&&... a) {
  logger().info(f, std::forward<A>(a)...);
}
template <class... A>
void warn(spdlog::format_string_t<A...> f, A&&... a) {
  logger().warn(f, std::forward<A>(a)...);
}
template <class... A>
void error(spdlog::format_string_t<A...> f, A&&... a) {
  logger().error(f, std::forward<A>(a)...);
}

}  // namespace dpool::log
