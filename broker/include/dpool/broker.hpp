/* dpool::Broker: the broker as a library, for dpool-broker and for embedded clusters.
 *
 * One ROUTER socket serves clients and workers alike. run() is the broker's single loop: it
 * polls with the heartbeat interval as timeout, handles each message with the handler of its
 * command, dispatches queued tasks within the workers' credit, and on each heartbeat tick
 * purges dead workers (requeueing their tasks) and silent clients.
 */
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "dpool/config.hpp"

namespace dpool {

namespace detail {
class BrokerCore;
}

struct BrokerStats {
  struct Function {
    std::size_t queued = 0;
    std::size_t workers = 0;  // connected workers that offer it
  };
  std::size_t workers = 0;
  std::size_t clients = 0;
  std::size_t tasks = 0;       // queued or leased
  std::size_t queued = 0;
  std::uint64_t completed = 0; // results delivered to clients (first sends)
  std::uint64_t failed = 0;    // of which failures
  std::uint64_t requeued = 0;  // leases lost to dead workers or cut links
  std::uint64_t retried = 0;   // attempts run again after an exception or a time-out
  std::uint64_t expired = 0;   // tasks not started by their deadline
  std::uint64_t dropped = 0;   // malformed or stale messages
  std::uint64_t limited = 0;   // tasks refused for their client's limits (per-client quota)
  std::uint64_t unsent = 0;    // messages not sent: the peer had too many waiting unread
  std::map<std::string, Function> functions;
};

class Broker {
 public:
  /* Binds `config.bind`. Throws dpool::Error(kUsage) when the address is invalid, in use, or
   * not on loopback (listening elsewhere needs CURVE, or `insecure` to say so on purpose). */
  explicit Broker(BrokerConfig config, bool insecure = false);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  /* The address actually bound (a port 0 in the config is replaced by the real port). */
  [[nodiscard]] std::string endpoint() const;

  /* Serves until stop(). Throws only on a dpool bug or a failing ZeroMQ context. */
  void run();

  /* Makes run() return soon. Safe from any thread and from a signal handler. */
  void stop() noexcept;

  /* A snapshot of the counters, safe from any thread. */
  [[nodiscard]] BrokerStats stats() const;

 private:
  std::unique_ptr<detail::BrokerCore> core_;
};

}  // namespace dpool
