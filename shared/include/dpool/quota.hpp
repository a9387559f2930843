/* What the broker holds for one client at most, and the words for a task refused over it.
 *
 * The broker bounds what each client session (and each detached job) makes it hold: tasks it
 * holds and has not finished, plus results it keeps until they are ACKed, counted in number
 * and in payload bytes (docs/protocol.md, "Per-client limits"). It tells a client its limits
 * in every HEARTBEAT, so the client keeps within them by itself; the broker still checks every
 * task, for clients that do not (older ones, buggy ones, hostile ones).
 *
 * The check and its message live here, in one place, so that a task refused by the client
 * (on_full: error) and one refused by the broker say the same thing in the same words.
 */
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace dpool {

/* A client's limits as the broker announces them; 0 means no limit (or an older broker). */
struct Quota {
  std::uint64_t max_tasks = 0;    // tasks held + results not yet ACKed
  std::uint64_t max_bytes = 0;    // payload bytes of those
  std::uint64_t max_message = 0;  // the broker's ZMQ_MAXMSGSIZE: one frame, at most
};

/* What a client holds at the broker now. */
struct QuotaUse {
  std::uint64_t tasks = 0;
  std::uint64_t bytes = 0;
};

/* The error_type of a task refused for a client's limits; a client that waits (on_full: wait)
 * takes a refusal of this type as "try again once room frees up", never as the task's end. */
inline constexpr const char* kQueueFull = "QueueFull";
/* The error_type of a task that could never fit, however long it waited. */
inline constexpr const char* kTaskTooLarge = "TaskTooLarge";

struct QuotaRefusal {
  std::string type;  // kQueueFull or kTaskTooLarge
  std::string message;
};

/* Why one more task of `size` payload bytes does not fit beside `use` under `quota`, or
 * nullopt when it fits. `whose` names the holder in the message ("this client", "job j-1"). */
[[nodiscard]] std::optional<QuotaRefusal> check_quota(const Quota& quota, const QuotaUse& use,
                                                      std::uint64_t size, const std::string& whose);

/* 1234567 as "1,234,567": limits are read by people. */
[[nodiscard]] std::string with_commas(std::uint64_t n);

}  // namespace dpool
