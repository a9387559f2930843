/* The progress bar (progress.hpp).
 *
 * The terminal's width is asked for at every drawing (at most ten a second), so that a
 * resized window gets a fitting bar without a SIGWINCH handler; the bar is always one column
 * short of the width, since writing the last column makes some terminals wrap. */
#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace dpool::cli {
namespace {

constexpr auto kRedraw = std::chrono::milliseconds(100);
constexpr auto kRateWindow = std::chrono::seconds(10);
constexpr auto kRateMinimum = std::chrono::seconds(1);  // a rate over less is mostly noise
constexpr std::size_t kDefaultWidth = 80;
constexpr std::size_t kMaxBar = 40, kMinBar = 10;
constexpr const char* kErase = "\r\033[K";

std::string duration_text(double seconds) {
  const auto s = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  return buf;
}

std::string rate_text(double rate) {
  char buf[32];
  std::snprintf(buf, sizeof buf, rate < 10 ? "%.1f/s" : "%.0f/s", rate);
  return buf;
}

/* "[=====>    ]" of `width` columns for `fraction` done. */
std::string bar(double fraction, std::size_t width) {
  const std::size_t inner = width - 2;
  const auto full =
      std::min(inner, static_cast<std::size_t>(fraction * static_cast<double>(inner)));
  std::string s = "[" + std::string(full, '=');
  if (full < inner) s += '>';
  s.resize(width - 1, ' ');
  return s + "]";
}

}  // namespace

Progress::Progress(bool enabled, std::FILE* out) : enabled_(enabled), out_(out) {
  samples_.emplace_back(Clock::now(), 0);
}

Progress::~Progress() { finish(); }

bool Progress::wanted(std::optional<bool> forced, std::FILE* out) {
  if (forced) return *forced;
  return ::isatty(::fileno(out)) == 1;
}

void Progress::update(std::size_t done, std::size_t failed, std::optional<std::size_t> total) {
  if (!enabled_) return;
  const auto now = Clock::now();
  if (drawn_once_ && now - last_draw_ < kRedraw) return;
  drawn_once_ = true;
  last_draw_ = now;
  auto line = text(done, failed, total, rate(now, done), width());
  if (shown_ && line == shown_text_) return;
  // Output the caller already wrote to stdout goes above the bar, not into it.
  if (out_ != stdout) std::fflush(stdout);
  write("\r" + line + "\033[K");
  shown_text_ = std::move(line);
  shown_ = true;
}

void Progress::clear() {
  if (!shown_) return;
  write(kErase);
  shown_ = false;
}

void Progress::finish() {
  clear();
  enabled_ = false;
}

std::optional<double> Progress::rate(Clock::time_point now, std::size_t done) {
  samples_.emplace_back(now, done);
  while (samples_.size() > 2 && now - samples_[1].first >= kRateWindow) samples_.pop_front();
  const auto& [since, done_then] = samples_.front();
  if (now - since < kRateMinimum) return std::nullopt;
  return static_cast<double>(done - done_then) / std::chrono::duration<double>(now - since).count();
}

std::size_t Progress::width() const {
  winsize ws{};
  if (::ioctl(::fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return kDefaultWidth;
}

void Progress::write(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), out_);
  std::fflush(out_);
}

std::string Progress::text(std::size_t done, std::size_t failed, std::optional<std::size_t> total,
                           std::optional<double> rate, std::size_t width) {
  std::string counts, tail;
  std::optional<double> fraction;
  if (total) {
    counts = std::to_string(done) + "/" + std::to_string(*total);
    fraction =
        *total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(*total));
    counts += " " + std::to_string(static_cast<int>(*fraction * 100)) + "%";
  } else {
    counts = std::to_string(done) + " done";
  }
  if (rate) tail += " " + rate_text(*rate);
  if (rate && *rate > 0 && total && *total > done) {
    tail += " ETA " + duration_text(static_cast<double>(*total - done) / *rate);
  }
  if (failed > 0) tail += " " + std::to_string(failed) + " failed";
  std::string line = counts + tail;
  const std::size_t room = width > 1 ? width - 1 : 0;  // the last column may wrap
  if (fraction && line.size() + 1 + kMinBar <= room) {
    line = bar(*fraction, std::min(kMaxBar, room - line.size() - 1)) + " " + line;
  }
  if (line.size() > room) line.resize(room);
  return line;
}

}  // namespace dpool::cli
