/* Small helpers every process needs: ids, host names, clocks. */
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dpool {

using Clock = std::chrono::steady_clock;

/* A random 64-bit number from the OS entropy source (never 0). */
[[nodiscard]] std::uint64_t random_u64();

/* A routing id for a peer: 16 random bytes as 32 hex characters, "c-" or "w-" prefixed. */
[[nodiscard]] std::string make_peer_id(char role);

/* This host's name, as gethostname reports it. */
[[nodiscard]] std::string host_name();

/* For the processes that carry payloads (the broker, a worker host and its children), not for
 * a user's program: glibc serves each allocation over 128 KiB (or its dynamic threshold) with
 * a fresh mmap and gives it back when freed, so every 16 MiB argument or result was faulted in
 * page by page and zeroed again, about a third of W6's CPU (bench/). Up to 32 MiB now comes
 * from the heap and up to 256 MiB of free heap is kept; release_free_memory() hands it back
 * once the process is idle. */
void keep_payload_memory() noexcept;
void release_free_memory() noexcept;

/* Milliseconds until `t`, clamped to [0, cap], as the int that zmq::poll wants. */
[[nodiscard]] std::chrono::milliseconds until(Clock::time_point t, std::chrono::milliseconds cap);

}  // namespace dpool
