/* spdlog set-up shared by all dpool processes (see log.hpp). */
#include "dpool/log.hpp"

#include <unistd.h>

#include <spdlog/sinks/stdout_sinks.h>

#include "dpool/error.hpp"

namespace dpool::log {

namespace {

std::shared_ptr<spdlog::logger> make_logger(const std::string& role) {
  // Unregistered (not in spdlog's registry): nothing of the host program's logging is touched.
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("dpool", std::move(sink));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e " + role + "[%P] %^%l%$ %v");
  return logger;
}

std::shared_ptr<spdlog::logger>& current() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = make_logger("dpool");
    l->set_level(spdlog::level::warn);
    return l;
  }();
  return logger;
}

}  // namespace

void init(std::string_view role, std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    throw Error(Errc::kConfig, "unknown log level '" + std::string(level) +
                                   "' (use trace, debug, info, warn, error or off)");
  }
  auto logger = make_logger(std::string(role));
  logger->set_level(parsed);
  current() = std::move(logger);
}

spdlog::logger& logger() { return *current(); }

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
