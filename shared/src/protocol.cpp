/* Names of commands and statuses for logs and status output. Kept beside protocol.hpp's enums
 * so that a new command without a name is visible in one place. */
#include "dpool/protocol.hpp"

namespace dpool {

std::string_view to_string(Command c) noexcept {
  switch (c) {
    case Command::kHello: return "HELLO";
    case Command::kReady: return "READY";
    case Command::kSubmit: return "SUBMIT";
    case Command::kAccept: return "ACCEPT";
    case Command::kTask: return "TASK";
    case Command::kDone: return "DONE";
    case Command::kResult: return "RESULT";
    case Command::kAck: return "ACK";
    case Command::kHeartbeat: return "HEARTBEAT";
    case Command::kDisconnect: return "DISCONNECT";
    case Command::kCancel: return "CANCEL";
    case Command::kJoin: return "JOIN";
    case Command::kJoined: return "JOINED";
    case Command::kJob: return "JOB";
    case Command::kJobInfo: return "JOB_INFO";
    case Command::kFetch: return "FETCH";
    case Command::kFetched: return "FETCHED";
    case Command::kStatus: return "STATUS";
    case Command::kReport: return "REPORT";
  }
  return "UNKNOWN";
}

std::string_view to_string(Status s) noexcept {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kError: return "error";
    case Status::kLost: return "lost";
    case Status::kTimeout: return "timeout";
    case Status::kCancelled: return "cancelled";
    case Status::kRejected: return "rejected";
    case Status::kUnreachable: return "unreachable";
    case Status::kReturned: return "returned";
  }
  return "unknown";
}

bool is_known_command(std::uint8_t raw) noexcept { return raw >= 1 && raw <= kMaxCommand; }

}  // namespace dpool
