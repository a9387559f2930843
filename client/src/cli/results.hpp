/* How `dpool result` prints a detached job's results: one call at a time, in order.
 *
 * A job's task is one call or a chunk of calls (its result an array of item outcomes, as in
 * docs/protocol.md "Chunks"); the printer flattens chunks, so the n-th line of output is the
 * n-th line of input whatever the chunk size. A job of `exec` calls prints like `dpool map`
 * (each command's stdout; a failed one's stderr, named, on ours); any other function prints
 * each value as one line of JSON, a failure as one line on stderr naming the item.
 */
#pragma once

#include <cstdint>
#include <string>

#include <msgpack.hpp>
#include <zmq.hpp>

#include "dpool/protocol.hpp"

namespace dpool::cli {

class ResultPrinter {
 public:
  ResultPrinter(std::string function, bool json);
  void print(const wire::JobResult& result, const zmq::message_t& value);
  [[nodiscard]] std::uint64_t failed() const { return failed_; }
  [[nodiscard]] std::uint64_t items() const { return item_; }

 private:
  /* One call's outcome: `value` when it returned, else the error. */
  void item(const msgpack::object* value, const wire::Result& meta, const std::string& error_type,
            const std::string& error_message);

  std::string function_;
  bool json_;
  std::uint64_t item_ = 0;  // calls printed so far
  std::uint64_t failed_ = 0;
};

}  // namespace dpool::cli
