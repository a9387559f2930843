/* Logging for every dpool process: spdlog to stderr, one line an event, prefixed with the
 * role and pid so that the interleaved output of a broker and its workers stays readable. */
#pragma once

#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace dpool::log {

/* Names this process in log lines ("broker", "worker", "client") and sets the level from
 * `level` ("trace".."off"); an unknown level name throws dpool::Error(kConfig). */
void init(std::string_view role, std::string_view level = "info");

/* A routing id or other peer-supplied bytes made safe to print (hex for non-printables). */
[[nodiscard]] std::string printable(std::string_view bytes);

template <class... A> void debug(spdlog::format_string_t<A...> f, A&&... a) { spdlog::debug(f, std::forward<A>(a)...); }
template <class... A> void info(spdlog::format_string_t<A...> f, A&&... a) { spdlog::info(f, std::forward<A>(a)...); }
template <class... A> void warn(spdlog::format_string_t<A...> f, A&&... a) { spdlog::warn(f, std::forward<A>(a)...); }
template <class... A> void error(spdlog::format_string_t<A...> f, A&&... a) { spdlog::error(f, std::forward<A>(a)...); }

}  // namespace dpool::log
