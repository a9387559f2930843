/* The exec built-in's results as `dpool map` and `dpool result` print them (exec_output.hpp). */
#include "exec_output.hpp"

#include <cstdio>
#include <stdexcept>

#include "cli.hpp"
#include "json.hpp"

namespace dpool::cli {

/* The item's name as a prefix for messages: cut when it is long, on a UTF-8 character's start,
 * and with control bytes escaped, so that an item holding a NUL or a terminal's escape
 * sequence reads as what it is and leaves the terminal alone. */
std::string label(const std::string& text) {
  constexpr std::size_t kMax = 80;
  std::size_t end = text.size();
  if (end > kMax) {
    end = kMax;
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  }
  std::string out;
  for (std::size_t i = 0; i < end; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return end < text.size() ? out + "..." : out;
}

/* exec's arguments for one item: [{"timeout": T}, command, arg...], or without the map. */
std::string pack_exec_args(const std::vector<std::string>& argv, std::optional<double> timeout) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<std::uint32_t>(argv.size() + (timeout ? 1 : 0)));
  if (timeout) {
    packer.pack_map(1);
    packer.pack("timeout");
    packer.pack(*timeout);
  }
  for (const auto& a : argv) packer.pack(a);
  return std::string(buffer.data(), buffer.size());
}

/* An exec result map as an outcome. */
ExecOutcome decode_exec(const msgpack::object& m, std::optional<double> timeout) {
  ExecOutcome o;
  try {
    if (m.type != msgpack::type::MAP) throw std::runtime_error("not a map");
    for (std::uint32_t i = 0; i < m.via.map.size; ++i) {
      const auto key = m.via.map.ptr[i].key.as<std::string>();
      const auto& val = m.via.map.ptr[i].val;
      if (key == "exit_code") o.exit_code = val.as<int>();
      else if (key == "signal") o.signal = val.as<int>();
      else if (key == "stdout") o.out = val.as<std::string>();
      else if (key == "stderr") o.err = val.as<std::string>();
      else if (key == "seconds") o.seconds = val.as<double>();
      else if (key == "timed_out") o.timed_out = val.as<bool>();
    }
    if (!o.exit_code) throw std::runtime_error("no exit_code");
    o.ok = *o.exit_code == 0 && o.signal == 0 && !o.timed_out;
    if (o.timed_out)
      o.error = timeout ? "timed out after " + seconds_text(std::chrono::duration<double>(*timeout))
                        : "timed out";
  } catch (const std::exception& e) {
    o.ok = false;
    o.error = std::string("exec returned a malformed result (") + e.what() + ")";
  }
  return o;
}

/* The failure of a whole task (every item of its chunk), or of one item that threw. */
ExecOutcome failed_outcome(const std::string& type, const std::string& message,
                           const wire::Result& meta) {
  ExecOutcome o;
  o.error = type + ": " + message;
  if (!meta.host.empty()) o.error += " (on " + meta.host + " pid " + std::to_string(meta.pid) + ")";
  return o;
}

/* A chunk's result: [0, exec's map] or [1, error type, message] per item (protocol 4.6). */
std::vector<ExecOutcome> decode_exec_chunk(const msgpack::object& a, std::size_t count,
                                           const wire::Result& meta,
                                           std::optional<double> timeout) {
  if (a.type != msgpack::type::ARRAY || a.via.array.size != count)
    throw std::runtime_error("not one entry per item");
  std::vector<ExecOutcome> out;
  for (std::size_t i = 0; i < count; ++i) {
    const auto& entry = a.via.array.ptr[i];
    if (entry.type != msgpack::type::ARRAY || entry.via.array.size < 2)
      throw std::runtime_error("a malformed item");
    const auto* e = entry.via.array.ptr;
    if (e[0].as<int>() == 0) out.push_back(decode_exec(e[1], timeout));
    else
      out.push_back(failed_outcome(e[1].as<std::string>(),
                                   entry.via.array.size > 2 ? e[2].as<std::string>() : "", meta));
  }
  return out;
}

std::string json_line(const ExecOutcome& o) {
  nlohmann::json j;
  j["item"] = o.text;
  j["exit_code"] = o.exit_code ? nlohmann::json(*o.exit_code) : nlohmann::json(nullptr);
  j["stdout"] = o.out;
  j["stderr"] = o.err;
  j["host"] = o.host;
  // Unknown when no run reported its end (its worker was lost, or the task was refused): the
  // time since the item was queued would count waiting as running.
  j["seconds"] = o.seconds ? nlohmann::json(*o.seconds) : nlohmann::json(nullptr);
  if (o.signal) j["signal"] = o.signal;
  if (o.timed_out) j["timed_out"] = true;
  if (!o.error.empty()) j["error"] = o.error;
  return dump_line(j) + "\n";
}

/* The item's stderr, each line named by the item, and for a failure the reason. */
std::string stderr_text(const ExecOutcome& o) {
  const auto prefix = label(o.text) + ": ";
  std::string err;
  for (std::size_t from = 0; from < o.err.size();) {
    auto nl = o.err.find('\n', from);
    if (nl == std::string::npos) nl = o.err.size();
    err.append(prefix).append(o.err, from, nl - from).append("\n");
    from = nl + 1;
  }
  if (o.ok) return err;
  if (!o.error.empty()) err.append(prefix).append("dpool: ").append(o.error).append("\n");
  else if (o.signal)
    err.append(prefix).append("dpool: killed by signal " + std::to_string(o.signal) + "\n");
  else if (o.err.empty())
    err.append(prefix).append("dpool: exit code " + std::to_string(*o.exit_code) + "\n");
  return err;
}

}  // namespace dpool::cli
