/* md5_folder: the seed that "calculates the md5 value for files under one directory" with
 * multiprocessing's Pool.map, on dpool::Pool:
 *
 *   def create_hash(filename):
 *       return hashlib.md5(open(filename, 'rb').read()).hexdigest()
 *
 *   pool.map(create_hash, file_list)
 *
 *   md5_folder [DIRECTORY] [--recursive] [--processes N]
 *
 * prints one "HASH  PATH" line per regular file in DIRECTORY (default /etc; with --recursive,
 * in its subdirectories too), sorted by path, in md5sum's format: the output equals
 * `md5sum` run on the same paths in that order (the packaging and examples tests check it).
 * Dot files count; symbolic links to regular files are followed, as md5sum follows them.
 *
 * The digest is OpenSSL's (the EVP interface of libcrypto), computed while the file streams
 * through a fixed buffer, so that a large file costs no more memory than a small one.
 * A file that cannot be read is reported on stderr as md5sum reports it, the others are still
 * printed, and the exit status is 1, as md5sum's.
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>
#include <dpool/dpool.hpp>

namespace {

/* One file's outcome. An unreadable file is an ordinary result rather than an exception:
 * Pool::map rethrows the first failing item's exception and returns nothing else, and a
 * folder with one unreadable file must still list the digests of all the others. */
struct Digest {
  std::string hex;    // 32 hex digits, or empty when `error` says why there is none
  std::string error;  // strerror text, as md5sum prints it
  MSGPACK_DEFINE(hex, error)
};

/* Runs in a worker process. */
Digest md5_of(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {"", std::strerror(errno)};
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_md5(), nullptr) != 1) {
    ::close(fd);
    return {"", "OpenSSL cannot compute MD5 here"};
  }
  std::vector<unsigned char> buffer(1 << 16);
  Digest result;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n > 0) {
      EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<std::size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      result.error = std::strerror(errno);  // EISDIR, EIO...
      break;
    }
  }
  ::close(fd);
  if (!result.error.empty()) return result;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    result.hex += kHex[md[i] >> 4];
    result.hex += kHex[md[i] & 0xf];
  }
  return result;
}
DPOOL_TASK(md5_of);

/* md5sum's way with awkward names: a backslash or a newline in the name is escaped and the
 * line starts with a backslash, so that every line still parses back (md5sum -c). */
std::string md5sum_line(const std::string& hex, const std::string& path) {
  if (path.find_first_of("\\\n\r") == std::string::npos) return hex + "  " + path;
  std::string escaped;
  for (char c : path) {
    if (c == '\\') escaped += "\\\\";
    else if (c == '\n') escaped += "\\n";
    else if (c == '\r') escaped += "\\r";
    else escaped += c;
  }
  return "\\" + hex + "  " + escaped;
}

/* The regular files to hash, sorted by path (byte order, as `LC_ALL=C sort`). Entries that
 * vanish or cannot be examined while listing are skipped: they are not files to hash. */
std::vector<std::string> list_files(const std::filesystem::path& dir, bool recursive) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  const auto keep = [&](const fs::directory_entry& entry) {
    std::error_code ec;
    if (entry.is_regular_file(ec)) files.push_back(entry.path().string());
  };
  const auto options = fs::directory_options::skip_permission_denied;
  if (recursive) {
    for (const auto& entry : fs::recursive_directory_iterator(dir, options)) keep(entry);
  } else {
    for (const auto& entry : fs::directory_iterator(dir, options)) keep(entry);
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"md5_folder: the MD5 of every file in a directory, computed on a dpool::Pool"};
  std::string dir = "/etc";
  bool recursive = false;
  std::size_t processes = 0;  // one per core, as Pool() in Python
  app.add_option("directory", dir, "the directory")->capture_default_str();
  app.add_flag("-r,--recursive", recursive, "also the files in its subdirectories");
  app.add_option("-p,--processes", processes, "worker processes (0: one per core)")
      ->check(CLI::Range(0, 256));
  CLI11_PARSE(app, argc, argv);

  try {
    const auto files = list_files(dir, recursive);
    // Forks the workers here: before this program has any thread of its own, as it must.
    dpool::Pool pool(processes);
    const auto digests = pool.map(md5_of, files);
    int status = 0;
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (digests[i].error.empty()) {
        std::printf("%s\n", md5sum_line(digests[i].hex, files[i]).c_str());
      } else {
        std::fflush(stdout);  // keeps the order of stdout and stderr lines on a terminal
        std::fprintf(stderr, "md5_folder: %s: %s\n", files[i].c_str(), digests[i].error.c_str());
        status = 1;
      }
    }
    return status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "md5_folder: %s\n", e.what());
    return 2;
  }
}
