/* Ids, host names and clock helpers (see util.hpp). */
#include "dpool/util.hpp"

#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <random>

namespace dpool {

std::uint64_t random_u64() {
  // Reseeded after fork: a forked child must not repeat its parent's ids.
  thread_local std::mt19937_64 gen;
  thread_local pid_t seeded_for = 0;
  if (seeded_for != ::getpid()) {
    std::random_device rd;
    gen.seed((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
    seeded_for = ::getpid();
  }
  std::uint64_t v = 0;
  while (v == 0) v = gen();
  return v;
}

std::string make_peer_id(char role) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id{role, '-'};
  for (int half = 0; half < 2; ++half) {
    auto v = random_u64();
    for (int i = 0; i < 16; ++i, v >>= 4) id.push_back(kHex[v & 15]);
  }
  return id;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::chrono::milliseconds until(Clock::time_point t, std::chrono::milliseconds cap) {
  // Rounded up: a poll that wakes before `t` finds nothing due and sleeps again, one more
  // wake-up for the same timer (2.9 ms truncated to 2 cost two on every held batch).
  const auto d = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now());
  return std::clamp(d, std::chrono::milliseconds(0), cap);
}

void keep_payload_memory() noexcept {
#ifdef __GLIBC__
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

void release_free_memory() noexcept {
#ifdef __GLIBC__
  ::malloc_trim(0);
#endif
}

}  // namespace dpool
