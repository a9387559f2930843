/* How config.cpp's fields and the CLI's flag transforms judge a value against its Limits.
 *
 * One wording for both: a key in a file and the flag that overrides it say the same thing
 * about the same bad value ("must be at most 4096, got 5000"), so these live in one place
 * that both sides call.
 */
#pragma once

#include <functional>
#include <string>

#include "dpool/config.hpp"

namespace dpool::detail {

inline constexpr const char* kDurationForm = "a duration like 500ms, 2s, 5m or 24h";
inline constexpr const char* kSizeForm = "a size like 512MiB, 2G or 300MB, or a number of bytes";

/* What is wrong with `value` for `limits`, or "" when it fits; `show` writes a value as the
 * user would (a count, "2s", "512MiB"). */
[[nodiscard]] std::string out_of(long long value, Limits limits,
                                 const std::function<std::string(long long)>& show);

[[nodiscard]] std::string show_count(long long n);
[[nodiscard]] std::string show_ms(long long ms);
[[nodiscard]] std::string show_size(long long bytes);

}  // namespace dpool::detail
