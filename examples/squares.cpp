/* squares: the demo client. Sends N tasks `square(i)` to a broker, checks every result and
 * prints the sum with the rate achieved.
 *   squares --broker ADDR [--count N]
 */
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

#include <CLI/CLI.hpp>
#include <dpool/client.hpp>

int main(int argc, char** argv) {
  CLI::App app{"squares: sums i*i for i < N on a dpool cluster"};
  std::string broker = dpool::kDefaultBroker;
  long long count = 100000;
  app.add_option("--broker", broker, "broker address");
  app.add_option("--count", count, "how many tasks")->check(CLI::Range(1LL, 100000000LL));
  CLI11_PARSE(app, argc, argv);

  try {
    dpool::ClientConfig config;
    config.broker = broker;
    dpool::Client client(config);
    std::mutex mutex;
    std::condition_variable all_done;
    long long done = 0, wrong = 0, failed = 0;
    long long sum = 0;
    std::string first_error;
    const auto start = std::chrono::steady_clock::now();
    for (long long i = 0; i < count; ++i) {
      client.submit("square", dpool::pack_args(i), [&, i](dpool::TaskResult&& r) {
        std::lock_guard lock(mutex);
        if (!r.ok()) {
          if (failed++ == 0) first_error = r.meta.error_type + ": " + r.meta.error_message;
        } else {
          const auto v = r.as<long long>("square");
          wrong += v != i * i;
          sum += v;
        }
        if (++done == count) all_done.notify_one();
      });
    }
    std::unique_lock lock(mutex);
    all_done.wait(lock, [&] { return done == count; });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (failed) {
      std::fprintf(stderr, "squares: %lld of %lld tasks failed; first: %s\n", failed, count,
                   first_error.c_str());
      return 1;
    }
    std::printf("sum of i*i for i < %lld = %lld (%lld wrong) in %.2f s, %.0f tasks/s\n", count, sum,
                wrong, seconds, static_cast<double>(count) / seconds);
    return wrong ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "squares: %s\n", e.what());
    return 2;
  }
}
