/* Durations, sizes and numbers as users write them, in config files and on command lines.
 *
 * parse_* read the text ("2s", "512MiB"), format_* write what parse_* reads back, and the
 * *_flag transforms give CLI11 the same checks and wording as the YAML keys in config.cpp,
 * rewriting the flag's text to the plain number the option stores.
 */
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "config_values.hpp"
#include "dpool/config.hpp"
#include "dpool/error.hpp"

namespace dpool {

namespace detail {

std::string out_of(long long value, Limits limits,
                   const std::function<std::string(long long)>& show) {
  if (value < limits.min) return "must be " + show(limits.min) + " or more, got " + show(value);
  if (value > limits.max) return "must be at most " + show(limits.max) + ", got " + show(value);
  return "";
}

std::string show_count(long long n) { return std::to_string(n); }
std::string show_ms(long long ms) { return format_duration(std::chrono::milliseconds(ms)); }
std::string show_size(long long bytes) { return format_size(static_cast<std::uint64_t>(bytes)); }

}  // namespace detail

using namespace detail;
using std::chrono::milliseconds;

// ---- Durations -----------------------------------------------------------------------

milliseconds parse_duration(std::string_view text) {
  const std::string s(text);
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(s, &used);
  } catch (const std::exception&) {
    throw Error(Errc::kConfig, std::string("expected ") + kDurationForm + ", got '" + s + "'");
  }
  const std::string_view unit = std::string_view(s).substr(used);
  double ms = 0;
  if (unit == "ms") ms = value;
  else if (unit == "s") ms = value * 1e3;
  else if (unit == "m") ms = value * 60e3;
  else if (unit == "h") ms = value * 3600e3;
  else throw Error(Errc::kConfig, "a duration needs a unit (ms, s, m, h), got '" + s + "'");
  if (ms < 0) throw Error(Errc::kConfig, "a duration cannot be negative, got '" + s + "'");
  // Casting an infinite or huge double to an integer count is undefined: refuse it first.
  if (!std::isfinite(ms) || ms > static_cast<double>(limits::kLongestMs)) {
    throw Error(Errc::kConfig,
                "must be at most " + show_ms(limits::kLongestMs) + ", got '" + s + "'");
  }
  return milliseconds(std::llround(ms));
}

std::string format_duration(milliseconds d) {
  const long long ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::function<std::string(std::string&)> duration_flag(Limits limits, bool bare_ms) {
  return [limits, bare_ms](std::string& text) -> std::string {
    const bool bare = !text.empty() && std::all_of(text.begin(), text.end(),
                                                   [](unsigned char c) { return std::isdigit(c); });
    try {
      const auto ms = parse_duration(bare && bare_ms ? text + "ms" : text);
      if (auto wrong = out_of(ms.count(), limits, show_ms); !wrong.empty()) return wrong;
      text = std::to_string(ms.count());
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  };
}

// ---- Sizes ----------------------------------------------------------------------------------

namespace {

/* Bytes per unit, by the unit's lower-case spelling; 0 for an unknown unit. */
std::uint64_t unit_bytes(std::string unit) {
  for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  static const std::map<std::string, std::uint64_t> kUnits{
      {"", 1},           {"b", 1},
      {"k", 1ULL << 10}, {"kib", 1ULL << 10}, {"kb", 1000ULL},
      {"m", 1ULL << 20}, {"mib", 1ULL << 20}, {"mb", 1000ULL * 1000},
      {"g", 1ULL << 30}, {"gib", 1ULL << 30}, {"gb", 1000ULL * 1000 * 1000},
      {"t", 1ULL << 40}, {"tib", 1ULL << 40}, {"tb", 1000ULL * 1000 * 1000 * 1000}};
  const auto it = kUnits.find(unit);
  return it == kUnits.end() ? 0 : it->second;
}

}  // namespace

std::uint64_t parse_size(std::string_view text) {
  const std::string s(text);
  // stod would take "inf", "nan" and hex; a size is digits with at most one point.
  std::size_t used = 0;
  while (used < s.size() && (std::isdigit(static_cast<unsigned char>(s[used])) || s[used] == '.'))
    ++used;
  if (used == 0 || std::count(s.begin(), s.begin() + static_cast<long>(used), '.') > 1) {
    if (!s.empty() && s[0] == '-')
      throw Error(Errc::kConfig, "a size cannot be negative, got '" + s + "'");
    throw Error(Errc::kConfig, std::string("expected ") + kSizeForm + ", got '" + s + "'");
  }
  const double value = std::strtod(s.substr(0, used).c_str(), nullptr);
  std::size_t unit_at = used;
  while (unit_at < s.size() && s[unit_at] == ' ') ++unit_at;
  const std::uint64_t unit = unit_bytes(s.substr(unit_at));
  if (unit == 0)
    throw Error(Errc::kConfig,
                "unknown size unit in '" + s + "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)");
  const double bytes = value * static_cast<double>(unit);
  if (!std::isfinite(bytes) || bytes > static_cast<double>(limits::kLargestSize)) {
    throw Error(Errc::kConfig,
                "must be at most " + show_size(limits::kLargestSize) + ", got '" + s + "'");
  }
  return static_cast<std::uint64_t>(std::llround(bytes));
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == 0) return "0";
  // Binary units first: memory limits are mostly powers of two, and "2GiB" reads better than
  // "2147483648". Only units that parse_size() reads back.
  static const std::pair<std::uint64_t, const char*> kUnits[] = {
      {1ULL << 40, "TiB"},          {1ULL << 30, "GiB"},
      {1ULL << 20, "MiB"},          {1ULL << 10, "KiB"},
      {1'000'000'000'000ULL, "TB"}, {1'000'000'000ULL, "GB"},
      {1'000'000ULL, "MB"},         {1000ULL, "KB"}};
  for (const auto& [unit, name] : kUnits) {
    if (bytes % unit == 0) return std::to_string(bytes / unit) + name;
  }
  return std::to_string(bytes);
}

std::function<std::string(std::string&)> size_flag(Limits limits) {
  return [limits](std::string& text) -> std::string {
    try {
      const auto bytes = parse_size(text);
      if (auto wrong = out_of(static_cast<long long>(bytes), limits, show_size); !wrong.empty())
        return wrong;
      text = std::to_string(bytes);
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  };
}

// ---- Numbers --------------------------------------------------------------------------------

std::function<std::string(std::string&)> count_flag(Limits limits) {
  return [limits](std::string& text) -> std::string {
    long long n = 0;
    const char* end = text.data() + text.size();
    const auto [at, ec] = std::from_chars(text.data(), end, n);
    if (ec == std::errc::result_out_of_range) {
      if (text[0] == '-') return "must be " + show_count(limits.min) + " or more, got " + text;
      return "must be at most " + show_count(limits.max) + ", got " + text;
    }
    if (ec != std::errc{} || at != end) return "expected a whole number, got '" + text + "'";
    if (auto wrong = out_of(n, limits, show_count); !wrong.empty()) return wrong;
    text = std::to_string(n);
    return "";
  };
}

std::function<std::string(std::string&)> seconds_flag(Limits limits) {
  return [limits](std::string& text) -> std::string {
    const bool plain =
        !text.empty() && text.find_first_not_of("0123456789.eE+-") == std::string::npos;
    char* end = nullptr;
    const double s = plain ? std::strtod(text.c_str(), &end) : 0;
    if (!plain || *end != '\0' || !std::isfinite(s)) {
      return "expected a number of seconds like 30 or 2.5, got '" + text + "'";
    }
    const auto show = [](long long ms) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.10g s", static_cast<double>(ms) / 1000);
      return std::string(buf);
    };
    if (s * 1000 < static_cast<double>(limits.min))
      return "must be " + show(limits.min) + " or more, got " + text;
    if (s * 1000 > static_cast<double>(limits.max))
      return "must be at most " + show(limits.max) + ", got " + text;
    return "";
  };
}

}  // namespace dpool
