/* The helpers the subcommands share (see cli.hpp). */

#include <cstdio>

#include "cli.hpp"
#include "dpool/error.hpp"

namespace dpool::cli {

std::string seconds_text(std::chrono::duration<double> d) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g s", d.count());
  return buf;
}

}  // namespace dpool::cli
