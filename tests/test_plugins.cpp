/* Plugins end to end: dpool-worker --plugin with a plugin that links the static worker library
 * (tests/plugin_tasks.cpp) and one that only includes the headers (examples/math_tasks.cpp),
 * alone and together, called through dpool::Client. Both kinds must register into the
 * worker's one registry: the worker offers their tasks, and a plugin sees the host's. */
#include <gtest/gtest.h>

#include <algorithm>
#include <future>

#include "support/collector.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;

namespace {

Process start_plugin_worker(const std::string& endpoint, const std::vector<std::string>& plugins) {
  std::vector<std::string> argv{DPOOL_WORKER_BIN, "--broker", endpoint, "--processes", "1",
                                "--heartbeat-interval", "200"};
  for (const auto& p : plugins) {
    argv.emplace_back("--plugin");
    argv.push_back(p);
  }
  return Process(argv);
}

TaskResult run_one(Client& client, const std::string& function, std::string args) {
  auto promise = std::make_shared<std::promise<TaskResult>>();
  auto future = promise->get_future();
  client.submit(function, std::move(args),
                [promise](TaskResult&& r) { promise->set_value(std::move(r)); });
  if (future.wait_for(30s) != std::future_status::ready)
    throw std::runtime_error(function + ": no result in time");
  return future.get();
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

TEST(Plugins, PluginLinkingTheWorkerLibraryRegistersIntoTheWorkersRegistry) {
  auto broker = BrokerProcess::start();
  auto worker = start_plugin_worker(broker.endpoint, {DPOOL_TEST_PLUGIN});
  Client client(client_config(broker.endpoint));
  EXPECT_EQ(run_one(client, "cube", pack_args(3)).as<long long>("cube"), 27);
  auto names = run_one(client, "plugin_task_names", pack_args())
                   .as<std::vector<std::string>>("plugin_task_names");
  EXPECT_TRUE(contains(names, "cube"));
  EXPECT_TRUE(contains(names, "echo")) << "the plugin should see the host's built-ins";
  // Argument checking runs in the plugin's copy of the library code.
  auto wrong = run_one(client, "cube", pack_args(std::string("three")));
  ASSERT_EQ(wrong.meta.status, Status::kError);
  EXPECT_EQ(wrong.meta.error_type, "dpool::ArgumentError");
  EXPECT_NE(wrong.meta.error_message.find("cube expects (long long)"), std::string::npos)
      << wrong.meta.error_message;
}

TEST(Plugins, HeaderOnlyAndLinkingPluginsShareOneRegistry) {
  auto broker = BrokerProcess::start();
  auto worker = start_plugin_worker(broker.endpoint, {DPOOL_MATH_PLUGIN, DPOOL_TEST_PLUGIN});
  Client client(client_config(broker.endpoint));
  EXPECT_EQ(run_one(client, "square", pack_args(7)).as<long long>("square"), 49);
  EXPECT_EQ(run_one(client, "cube", pack_args(-2)).as<long long>("cube"), -8);
  EXPECT_EQ(run_one(client, "echo", pack_args(std::string("hi"))).as<std::string>("echo"), "hi");
  auto names = run_one(client, "plugin_task_names", pack_args())
                   .as<std::vector<std::string>>("plugin_task_names");
  for (const char* name : {"square", "countdown", "cube", "plugin_task_names", "echo", "sleep"}) {
    EXPECT_TRUE(contains(names, name)) << name;
  }
}
