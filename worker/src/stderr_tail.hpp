/* The last lines a worker child wrote to stderr, kept so that a crash or a time-out can say
 * what the process printed before it died (Outcome::stderr_tail).
 *
 * Bounded whatever the child writes: the buffer keeps at most twice the tail's size and drops
 * the oldest bytes, so a child printing gigabytes costs a few KiB here. Bytes are kept as they
 * came (not decoded); text() cuts at a line start when it can.
 */
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dpool::detail {

class StderrTail {
 public:
  static constexpr std::size_t kMaxBytes = 4096;
  static constexpr std::size_t kMaxLines = 20;

  void append(std::string_view bytes);
  /* The last kMaxLines lines, at most kMaxBytes, starting at a line start unless a single
   * line is longer than that. */
  [[nodiscard]] std::string text() const;

 private:
  std::string buffer_;
  bool cut_ = false;  // bytes before buffer_ were dropped
};

}  // namespace dpool::detail
