/* dpool's one error policy.
 *
 * - Expected non-events are values: a read with nothing waiting returns an empty optional, a
 *   malformed message is dropped and counted (codec.hpp). Nothing a peer sends throws.
 * - Failures a caller must handle are exceptions derived from dpool::Error, carrying an Errc.
 *   A task that failed on a worker reaches its caller as dpool::RemoteError.
 * - assert() only guards our own invariants; a failed assert is a dpool bug.
 */
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace dpool {

enum class Errc : std::uint8_t {
  kUsage,        // a bad flag, option or argument from the person or program calling us
  kConfig,       // an unreadable or invalid configuration file
  kUnreachable,  // no broker answered within the connect timeout
  kRemote,       // the task failed on the worker (see RemoteError)
  kWorkerLost,   // the task's worker died on every attempt allowed
  kTimeout,      // a wait or a task ran past its time limit
  kCancelled,    // the task was cancelled before it finished
  kRejected,     // the broker refused the task
  kInternal,     // a dpool bug
};

class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& what) : std::runtime_error(what), code_(code) {}
  [[nodiscard]] Errc code() const noexcept { return code_; }

 private:
  Errc code_;
};

/* A task called with arguments that do not fit its function's signature. */
class ArgumentError : public Error {
 public:
  explicit ArgumentError(const std::string& what) : Error(Errc::kUsage, what) {}
};

/* A task's failure on a worker, as the caller sees it: the remote exception's type and
 * message, the function, where it ran and how many attempts it took, and what happened on
 * the attempts that failed before (retried exceptions and time-outs, crashes). */
class RemoteError : public Error {
 public:
  struct Attempt {
    std::uint32_t attempt = 0;
    std::string type;         // "Timeout", "WorkerLost", "OutOfMemory" or the exception's type
    std::string message;      // for a crash: the signal or exit code
    std::string host;
    std::uint32_t pid = 0;
    std::string stderr_tail;  // the last lines the process wrote to stderr (crashes, time-outs)
  };
  struct Info {
    std::string type;       // e.g. "std::out_of_range", or "WorkerLost"
    std::string message;
    std::string function;
    std::string host;
    std::uint32_t pid = 0;
    std::uint32_t attempts = 0;
    std::vector<Attempt> history;  // failed attempts, oldest first (the last is this failure)
  };
  RemoteError(Errc code, Info info);
  [[nodiscard]] const Info& info() const noexcept { return info_; }
  [[nodiscard]] const std::string& type() const noexcept { return info_.type; }
  [[nodiscard]] const std::string& message() const noexcept { return info_.message; }
  [[nodiscard]] const std::string& function() const noexcept { return info_.function; }
  [[nodiscard]] const std::string& host() const noexcept { return info_.host; }
  [[nodiscard]] std::uint32_t pid() const noexcept { return info_.pid; }
  [[nodiscard]] std::uint32_t attempts() const noexcept { return info_.attempts; }
  [[nodiscard]] const std::vector<Attempt>& history() const noexcept { return info_.history; }

 private:
  Info info_;
};

}  // namespace dpool
