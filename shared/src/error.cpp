/* The message of a RemoteError, built once from its parts (see error.hpp). */
#include "dpool/error.hpp"

namespace dpool {
RemoteError::RemoteError(Errc code, Info info)
    : Error(code, info.type + ": " + info.message + " (in " + info.function + " on " + info.host +
                      " pid " + std::to_string(info.pid) + ", attempt " +
                      std::to_string(info.attempts) + ")"),
      info_(std::move(info)) {}
}  // namespace dpool
