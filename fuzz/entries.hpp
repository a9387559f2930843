/* The fuzz targets' entry functions, one per decoder family, shared by two drivers:
 *
 *   - libFuzzer (fuzz/libfuzzer_main.cpp, built with clang and -DDPOOL_FUZZ=ON), which mutates
 *     inputs to find crashes, leaks, undefined behaviour and input-driven huge allocations;
 *   - the ordinary test suite (tests/test_fuzz_regressions.cpp, any compiler, any sanitizer),
 *     which replays the seed corpus and every input a fuzzer once crashed on.
 *
 * Keeping the entries as plain functions is what lets a crash found by the fuzzer stay fixed:
 * the regression test runs exactly the code the fuzzer ran. Each entry returns 0 (libFuzzer's
 * convention) and aborts only on a broken invariant of ours, never on bad input.
 *
 * seed_inputs() makes the valid inputs each corpus starts from, from the same wire structs and
 * config tables the product uses, so seeds follow the protocol as it changes.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dpool::fuzz {

/* A whole multipart message as a role receives it (see fuzz_message.cpp for the input layout). */
int fuzz_message(const std::uint8_t* data, std::size_t size);
/* The supervisor <-> child stream framing, fed in chunks of sizes the input chooses. */
int fuzz_link(const std::uint8_t* data, std::size_t size);
/* The YAML config loaders of the broker, a worker and a client, from one text. */
int fuzz_config(const std::uint8_t* data, std::size_t size);
/* Task arguments and results as a worker and a client unpack them, for a few typical types. */
int fuzz_args(const std::uint8_t* data, std::size_t size);

using Entry = int (*)(const std::uint8_t*, std::size_t);

struct Target {
  std::string_view name;  // also the folder of its corpus: fuzz/corpus/<name>/
  Entry entry;
};

/* Every target, in the order scripts/fuzz.sh runs them. */
const std::vector<Target>& targets();

/* Valid inputs for `target` (its name), each a starting point for the fuzzer. */
std::vector<std::string> seed_inputs(std::string_view target);

}  // namespace dpool::fuzz
