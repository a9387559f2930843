/* spdlog set-up shared by all dpool processes (see log.hpp). */
#include "dpool/log.hpp"

#include <unistd.h>

#include <spdlog/sinks/stdout_sinks.h>

#include "dpool/error.hpp"

namespace dpool::log {

void init(std::string_view role, std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    throw Error(Errc::kConfig, "unknown log level '" + std::string(level) +
                                   "' (use trace, debug, info, warn, error or off)");
  }
  const auto name = "dpool-" + std::string(role) + "-" + std::to_string(::getpid());
  spdlog::drop(name);
  auto logger = spdlog::stderr_logger_mt(name);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e " + std::string(role) + "[%P] %^%l%$ %v");
  logger->set_level(parsed);
  spdlog::set_default_logger(std::move(logger));
}

std::string printable(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  bool plain = !bytes.empty();
  for (unsigned char c : bytes) plain = plain && c >= 0x21 && c < 0x7f;
  if (plain) return std::string(bytes);
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

}  // namespace dpool::log
