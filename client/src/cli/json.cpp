/* JSON <-> msgpack conversion for the dpool command line (see json.hpp). */
#include "json.hpp"

#include <cstdint>

#include "dpool/error.hpp"

namespace dpool::cli {

nlohmann::json parse_json(std::string_view text, std::size_t max_depth) {
  // The callback's depth counts the containers around the event; an array or object opened at
  // depth d holds values at d + 1.
  const auto limit = [max_depth](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::array_start ||
         event == nlohmann::json::parse_event_t::object_start) &&
        static_cast<std::size_t>(depth) >= max_depth) {
      throw Error(Errc::kUsage, "nests deeper than " + std::to_string(max_depth) + " levels");
    }
    return true;
  };
  return nlohmann::json::parse(text, limit);
}

void pack_json(msgpack::packer<msgpack::sbuffer>& packer, const nlohmann::json& value) {
  using T = nlohmann::json::value_t;
  switch (value.type()) {
    case T::null:
    case T::discarded:
      packer.pack_nil();
      return;
    case T::boolean:
      packer.pack(value.get<bool>());
      return;
    case T::number_integer:
      packer.pack(value.get<std::int64_t>());
      return;
    case T::number_unsigned:
      packer.pack(value.get<std::uint64_t>());
      return;
    case T::number_float:
      packer.pack(value.get<double>());
      return;
    case T::string:
      packer.pack(value.get_ref<const std::string&>());
      return;
    case T::binary: {
      const auto& bin = value.get_binary();
      packer.pack_bin(static_cast<std::uint32_t>(bin.size()));
      packer.pack_bin_body(reinterpret_cast<const char*>(bin.data()),
                           static_cast<std::uint32_t>(bin.size()));
      return;
    }
    case T::array:
      packer.pack_array(static_cast<std::uint32_t>(value.size()));
      for (const auto& element : value) pack_json(packer, element);
      return;
    case T::object:
      packer.pack_map(static_cast<std::uint32_t>(value.size()));
      for (const auto& [key, element] : value.items()) {
        packer.pack(key);
        pack_json(packer, element);
      }
      return;
  }
  packer.pack_nil();
}

std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t n = (static_cast<std::uint8_t>(bytes[i]) << 16) |
                            (static_cast<std::uint8_t>(bytes[i + 1]) << 8) |
                            static_cast<std::uint8_t>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t n = static_cast<std::uint8_t>(bytes[i]) << 16;
    if (rest == 2) n |= static_cast<std::uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<std::uint8_t>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<std::uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
      return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

namespace {

nlohmann::json bytes_to_json(std::string_view bytes) {
  if (valid_utf8(bytes)) return std::string(bytes);
  return base64(bytes);
}

}  // namespace

nlohmann::json to_json(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL:
      return nullptr;
    case msgpack::type::BOOLEAN:
      return o.via.boolean;
    case msgpack::type::POSITIVE_INTEGER:
      return o.via.u64;
    case msgpack::type::NEGATIVE_INTEGER:
      return o.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return o.via.f64;
    case msgpack::type::STR:
      return bytes_to_json(std::string_view(o.via.str.ptr, o.via.str.size));
    case msgpack::type::BIN:
      return bytes_to_json(std::string_view(o.via.bin.ptr, o.via.bin.size));
    case msgpack::type::EXT:
      return bytes_to_json(std::string_view(o.via.ext.data(), o.via.ext.size));
    case msgpack::type::ARRAY: {
      auto out = nlohmann::json::array();
      for (std::uint32_t i = 0; i < o.via.array.size; ++i)
        out.push_back(to_json(o.via.array.ptr[i]));
      return out;
    }
    case msgpack::type::MAP: {
      auto out = nlohmann::json::object();
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        auto key = to_json(kv.key);
        std::string name = key.is_string() ? key.get<std::string>() : dump_line(key);
        out[name] = to_json(kv.val);
      }
      return out;
    }
  }
  return nullptr;
}

std::string dump_line(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace dpool::cli
