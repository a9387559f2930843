/* etc_conf_sizes: the first seed's program, "count the characters of every *.conf file in /etc
 * with a process pool", on dpool::Pool. The Python it translates:
 *
 *   def file_size(filename):
 *       try:
 *           return len(open(filename).read())
 *       except IOError:
 *           return 0
 *
 *   with Pool(processes=8) as pool:
 *       print(sum(pool.map(file_size, glob.glob(os.path.join('/etc', '*.conf')))))
 *
 *   etc_conf_sizes [PATTERN|DIRECTORY] [--processes N]      prints "Total: N"
 *
 * PATTERN is a shell glob (default: the *.conf files of /etc); a DIRECTORY stands for every
 * name in it but the dot files, as glob.glob(os.path.join(DIRECTORY, '*')) would list them. A file
 * that cannot be read, a directory matched by the pattern included, counts 0, as the seed's
 * `except` makes it.
 *
 * Sizes are counted in bytes, which is what `wc -c` counts and what the test compares with.
 * Python's text-mode read() counts decoded characters (and reads \r\n as one), which is the
 * same number for the ASCII files found in /etc.
 */
#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <dpool/dpool.hpp>

namespace {

/* Runs in a worker process: the number of bytes in `filename`, or 0 when it cannot be read.
 * It reads the file through instead of asking stat() for its size, as the seed does, so that
 * files whose size stat() does not know (those of /proc, say) count what they hold. */
long long file_size(const std::string& filename) {
  const int fd = ::open(filename.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  long long total = 0;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      total += n;
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      total = 0;  // a directory (EISDIR) or an I/O error: the seed's except clause
      break;
    }
  }
  ::close(fd);
  return total;
}
DPOOL_TASK(file_size);

/* glob.glob(pattern): the matching names, sorted; none is not an error. */
std::vector<std::string> glob_names(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> names;
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  if (rc == 0) names.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  ::globfree(&g);
  if (rc != 0 && rc != GLOB_NOMATCH) throw std::runtime_error("cannot expand " + pattern);
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "etc_conf_sizes: the total size of the files matching a glob, read on a dpool::Pool"};
  std::string pattern = "/etc/*.conf";
  std::size_t processes = 8;  // the seed's Pool(processes=8)
  app.add_option("pattern", pattern, "a glob, or a directory for all the files in it")
      ->capture_default_str();
  app.add_option("-p,--processes", processes, "worker processes")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  CLI11_PARSE(app, argc, argv);

  try {
    struct stat st {};
    if (::stat(pattern.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      pattern += pattern.ends_with('/') ? "*" : "/*";
    }
    const auto names = glob_names(pattern);
    // Forks the workers here: before this program has any thread of its own, as it must.
    dpool::Pool pool(processes);
    const auto sizes = pool.map(file_size, names);
    std::printf("Total: %lld\n", std::accumulate(sizes.begin(), sizes.end(), 0LL));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "etc_conf_sizes: %s\n", e.what());
    return 1;
  }
}
