/* Printing a detached job's results (see results.hpp). */
#include "results.hpp"

#include <cstdio>

#include "dpool/codec.hpp"
#include "exec_output.hpp"
#include "json.hpp"

namespace dpool::cli {

ResultPrinter::ResultPrinter(std::string function, bool json)
    : function_(std::move(function)), json_(json) {}

void ResultPrinter::print(const wire::JobResult& result, const zmq::message_t& value) {
  const auto& meta = result.meta;
  const std::size_t calls = result.items > 0 ? result.items : 1;
  if (meta.status != Status::kOk) {
    for (std::size_t i = 0; i < calls; ++i)
      item(nullptr, meta, meta.error_type, meta.error_message);
    return;
  }
  msgpack::object_handle handle;
  try {
    handle = unpack_in_place(value);
  } catch (const std::exception& e) {
    for (std::size_t i = 0; i < calls; ++i)
      item(nullptr, meta, "BadResult", std::string("not msgpack: ") + e.what());
    return;
  }
  const auto& o = handle.get();
  if (result.items == 0) {
    item(&o, meta, {}, {});
    return;
  }
  if (o.type != msgpack::type::ARRAY || o.via.array.size != calls) {
    for (std::size_t i = 0; i < calls; ++i)
      item(nullptr, meta, "BadResult", "a chunk came back with the wrong number of items");
    return;
  }
  for (std::size_t i = 0; i < calls; ++i) {
    const auto& outcome = o.via.array.ptr[i];
    const bool well_formed = outcome.type == msgpack::type::ARRAY && outcome.via.array.size >= 2 &&
                             outcome.via.array.ptr[0].type == msgpack::type::POSITIVE_INTEGER;
    if (!well_formed) {
      item(nullptr, meta, "BadResult", "a malformed item outcome");
    } else if (outcome.via.array.ptr[0].via.u64 == 0) {
      item(&outcome.via.array.ptr[1], meta, {}, {});
    } else {
      const auto text = [&](std::uint32_t k) {
        const auto& f = outcome.via.array.ptr[k];
        return k < outcome.via.array.size && f.type == msgpack::type::STR ? f.as<std::string>()
                                                                          : std::string();
      };
      item(nullptr, meta, text(1), text(2));
    }
  }
}

void ResultPrinter::item(const msgpack::object* value, const wire::Result& meta,
                         const std::string& error_type, const std::string& error_message) {
  const auto number = ++item_;
  if (function_ == "exec") {
    auto o =
        value ? decode_exec(*value, std::nullopt) : failed_outcome(error_type, error_message, meta);
    o.text = "item " + std::to_string(number);
    o.host = meta.host;
    if (!o.ok) ++failed_;
    if (json_) {
      std::fputs(json_line(o).c_str(), stdout);
    } else {
      std::fwrite(o.out.data(), 1, o.out.size(), stdout);
      const auto err = stderr_text(o);
      if (!err.empty()) {
        std::fflush(stdout);
        std::fputs(err.c_str(), stderr);
      }
    }
    return;
  }
  if (!value) ++failed_;
  if (json_) {
    nlohmann::json j;
    j["item"] = number;
    j["ok"] = value != nullptr;
    if (value) {
      j["value"] = to_json(*value);
    } else {
      j["error_type"] = error_type;
      j["error_message"] = error_message;
    }
    if (!meta.host.empty()) j["host"] = meta.host;
    std::printf("%s\n", dump_line(j).c_str());
  } else if (value) {
    std::printf("%s\n", dump_line(to_json(*value)).c_str());
  } else {
    std::fflush(stdout);
    std::fprintf(stderr, "item %llu: %s: %s\n", static_cast<unsigned long long>(number),
                 error_type.c_str(), error_message.c_str());
  }
}

}  // namespace dpool::cli
