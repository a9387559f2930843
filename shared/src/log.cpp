/* spdlog set-up shared by all dpool processes (see log.hpp). */
#include "dpool/log.hpp"

#include <unistd.h>

#include <chrono>

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
  constexpr std::size_t kShown = 256;  // a routing id's most; worker hosts may send a megabyte
  const auto shown = bytes.substr(0, kShown);
  bool plain = !shown.empty();
  for (unsigned char c : shown) plain = plain && c >= 0x21 && c < 0x7f;
  std::string out;
  if (plain) {
    out = shown;
  } else {
    out.reserve(shown.size() * 2);
    for (unsigned char c : shown) {
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (bytes.size() > kShown) out += "...(" + std::to_string(bytes.size()) + " octets)";
  return out;
}

bool Budget::allow(std::uint64_t& skipped) {
  const auto second = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now().time_since_epoch()).count();
  if (second != second_) {
    second_ = second;
    used_ = 0;
  }
  if (used_ >= per_second_) {
    ++skipped_;
    return false;
  }
  ++used_;
  skipped = skipped_;
  skipped_ = 0;
  return true;
}

}  // namespace dpool::log
