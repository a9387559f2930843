/* Logging for every dpool process: one spdlog logger of dpool's own, on stderr, one line an
 * event, prefixed with the role and pid so that the interleaved output of a broker and its
 * workers stays readable. It never touches spdlog's default logger, so a program that uses
 * dpool as a library keeps its own logging (and its stdout) to itself. */
#pragma once

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

/* A routing id or other peer-supplied bytes made safe to print (hex for non-printables). */
[[nodiscard]] std::string printable(std::string_view bytes);

template <class... A> void debug(spdlog::format_string_t<A...> f, A&&... a) { logger().debug(f, std::forward<A>(a)...); }
template <class... A> void info(spdlog::format_string_t<A...> f, A&&... a) { logger().info(f, std::forward<A>(a)...); }
template <class... A> void warn(spdlog::format_string_t<A...> f, A&&... a) { logger().warn(f, std::forward<A>(a)...); }
template <class... A> void error(spdlog::format_string_t<A...> f, A&&... a) { logger().error(f, std::forward<A>(a)...); }

}  // namespace dpool::log
