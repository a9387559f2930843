/* Template definitions for client.hpp. */
#pragma once

#include <future>

namespace dpool {

template <class T>
T TaskResult::as(const std::string& function) const {
  throw_if_failed(function);
  try {
    msgpack::object_handle h = unpack_in_place(value);
    return h.get().as<T>();
  } catch (const std::exception& e) {
    throw Error(Errc::kUsage, function + " returned a value that is not the type asked for (" +
                                  e.what() + ")");
  }
}

template <class R, class... A>
R call(Client& client, const std::string& function, const A&... args) {
  auto promise = std::make_shared<std::promise<TaskResult>>();
  auto future = promise->get_future();
  client.submit(function, pack_args(args...),
                [promise](TaskResult&& r) { promise->set_value(std::move(r)); });
  TaskResult r = future.get();
  if constexpr (std::is_void_v<R>) {
    r.throw_if_failed(function);
  } else {
    return r.template as<R>(function);
  }
}

}  // namespace dpool
