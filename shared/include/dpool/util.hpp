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

/* Milliseconds until `t`, clamped to [0, cap], as the int that zmq::poll wants. */
[[nodiscard]] std::chrono::milliseconds until(Clock::time_point t, std::chrono::milliseconds cap);

}  // namespace dpool
