/* fuzz_config: the YAML config loaders of the three roles (shared/src/config.cpp), from a text.
 *
 * The loaders read a path, as the binaries do, so the text is written to a file in a private
 * temporary folder first; key files that a `curve:` section names relative to the config file
 * are then looked for in that (empty) folder, never in a folder of the machine's. The one
 * thing a loader may throw is dpool::Error(kConfig): each binary reports that as one line
 * naming the file and line, while any other exception would reach the user as an "internal
 * error" (exit 3), so the harness lets it escape for libFuzzer to report. A config that loads
 * must also print (--print-config) and load again to the same text, but for an inline secret
 * key, which the print redacts on purpose.
 */
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "dpool/config.hpp"
#include "dpool/curve.hpp"
#include "dpool/error.hpp"
#include "entries.hpp"

namespace dpool::fuzz {
namespace {

/* The file the text goes to, in a folder made once per process and removed at its exit. */
const std::string& config_path() {
  static const std::string path = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string folder = std::string(tmp && *tmp ? tmp : "/tmp") + "/dpool-fuzz-config-XXXXXX";
    if (!::mkdtemp(folder.data())) std::abort();
    static const std::string keep = folder;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(keep, ec);
    });
    return folder + "/dpool.yaml";
  }();
  return path;
}

void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) std::abort();
}

/* Loads `path` into a default Config; false when the loader refused it (as it may). */
template <class Config>
bool load(const std::string& path, Config& config) {
  try {
    load_config_file(path, config);
    return true;
  } catch (const Error& e) {
    if (e.code() != Errc::kConfig) std::abort();
    return false;
  }
}

/* What loads prints as YAML that loads back to the same print. */
template <class Config>
void load_print_reload(const std::string& path, const std::uint8_t* data, std::size_t size) {
  write_file(path, data, size);
  Config config;
  if (!load(path, config)) return;
  const std::string printed = to_yaml(config);
  if (printed.find(kRedactedSecret) != std::string::npos) return;  // by design, not read back
  write_file(path, reinterpret_cast<const std::uint8_t*>(printed.data()), printed.size());
  Config again;
  if (!load(path, again) || to_yaml(again) != printed) std::abort();
}

}  // namespace

int fuzz_config(const std::uint8_t* data, std::size_t size) {
  const auto& path = config_path();
  load_print_reload<BrokerConfig>(path, data, size);
  load_print_reload<WorkerConfig>(path, data, size);
  load_print_reload<ClientConfig>(path, data, size);
  return 0;
}

}  // namespace dpool::fuzz
