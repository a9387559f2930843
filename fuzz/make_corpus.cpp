/* dpool-fuzz-corpus DIR: writes each target's seed inputs (seeds.cpp) to DIR/<target>/seed-N,
 * the starting corpus scripts/fuzz.sh gives libFuzzer beside the checked-in fuzz/corpus/. A
 * program rather than checked-in files only, so that seeds follow the protocol as it changes. */
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "entries.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  namespace fs = std::filesystem;
  for (const auto& t : dpool::fuzz::targets()) {
    const fs::path dir = fs::path(argv[1]) / std::string(t.name);
    fs::create_directories(dir);
    int n = 0;
    for (const auto& seed : dpool::fuzz::seed_inputs(t.name)) {
      std::ofstream out(dir / ("seed-" + std::to_string(n++)), std::ios::binary);
      out.write(seed.data(), static_cast<std::streamsize>(seed.size()));
      if (!out) {
        std::fprintf(stderr, "cannot write %s\n", dir.c_str());
        return 1;
      }
    }
  }
  return 0;
}
