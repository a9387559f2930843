/* Item sources and command templates (input.hpp).
 *
 * stdin is read with read(2) into a buffer of our own rather than through iostreams, so that a
 * read error keeps its errno and a line is split out without copying the rest. Counting the
 * lines of a regular file ahead is cheap only when it does not delay the first item: it runs
 * on a thread of its own with pread(2) on a duplicate descriptor (the reader's offset stays
 * where it is), started on the first next() so that opening an input starts no thread. */
#include "input.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>
#include <thread>

#include "dpool/error.hpp"

namespace dpool::cli {
namespace {

constexpr std::size_t kUnknown = std::numeric_limits<std::size_t>::max();

/* Lines (items) from `fd` between `offset` and its end: newlines, plus a last line without one. */
std::size_t count_lines(int fd, off_t offset) {
  std::vector<char> buffer(1u << 20);
  std::size_t lines = 0;
  char last = '\n';
  for (;;) {
    const auto n = ::pread(fd, buffer.data(), buffer.size(), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return kUnknown;
    if (n == 0) break;
    for (const char *p = buffer.data(), *end = p + n;
         (p = static_cast<const char*>(std::memchr(p, '\n', end - p))); ++p) {
      ++lines;
    }
    last = buffer[static_cast<std::size_t>(n) - 1];
    offset += n;
  }
  return lines + (last == '\n' ? 0 : 1);
}

class LinesSource final : public ItemSource {
 public:
  explicit LinesSource(int fd) : fd_(fd) {}

  std::optional<InputItem> next() override {
    if (!started_) start_counting();
    std::string line;
    if (!read_line(line)) return std::nullopt;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    InputItem item;
    item.values.push_back(std::move(line));
    item.number = ++count_;
    return item;
  }

  [[nodiscard]] std::optional<std::size_t> total() const override {
    const auto t = total_->load(std::memory_order_relaxed);
    if (t == kUnknown) return std::nullopt;
    return t;
  }

  [[nodiscard]] std::size_t sources() const override { return 1; }

 private:
  /* A regular file's length is known up front: its lines are counted on the side. The thread
   * owns its descriptor and shares only the result, so it may outlive this source. */
  void start_counting() {
    started_ = true;
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) return;
    const off_t offset = ::lseek(fd_, 0, SEEK_CUR);
    const int fd = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    if (offset < 0 || fd < 0) {
      if (fd >= 0) ::close(fd);
      return;
    }
    std::thread([fd, offset, total = total_] {
      total->store(count_lines(fd, offset), std::memory_order_relaxed);
      ::close(fd);
    }).detach();
  }

  /* The next line without its newline; false at the end of the input. */
  bool read_line(std::string& line) {
    for (;;) {
      if (pos_ < len_) {
        const char* from = buffer_ + pos_;
        const auto* nl = static_cast<const char*>(std::memchr(from, '\n', len_ - pos_));
        if (nl) {
          line.append(from, nl);
          pos_ = static_cast<std::size_t>(nl - buffer_) + 1;
          return true;
        }
        line.append(from, len_ - pos_);
      }
      pos_ = len_ = 0;
      if (!fill()) return !line.empty();
    }
  }

  /* Reads more; false at the end of the input. */
  bool fill() {
    for (;;) {
      const auto n = ::read(fd_, buffer_, sizeof buffer_);
      if (n > 0) {
        len_ = static_cast<std::size_t>(n);
        return true;
      }
      if (n == 0) return false;
      if (errno != EINTR)
        throw Error(Errc::kUsage, std::string("cannot read stdin: ") + std::strerror(errno));
    }
  }

  int fd_;
  bool started_ = false;
  std::size_t count_ = 0;
  std::shared_ptr<std::atomic<std::size_t>> total_ =
      std::make_shared<std::atomic<std::size_t>>(kUnknown);
  char buffer_[1u << 16];
  std::size_t pos_ = 0, len_ = 0;
};

/* The product of the group sizes, or kUnknown when it does not fit. */
std::size_t combinations(const std::vector<std::vector<std::string>>& groups) {
  std::size_t n = 1;
  for (const auto& g : groups) {
    if (g.empty()) return 0;
    if (n > kUnknown / g.size()) return kUnknown;
    n *= g.size();
  }
  return n;
}

class ArgumentsSource final : public ItemSource {
 public:
  explicit ArgumentsSource(std::vector<std::vector<std::string>> groups)
      : groups_(std::move(groups)), at_(groups_.size(), 0), total_(combinations(groups_)) {
    done_ = total_ == 0;
  }

  std::optional<InputItem> next() override {
    if (done_) return std::nullopt;
    InputItem item;
    item.values.reserve(groups_.size());
    for (std::size_t g = 0; g < groups_.size(); ++g) item.values.push_back(groups_[g][at_[g]]);
    item.number = ++count_;
    advance();
    return item;
  }

  [[nodiscard]] std::optional<std::size_t> total() const override {
    if (total_ == kUnknown) return std::nullopt;
    return total_;
  }

  [[nodiscard]] std::size_t sources() const override { return groups_.size(); }

 private:
  /* The odometer: the last group turns fastest, as in GNU parallel. */
  void advance() {
    for (std::size_t g = groups_.size(); g-- > 0;) {
      if (++at_[g] < groups_[g].size()) return;
      at_[g] = 0;
    }
    done_ = true;
  }

  std::vector<std::vector<std::string>> groups_;
  std::vector<std::size_t> at_;
  std::size_t total_;
  std::size_t count_ = 0;
  bool done_ = false;
};

// ---- Replacement strings -----------------------------------------------------------------

enum class Modifier { kNone, kNoExtension, kBase, kDirectory, kBaseNoExtension };

std::string_view base_name(std::string_view s) {
  const auto slash = s.rfind('/');
  return slash == std::string_view::npos ? s : s.substr(slash + 1);
}

/* GNU parallel's {.}: the last ".ext" of the base name goes. */
std::string_view without_extension(std::string_view s) {
  const auto dot = s.rfind('.');
  if (dot == std::string_view::npos || s.find('/', dot) != std::string_view::npos) return s;
  return s.substr(0, dot);
}

/* GNU parallel's {//}: "." when there is no directory part. */
std::string_view directory(std::string_view s) {
  const auto slash = s.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return s.substr(0, slash);
}

std::string_view modified(std::string_view s, Modifier m) {
  switch (m) {
    case Modifier::kNone: return s;
    case Modifier::kNoExtension: return without_extension(s);
    case Modifier::kBase: return base_name(s);
    case Modifier::kDirectory: return directory(s);
    case Modifier::kBaseNoExtension: return without_extension(base_name(s));
  }
  return s;
}

std::optional<Modifier> modifier_of(std::string_view text) {
  if (text.empty()) return Modifier::kNone;
  if (text == ".") return Modifier::kNoExtension;
  if (text == "/") return Modifier::kBase;
  if (text == "//") return Modifier::kDirectory;
  if (text == "/.") return Modifier::kBaseNoExtension;
  return std::nullopt;
}

}  // namespace

/* A piece of an argument: literal text, a value (source 0: the item's text), or the number. */
struct CommandTemplate::Piece {
  enum Kind { kLiteral, kValue, kNumber } kind = kLiteral;
  std::string text;
  std::size_t source = 0;
  Modifier modifier = Modifier::kNone;
};

namespace {

/* The replacement string between braces (`inner`), or nullopt when it is none (left as text). */
std::optional<CommandTemplate::Piece> replacement(std::string_view inner, std::size_t sources) {
  using Piece = CommandTemplate::Piece;
  if (inner == "#") return Piece{Piece::kNumber, {}, 0, Modifier::kNone};
  std::size_t digits = 0;
  while (digits < inner.size() && digits < 9 && inner[digits] >= '0' && inner[digits] <= '9')
    ++digits;
  const auto modifier = modifier_of(inner.substr(digits));
  if (!modifier) return std::nullopt;
  if (digits == 0) return Piece{Piece::kValue, {}, 0, *modifier};
  const auto source = static_cast<std::size_t>(std::stoul(std::string(inner.substr(0, digits))));
  if (source == 0 || source > sources) {
    throw Error(Errc::kUsage, "{" + std::string(inner) + "} names input source " +
                                  std::to_string(source) + ", but there " +
                                  (sources == 1 ? "is 1" : "are " + std::to_string(sources)) +
                                  " (one per ::: group, or stdin)");
  }
  return Piece{Piece::kValue, {}, source, *modifier};
}

std::vector<CommandTemplate::Piece> compile(const std::string& arg, std::size_t sources) {
  using Piece = CommandTemplate::Piece;
  std::vector<Piece> pieces;
  std::string literal;
  for (std::size_t i = 0; i < arg.size(); ++i) {
    const auto close = arg[i] == '{' ? arg.find('}', i + 1) : std::string::npos;
    auto piece = close == std::string::npos
                     ? std::nullopt
                     : replacement(std::string_view(arg).substr(i + 1, close - i - 1), sources);
    if (!piece) {
      literal += arg[i];
      continue;
    }
    if (!literal.empty()) pieces.push_back(Piece{Piece::kLiteral, std::move(literal)});
    literal.clear();
    pieces.push_back(std::move(*piece));
    i = close;
  }
  if (!literal.empty() || pieces.empty())
    pieces.push_back(Piece{Piece::kLiteral, std::move(literal)});
  return pieces;
}

}  // namespace

std::string InputItem::text() const {
  if (values.size() == 1) return values.front();
  std::string joined;
  for (const auto& v : values) {
    if (!joined.empty()) joined += ' ';
    joined += v;
  }
  return joined;
}

CommandLine split_command_line(std::vector<std::string> args) {
  CommandLine line;
  auto it = args.begin();
  for (; it != args.end() && *it != ":::"; ++it) line.command.push_back(std::move(*it));
  for (; it != args.end(); ++it) {
    if (*it == ":::") line.groups.emplace_back();
    else line.groups.back().push_back(std::move(*it));
  }
  return line;
}

std::unique_ptr<ItemSource> lines_source(int fd) { return std::make_unique<LinesSource>(fd); }

std::unique_ptr<ItemSource> arguments_source(std::vector<std::vector<std::string>> groups) {
  return std::make_unique<ArgumentsSource>(std::move(groups));
}

std::unique_ptr<ItemSource> open_input(const CommandLine& line) {
  if (line.groups.empty()) return lines_source(STDIN_FILENO);
  return arguments_source(line.groups);
}

CommandTemplate::CommandTemplate(std::vector<std::string> command, std::size_t sources) {
  if (command.empty() || command[0].empty())
    throw Error(Errc::kUsage, "no command to run (give it after --)");
  for (const auto& arg : command) {
    args_.push_back(compile(arg, sources));
    for (const auto& piece : args_.back()) {
      if (piece.kind != Piece::kLiteral) appends_ = false;
    }
  }
}

CommandTemplate::~CommandTemplate() = default;
CommandTemplate::CommandTemplate(CommandTemplate&&) noexcept = default;
CommandTemplate& CommandTemplate::operator=(CommandTemplate&&) noexcept = default;

std::vector<std::string> CommandTemplate::expand(const InputItem& item) const {
  std::vector<std::string> argv;
  argv.reserve(args_.size() + (appends_ ? item.values.size() : 0));
  std::optional<std::string> text;  // {} is joined once per item, when used
  for (const auto& pieces : args_) {
    std::string arg;
    for (const auto& p : pieces) {
      if (p.kind == Piece::kLiteral) {
        arg += p.text;
      } else if (p.kind == Piece::kNumber) {
        arg += std::to_string(item.number);
      } else if (p.source > 0) {
        arg += modified(item.values.at(p.source - 1), p.modifier);
      } else {
        if (!text) text = item.text();
        arg += modified(*text, p.modifier);
      }
    }
    argv.push_back(std::move(arg));
  }
  if (appends_) argv.insert(argv.end(), item.values.begin(), item.values.end());
  return argv;
}

/* The command line from its first word and what the parser left over: before the command's
 * arguments that can be the `--` mark (all after it is the command's) or an option the parser
 * did not know. */
std::vector<std::string> command_words(const std::string& subcommand, const std::string& first,
                                       const std::vector<std::string>& left) {
  std::vector<std::string> words{first};
  auto it = left.begin();
  if (it != left.end() && *it == "--") {
    ++it;
  } else if (it != left.end() && it->size() > 1 && it->front() == '-') {
    throw Error(Errc::kUsage,
                subcommand + ": unknown option " + *it + " (the command goes after --)");
  }
  words.insert(words.end(), it, left.end());
  return words;
}

}  // namespace dpool::cli
