/* The libFuzzer driver of one target: DPOOL_FUZZ_ENTRY names its entry function (entries.hpp),
 * set per executable by fuzz/CMakeLists.txt, so the four fuzzers share this one file and the
 * regression test links the same entries without libFuzzer. */
#include <cstddef>
#include <cstdint>

#include "dpool/log.hpp"
#include "entries.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Dropped messages are logged (rate-limited); at millions of inputs that is only noise.
  dpool::log::init("fuzz", "off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return DPOOL_FUZZ_ENTRY(data, size);
}
