/* A progress bar on one line of a terminal, for commands that wait on many tasks (dpool map,
 * dpool wait).
 *
 * The bar is drawn in place with \r and erased with an ANSI erase-line, at most ten times a
 * second however often update() is called, so that a caller can simply call it after every
 * event. It shares the terminal with the caller's own output: any line the caller writes must
 * come after clear() (which erases the bar; the next update() draws it again), and stdout is
 * flushed before each drawing so that output already written lands above the bar, not on it.
 *
 * The rate is measured over about the last ten seconds, not since the start, so that the ETA
 * follows a run whose speed changes (and the start-up of a cluster does not weigh on it for
 * long). The text is built by a pure function (text()) so that it can be checked without a
 * terminal.
 *
 * Thread-compatible: use one Progress from one thread at a time. */
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <deque>
#include <optional>
#include <string>
#include <utility>

namespace dpool::cli {

class Progress {
 public:
  using Clock = std::chrono::steady_clock;

  /* Draws on `out` when `enabled`; a disabled Progress does nothing at all. */
  explicit Progress(bool enabled, std::FILE* out = stderr);
  ~Progress();  // finish()
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /* The state now: items done (failed ones included), failed, and the total when known. */
  void update(std::size_t done, std::size_t failed, std::optional<std::size_t> total);
  /* Erases the bar, if it is shown, so that the caller can write a line. */
  void clear();
  /* Erases the bar for good: later calls do nothing. */
  void finish();

  [[nodiscard]] bool enabled() const { return enabled_; }

  /* Whether to show a bar: as forced (--progress, --no-progress), else when `out` is a terminal. */
  [[nodiscard]] static bool wanted(std::optional<bool> forced, std::FILE* out = stderr);

  /* The bar's text for `width` columns: "[==>  ] 12/40 30% 5.1/s ETA 6s 1 failed", or
   * "12 done 5.1/s 1 failed" without a total. `rate` is items a second, when known. */
  [[nodiscard]] static std::string text(std::size_t done, std::size_t failed,
                                        std::optional<std::size_t> total,
                                        std::optional<double> rate, std::size_t width);

 private:
  [[nodiscard]] std::optional<double> rate(Clock::time_point now, std::size_t done);
  [[nodiscard]] std::size_t width() const;
  void write(const std::string& s);

  bool enabled_;
  std::FILE* out_;
  bool shown_ = false;
  std::string shown_text_;  // what the terminal shows, when shown_
  bool drawn_once_ = false;
  Clock::time_point last_draw_{};
  std::deque<std::pair<Clock::time_point, std::size_t>> samples_;  // (when, done), ~10 s of them
};

}  // namespace dpool::cli
