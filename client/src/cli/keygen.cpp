/* dpool keygen: a CURVE key pair, from libzmq's own generator (zmq_curve_keypair).
 *
 * Printed as the two Z85 lines a config file takes, or written to PREFIX.key (the secret,
 * mode 0600, never over an existing file) and PREFIX.pub, so that a secret key is never left
 * readable by others, not even for a moment.
 */
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <CLI/CLI.hpp>
#include <zmq.h>

#include "cli.hpp"

namespace dpool::cli {
namespace {

void write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    throw Error(Errc::kUsage, "cannot create " + path + ": " + std::strerror(errno) +
                                  (errno == EEXIST ? " (keys are never overwritten)" : ""));
  }
  const auto n = ::write(fd, text.data(), text.size());
  const bool ok = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw Error(Errc::kUsage, "cannot write " + path + ": " + std::strerror(errno));
}

int run_keygen(const std::string& prefix) {
  if (!zmq_has("curve")) throw Error(Errc::kUsage, "this libzmq was built without CURVE support");
  char public_key[41], secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    throw Error(Errc::kInternal, std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
  }
  if (prefix.empty()) {
    std::printf("public_key: \"%s\"\nsecret_key: \"%s\"\n", public_key, secret_key);
    return std::fflush(stdout) == 0 ? 0 : 3;
  }
  write_new_file(prefix + ".key", std::string(secret_key) + "\n", 0600);
  write_new_file(prefix + ".pub", std::string(public_key) + "\n", 0644);
  std::fprintf(stderr, "dpool: wrote %s.key (secret) and %s.pub\n", prefix.c_str(), prefix.c_str());
  return 0;
}

}  // namespace

Command add_keygen(CLI::App& parent) {
  auto prefix = std::make_shared<std::string>();
  auto* cmd = parent.add_subcommand(
      "keygen", "makes a CURVE key pair (printed, or written to PREFIX.key and PREFIX.pub)");
  cmd->add_option("--out", *prefix,
                  "write the secret to PREFIX.key (mode 0600) and the public key to PREFIX.pub");
  return {cmd, [prefix] { return run_keygen(*prefix); }};
}

}  // namespace dpool::cli
