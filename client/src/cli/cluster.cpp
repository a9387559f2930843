/* The helpers the subcommands share (see cli.hpp). */

#include <cstdio>

#include "cli.hpp"
#include "dpool/error.hpp"

namespace dpool::cli {

std::string resolve_broker(const std::string& flag, ClientConfig& config) {
  std::string from_file;
  if (auto path = config_file_path("")) {
    ClientConfig loaded;
    loaded.broker.clear();
    load_config_file(*path, loaded);
    from_file = loaded.broker;
    loaded.broker = config.broker;
    config = loaded;
  }
  if (!flag.empty()) return flag;
  if (auto env = broker_from_env()) return *env;
  return from_file;
}

std::string seconds_text(std::chrono::duration<double> d) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g s", d.count());
  return buf;
}

}  // namespace dpool::cli
