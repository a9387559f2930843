/* Values beyond plain YAML scalars, in files and flags alike (config.hpp): sizes with their
 * units (max_memory_per_child) and the worker's drain timeout, and the checks the binaries
 * put on number flags (count_flag, seconds_flag, size_flag), which use the words of the YAML
 * keys' errors. The rest of the loader is in test_config.cpp.
 */
#include <chrono>
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "dpool/config.hpp"
#include "dpool/error.hpp"
#include "support/config_files.hpp"
#include "support/process.hpp"

namespace {

using namespace std::chrono_literals;
using namespace dpool::test;

TEST(Config, SizesTakeBinaryAndDecimalUnitsOrBareBytes) {
  EXPECT_EQ(dpool::parse_size("0"), 0u);
  EXPECT_EQ(dpool::parse_size("1234"), 1234u);
  EXPECT_EQ(dpool::parse_size("100B"), 100u);
  EXPECT_EQ(dpool::parse_size("512MiB"), 512ull << 20);
  EXPECT_EQ(dpool::parse_size("512 MiB"), 512ull << 20);
  EXPECT_EQ(dpool::parse_size("2G"), 2ull << 30);
  EXPECT_EQ(dpool::parse_size("2g"), 2ull << 30);
  EXPECT_EQ(dpool::parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(dpool::parse_size("300MB"), 300'000'000u);
  EXPECT_EQ(dpool::parse_size("300mb"), 300'000'000u);
  EXPECT_EQ(dpool::parse_size("4K"), 4096u);
  EXPECT_EQ(dpool::parse_size("4KB"), 4000u);
  EXPECT_EQ(dpool::parse_size("1.5GiB"), 3ull << 29);
  EXPECT_EQ(dpool::parse_size("1T"), 1ull << 40);
  EXPECT_EQ(dpool::parse_size("2TB"), 2'000'000'000'000u);
}

TEST(Config, BadSizesSayWhatIsWrong) {
  const auto message = [](const char* text) {
    try {
      (void)dpool::parse_size(text);
    } catch (const dpool::Error& e) {
      EXPECT_EQ(e.code(), dpool::Errc::kConfig);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("lots").find("expected a size like 512MiB"), std::string::npos)
      << message("lots");
  EXPECT_NE(message("").find("expected a size"), std::string::npos);
  EXPECT_NE(message("-5M").find("cannot be negative"), std::string::npos) << message("-5M");
  EXPECT_NE(message("5 potatoes").find("unknown size unit in '5 potatoes'"), std::string::npos);
  EXPECT_NE(message("12MiBs").find("unknown size unit"), std::string::npos);
  EXPECT_NE(message("1.2.3M").find("expected a size"), std::string::npos);
  EXPECT_NE(message("inf").find("expected a size"), std::string::npos);
  EXPECT_NE(message("99999999999T").find("must be at most"), std::string::npos)
      << message("99999999999T");
}

TEST(Config, FormatSizeUsesTheLargestWholeUnitAndReadsBack) {
  EXPECT_EQ(dpool::format_size(0), "0");
  EXPECT_EQ(dpool::format_size(512ull << 20), "512MiB");
  EXPECT_EQ(dpool::format_size(2ull << 30), "2GiB");
  EXPECT_EQ(dpool::format_size(1536ull << 20), "1536MiB");
  EXPECT_EQ(dpool::format_size(300'000'000), "300MB");
  EXPECT_EQ(dpool::format_size(4096), "4KiB");
  EXPECT_EQ(dpool::format_size(5000), "5KB");
  EXPECT_EQ(dpool::format_size(1234), "1234");
  for (std::uint64_t bytes : {0ull, 1ull, 999ull, 1024ull, 1000ull, 3ull << 29, 7ull << 40,
                              12'345'678'901ull, 1ull << 60}) {
    EXPECT_EQ(dpool::parse_size(dpool::format_size(bytes)), bytes) << dpool::format_size(bytes);
  }
}

TEST(Config, SizeFlagBecomesBytesOrSaysWhatIsWrong) {
  const auto flag = dpool::size_flag(dpool::limits::kMemoryPerChild);
  std::string text = "1GiB";
  EXPECT_EQ(flag(text), "");
  EXPECT_EQ(text, std::to_string(1ull << 30));
  text = "300MB";
  EXPECT_EQ(flag(text), "");
  EXPECT_EQ(text, "300000000");
  text = "plenty";
  EXPECT_NE(flag(text).find("expected a size"), std::string::npos);
  text = "2000000T";
  EXPECT_NE(flag(text).find("must be at most"), std::string::npos) << flag(text);
}

TEST(Config, CountFlagIsDecimalOrSaysWhatIsWrong) {
  const auto flag = dpool::count_flag({1, 1000});
  std::string text = "010";  // CLI11 alone would read octal 8
  EXPECT_EQ(flag(text), "");
  EXPECT_EQ(text, "10");
  for (std::string bad : {"ten", "1.5", "0x10", "", "5 ", "1e3"}) {
    EXPECT_EQ(flag(bad), "expected a whole number, got '" + bad + "'");
  }
  text = "0";
  EXPECT_EQ(flag(text), "must be 1 or more, got 0");
  text = "-3";
  EXPECT_EQ(flag(text), "must be 1 or more, got -3");
  text = "1001";
  EXPECT_EQ(flag(text), "must be at most 1000, got 1001");
  text = "99999999999999999999999";
  EXPECT_EQ(flag(text), "must be at most 1000, got 99999999999999999999999");
  text = "-99999999999999999999999";
  EXPECT_EQ(flag(text), "must be 1 or more, got -99999999999999999999999");
}

TEST(Config, SecondsFlagTakesPlainNumbersInRange) {
  const auto flag = dpool::seconds_flag(dpool::limits::kTimeoutMs);
  for (std::string good : {"30", "2.5", "0.001", "1e3", "360000000"}) {
    EXPECT_EQ(flag(good), "") << good;
  }
  for (std::string bad : {"nan", "inf", "0x10", "", "soon", "3s", "1..2"}) {
    EXPECT_EQ(flag(bad), "expected a number of seconds like 30 or 2.5, got '" + bad + "'");
  }
  std::string text = "0";
  EXPECT_EQ(flag(text), "must be 0.001 s or more, got 0");
  text = "-2";
  EXPECT_EQ(flag(text), "must be 0.001 s or more, got -2");
  text = "1e300";  // once cast to milliseconds, a negative wait
  EXPECT_EQ(flag(text), "must be at most 360000000 s, got 1e300");
}

TEST(Config, WorkerMemoryLimitAndDrainTimeoutLoadAndPrintBack) {
  TempDir dir;
  dpool::WorkerConfig defaults;
  EXPECT_EQ(defaults.max_memory_per_child, 0u);
  EXPECT_EQ(defaults.drain_timeout, 30s);
  dpool::WorkerConfig c;
  dpool::load_config_file(dir.write("w.yaml", "max_memory_per_child: 2G\ndrain_timeout: 2m\n"), c);
  EXPECT_EQ(c.max_memory_per_child, 2ull << 30);
  EXPECT_EQ(c.drain_timeout, 120s);
  const auto yaml = dpool::to_yaml(c);
  EXPECT_NE(yaml.find("max_memory_per_child: 2GiB\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("drain_timeout: 2m\n"), std::string::npos) << yaml;
  dpool::WorkerConfig back;
  dpool::load_config_file(dir.write("back.yaml", yaml), back);
  EXPECT_EQ(back.max_memory_per_child, c.max_memory_per_child);
  EXPECT_EQ(back.drain_timeout, c.drain_timeout);
  // A bare number is bytes, and 0s drains not at all.
  dpool::load_config_file(dir.write("b.yaml", "max_memory_per_child: 1048576\ndrain_timeout: 0s\n"),
                          c);
  EXPECT_EQ(c.max_memory_per_child, 1u << 20);
  EXPECT_EQ(c.drain_timeout, 0ms);
  EXPECT_NE(dpool::to_yaml(c).find("drain_timeout: 0s\n"), std::string::npos);
}

TEST(Config, BadWorkerMemoryLimitNamesTheFileLineAndKey) {
  TempDir dir;
  const auto file = dir.write("w.yaml", "processes: 2\nmax_memory_per_child: a lot\n");
  expect_config_error<dpool::WorkerConfig>(
      file, 2, {"max_memory_per_child", "expected a size like 512MiB", "'a lot'"});
  const auto unit = dir.write("u.yaml", "max_memory_per_child: 4 gigs\n");
  expect_config_error<dpool::WorkerConfig>(unit, 1, {"max_memory_per_child", "unknown size unit"});
  const auto drain = dir.write("d.yaml", "drain_timeout: 30\n");
  expect_config_error<dpool::WorkerConfig>(drain, 1, {"drain_timeout", "unit"});
}

}  // namespace
