/* The consumer's client: `consumer-client ENDPOINT CHECK...` runs each named check against the
 * cluster and exits non-zero on the first wrong result (each call bounded in time). */
#include <dpool/client.hpp>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>

namespace {

template <class R, class... A>
R call_bounded(dpool::Client& client, const std::string& function, const A&... args) {
  auto promise = std::make_shared<std::promise<dpool::TaskResult>>();
  auto future = promise->get_future();
  client.submit(function, dpool::pack_args(args...),
                [promise](dpool::TaskResult&& r) { promise->set_value(std::move(r)); });
  if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    throw std::runtime_error(function + ": no result within 30 s");
  }
  return future.get().as<R>(function);
}

template <class T>
bool expect(const std::string& what, const T& got, const T& want) {
  const bool ok = got == want;
  std::fprintf(stderr, "consumer-client: %s: %s\n", what.c_str(), ok ? "ok" : "WRONG");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: consumer-client ENDPOINT (worker|plugin|plugin-in:EXE)...\n");
    return 2;
  }
  try {
    dpool::ClientConfig config;
    config.broker = argv[1];
    dpool::Client client(config);
    bool ok = true;
    for (int i = 2; i < argc; ++i) {
      const std::string check = argv[i];
      if (check == "worker") {
        ok &= expect("triple(14) == 42", call_bounded<long long>(client, "triple", 14LL), 42LL);
        long long sum = 0;
        for (long long x = 0; x < 100; ++x) sum += call_bounded<long long>(client, "triple", x);
        ok &= expect("sum of triple(0..99) == 14850", sum, 14850LL);
      } else if (check == "plugin") {
        ok &= expect("reverse(\"dpool\") == \"loopd\"",
                     call_bounded<std::string>(client, "reverse", std::string("dpool")),
                     std::string("loopd"));
        ok &= expect("the plugin sees the host's built-in echo",
                     call_bounded<bool>(client, "has_task", std::string("echo")), true);
      } else if (check.rfind("plugin-in:", 0) == 0) {
        ok &= expect("the plugin runs in " + check.substr(10),
                     call_bounded<std::string>(client, "host_of"), check.substr(10));
      } else {
        std::fprintf(stderr, "consumer-client: unknown check %s\n", check.c_str());
        return 2;
      }
      if (!ok) return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer-client: %s\n", e.what());
    return 1;
  }
}
