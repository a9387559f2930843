/* JSON <-> msgpack for the dpool command line: `dpool call` turns its JSON arguments into the
 * msgpack a task function expects, and the msgpack result back into JSON to print.
 *
 * JSON to msgpack: null, booleans, integers (signed and unsigned, 64 bits), floats, strings,
 * arrays and objects map onto their msgpack counterparts; JSON binary values become bin.
 * msgpack to JSON: the reverse; bin (and ext payloads) become a string when they are valid UTF-8
 * and base64 otherwise; map keys that are not strings are written as their JSON text. */
#pragma once

#include <string>
#include <string_view>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

namespace dpool::cli {

/* `text` as JSON, nesting at most `max_depth` levels (a scalar is 0 deep, [1] is 1 deep).
 * Throws nlohmann::json::exception for what is not JSON and Error(kUsage) for what nests
 * deeper: the check runs while parsing, so no input can build a value whose conversion would
 * recurse past the stack. */
[[nodiscard]] nlohmann::json parse_json(std::string_view text, std::size_t max_depth);

/* Packs `value` as msgpack. */
void pack_json(msgpack::packer<msgpack::sbuffer>& packer, const nlohmann::json& value);

/* The JSON form of a msgpack value. */
[[nodiscard]] nlohmann::json to_json(const msgpack::object& object);

/* Standard base64 (RFC 4648, with padding). */
[[nodiscard]] std::string base64(std::string_view bytes);

/* Whether `bytes` is well-formed UTF-8 (no overlong forms, no surrogates). */
[[nodiscard]] bool valid_utf8(std::string_view bytes);

/* `value` as one line of JSON; invalid UTF-8 in strings is replaced, never thrown on. */
[[nodiscard]] std::string dump_line(const nlohmann::json& value);

}  // namespace dpool::cli
