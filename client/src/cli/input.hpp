/* Where the items of `dpool map` (and of the commands that take "the same input forms as map")
 * come from, and how an item becomes a command line.
 *
 * Two forms, as in GNU parallel: lines of stdin, one item each, or the arguments after `:::`
 * (several `:::` groups give every combination, the last group varying fastest). Both are an
 * ItemSource that yields one item at a time, so that a caller can start running the first item
 * before stdin ends and hold only a window of items in memory, whatever the input's length:
 * the `:::` combinations are counted through like an odometer, never listed.
 *
 * An item keeps its values one per source (`{1}`, `{2}`, ...), so that the template below can
 * replace them; its text (the values joined by a space) is what `{}` stands for and how
 * messages name the item.
 *
 * A CommandTemplate is compiled once from the command's arguments into literal pieces and
 * replacement strings, so that expanding it per item (millions of times) does no parsing. */
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dpool::cli {

/* One item of input. */
struct InputItem {
  std::vector<std::string> values;  // one per source: a line of stdin, or one value per ::: group
  std::size_t number = 0;           // 1, 2, ... in input order ({#})

  /* The values joined by a space: what {} stands for, and the item's name in messages. */
  [[nodiscard]] std::string text() const;
};

/* A stream of items. next() is called from one thread at a time; total() from any thread. */
class ItemSource {
 public:
  virtual ~ItemSource() = default;
  /* The next item, or nullopt at the end. May block (stdin). Throws dpool::Error when the
   * input cannot be read. */
  virtual std::optional<InputItem> next() = 0;
  /* The number of items in all, once known (it may become known while reading); nullopt when
   * it is not. */
  [[nodiscard]] virtual std::optional<std::size_t> total() const = 0;
  /* How many values each item has ({1} to {N} are valid). */
  [[nodiscard]] virtual std::size_t sources() const = 0;
};

/* A command line as typed: the command and its arguments, then the `:::` groups. */
struct CommandLine {
  std::vector<std::string> command;
  std::vector<std::vector<std::string>> groups;  // empty: the items are the lines of stdin
};

/* Splits `CMD ARG... [::: VALUE...]...` at its `:::` markers. */
[[nodiscard]] CommandLine split_command_line(std::vector<std::string> args);

/* Each line of `fd` is an item (a trailing \r is dropped). For a regular file the total is
 * counted in the background, without moving the file's offset. */
[[nodiscard]] std::unique_ptr<ItemSource> lines_source(int fd);

/* Every combination of one value from each group, in GNU parallel's order. */
[[nodiscard]] std::unique_ptr<ItemSource> arguments_source(
    std::vector<std::vector<std::string>> groups);

/* The groups of `line`, or the lines of stdin when it has none. */
[[nodiscard]] std::unique_ptr<ItemSource> open_input(const CommandLine& line);

/* A command with GNU parallel's replacement strings: {} (the item's text), {N} (its N-th value),
 * {.} (without the extension), {/} (the base name), {//} (the directory), {/.} (the base name
 * without the extension), the same after a number ({2/}, {1.}), and {#} (the item's number).
 * With none of them in the command, the item's values are appended as arguments. */
class CommandTemplate {
 public:
  /* Throws dpool::Error(kUsage) for an empty command, or a {N} beyond `sources`. */
  CommandTemplate(std::vector<std::string> command, std::size_t sources);
  ~CommandTemplate();
  CommandTemplate(CommandTemplate&&) noexcept;
  CommandTemplate& operator=(CommandTemplate&&) noexcept;

  /* The command line for `item`. */
  [[nodiscard]] std::vector<std::string> expand(const InputItem& item) const;

  struct Piece;  // literal text or a replacement string (input.cpp)

 private:
  std::vector<std::vector<Piece>> args_;
  bool appends_ = true;  // no replacement string: the values go last
};

/* A command line from its first word (the parser's positional) and what the parser left over
 * (CLI11's prefix command, which keeps later words as typed): `--` may come first, an option
 * the parser did not know is an error of `subcommand`. */
[[nodiscard]] std::vector<std::string> command_words(const std::string& subcommand,
                                                     const std::string& first,
                                                     const std::vector<std::string>& left);

}  // namespace dpool::cli
