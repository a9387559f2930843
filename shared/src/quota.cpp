/* The per-client limits' check and messages (see quota.hpp). A task that can never fit (its
 * payload alone is over a limit) is told apart from one that only has to wait, because a
 * client that waits for room must not wait for that one forever.
 */
#include "dpool/quota.hpp"

namespace dpool {

std::string with_commas(std::uint64_t n) {
  auto digits = std::to_string(n);
  for (auto i = static_cast<std::ptrdiff_t>(digits.size()) - 3; i > 0; i -= 3)
    digits.insert(static_cast<std::size_t>(i), ",");
  return digits;
}

std::optional<QuotaRefusal> check_quota(const Quota& quota, const QuotaUse& use, std::uint64_t size,
                                        const std::string& whose) {
  if (quota.max_message > 0 && size > quota.max_message) {
    return QuotaRefusal{kTaskTooLarge, "task too large: its arguments of " + with_commas(size) +
                                           " bytes exceed the broker's largest message (" +
                                           with_commas(quota.max_message) +
                                           " bytes, max_message_size)"};
  }
  if (quota.max_bytes > 0 && size > quota.max_bytes) {
    return QuotaRefusal{kTaskTooLarge, "task too large: its arguments of " + with_commas(size) +
                                           " bytes exceed the broker's limit of " +
                                           with_commas(quota.max_bytes) +
                                           " bytes per client (max_bytes_per_client)"};
  }
  if (quota.max_tasks > 0 && use.tasks >= quota.max_tasks) {
    return QuotaRefusal{kQueueFull, "queue full: the broker holds " + with_commas(use.tasks) +
                                        " tasks of " + whose + " (its limit per client is " +
                                        with_commas(quota.max_tasks) + ", max_tasks_per_client)"};
  }
  if (quota.max_bytes > 0 && use.bytes + size > quota.max_bytes) {
    return QuotaRefusal{kQueueFull, "queue full: the broker holds " + with_commas(use.bytes) +
                                        " bytes of " + whose + "'s tasks and results, and " +
                                        with_commas(size) + " more would pass its limit of " +
                                        with_commas(quota.max_bytes) +
                                        " bytes per client (max_bytes_per_client)"};
  }
  return std::nullopt;
}

}  // namespace dpool
