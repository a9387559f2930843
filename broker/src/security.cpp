/* The broker's ZAP handler and roles (see security.hpp).
 *
 * Allowlisted keys are kept as their 32 binary bytes, which is what a ZAP request carries, so
 * a handshake costs one hash lookup. A malformed request (libzmq never sends one, but the
 * inproc endpoint is open to any socket on the context) is answered 500 rather than ignored:
 * a REP socket that does not answer stops reading.
 */
#include "security.hpp"

#include <zmq.h>

#include <array>

#include "dpool/error.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr std::size_t kKeyBytes = 32;

std::string binary_of(const std::string& z85) {
  std::array<std::uint8_t, kKeyBytes> bytes{};
  if (!zmq_z85_decode(bytes.data(), z85.c_str()))
    throw Error(Errc::kConfig, "curve: a key is not valid Z85");
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::string z85_of(std::string_view binary) {
  char out[kZ85KeyLength + 1] = {};
  if (binary.size() != kKeyBytes) return "(not a key)";
  zmq_z85_encode(out, reinterpret_cast<const std::uint8_t*>(binary.data()), binary.size());
  return out;
}

std::string text_of(const zmq::message_t& m) { return std::string(view(m)); }

}  // namespace

std::string_view to_string(Role r) noexcept { return r == Role::kClient ? "client" : "worker"; }

Gatekeeper::Gatekeeper(zmq::context_t& context, const CurveBrokerKeys& keys, DropCounters& drops)
    : secret_(keys.secret), drops_(drops), zap_(context, zmq::socket_type::rep) {
  for (const auto& k : keys.clients) allowed_.emplace(binary_of(k), Role::kClient);
  for (const auto& k : keys.workers) {
    const auto [it, added] = allowed_.emplace(binary_of(k), Role::kWorker);
    if (!added && it->second != Role::kWorker) {
      throw Error(Errc::kConfig, "curve: key " + k +
                                     " is in both client_keys and worker_keys; a key has one role");
    }
  }
  zap_.set(zmq::sockopt::linger, 0);
  try {
    zap_.bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    throw Error(Errc::kUsage, std::string("cannot start the CURVE authenticator: ") + e.what());
  }
}

void Gatekeeper::secure(zmq::socket_ref router) const {
  router.set(zmq::sockopt::curve_server, 1);
  router.set(zmq::sockopt::curve_secretkey, secret_);
  router.set(zmq::sockopt::zap_domain, "dpool");
}

void Gatekeeper::serve() {
  for (;;) {
    std::vector<zmq::message_t> request;
    zmq::message_t part;
    if (!zap_.recv(part, zmq::recv_flags::dontwait)) return;
    request.push_back(std::move(part));
    while (request.back().more()) {
      zmq::message_t next;
      (void)zap_.recv(next);  // the rest of a multipart message is already here
      request.push_back(std::move(next));
    }
    answer(request);
  }
}

/* RFC 27: version, request id, domain, address, routing id, mechanism, credentials. */
void Gatekeeper::answer(std::vector<zmq::message_t>& request) {
  const std::string request_id = request.size() > 1 ? text_of(request[1]) : std::string();
  std::string status = "500", text = "malformed ZAP request", user;
  if (request.size() >= 7 && text_of(request[0]) == "1.0" && text_of(request[5]) == "CURVE") {
    const auto address = text_of(request[3]);
    const auto key = view(request[6]);
    if (const auto it = allowed_.find(std::string(key)); it != allowed_.end()) {
      status = "200", text = "OK", user = std::string(to_string(it->second));
      log::debug("admitted {} key {} from {}", user, z85_of(key), address);
    } else {
      status = "400", text = "key not allowed";
      drops_.drop(DropReason::kAuth, address,
                  "CURVE key " + z85_of(key) + " is in neither allowlist");
    }
  }
  const std::array<std::string, 6> reply{"1.0", request_id, status, text, user, ""};
  for (std::size_t i = 0; i < reply.size(); ++i) {
    zap_.send(zmq::buffer(reply[i]),
              i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

std::optional<Role> Gatekeeper::role_of(const zmq::message_t& frame) {
  const char* user = zmq_msg_gets(const_cast<zmq_msg_t*>(frame.handle()), "User-Id");
  if (!user) return std::nullopt;
  const std::string_view u(user);
  if (u == "client") return Role::kClient;
  if (u == "worker") return Role::kWorker;
  return std::nullopt;
}

std::size_t Gatekeeper::clients() const {
  std::size_t n = 0;
  for (const auto& [k, r] : allowed_) n += r == Role::kClient ? 1 : 0;
  return n;
}

std::size_t Gatekeeper::workers() const { return allowed_.size() - clients(); }

}  // namespace dpool::detail
