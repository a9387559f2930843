/* StderrTail (see stderr_tail.hpp). */
#include "stderr_tail.hpp"

#include <algorithm>

namespace dpool::detail {

void StderrTail::append(std::string_view bytes) {
  if (bytes.size() >= kMaxBytes) {
    // Only the end of a large write can reach the tail.
    cut_ = cut_ || !buffer_.empty() || bytes.size() > kMaxBytes;
    buffer_.assign(bytes.substr(bytes.size() - kMaxBytes));
    return;
  }
  buffer_.append(bytes);
  if (buffer_.size() > 2 * kMaxBytes) {
    buffer_.erase(0, buffer_.size() - kMaxBytes);
    cut_ = true;
  }
}

std::string StderrTail::text() const {
  std::string_view s = buffer_;
  bool partial = cut_;
  if (s.size() > kMaxBytes) {
    partial = partial || s[s.size() - kMaxBytes - 1] != '\n';
    s = s.substr(s.size() - kMaxBytes);
  }
  if (partial) {
    // The first line lost its beginning: drop it, unless it is all there is.
    const auto nl = s.find('\n');
    if (nl != std::string_view::npos && nl + 1 < s.size()) s = s.substr(nl + 1);
  }
  // Keep the last kMaxLines lines; a final newline ends the last line, it does not start one.
  std::size_t lines = 0;
  const std::size_t body_end = !s.empty() && s.back() == '\n' ? s.size() - 1 : s.size();
  for (std::size_t i = body_end; i-- > 0;) {
    if (s[i] == '\n' && ++lines == kMaxLines) {
      s = s.substr(i + 1);
      break;
    }
  }
  return std::string(s);
}

}  // namespace dpool::detail
