/* CURVE and safe defaults (docs/security.md): who may connect, in which role, where the broker
 * may listen, and how bad keys are reported.
 *
 * Keys are made fresh in a temporary folder for each test (zmq_curve_keypair, written as
 * `dpool keygen --out` writes them). Brokers run in process on a free loopback port, so their
 * counters can be read, or as real processes where a test is about flags and exit codes;
 * workers and the command line run as real processes. A refused handshake is observed as the
 * event ZeroMQ reports on the refused socket (a monitor), not by waiting for a silence; a
 * refused command as the broker's drop counter moving while its peer tables stay empty.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <thread>

#include <gtest/gtest.h>
#include <zmq.hpp>

#include "dpool/broker.hpp"
#include "dpool/client.hpp"
#include "dpool/codec.hpp"
#include "dpool/curve.hpp"
#include "dpool/error.hpp"
#include "dpool/log.hpp"
#include "dpool/util.hpp"
#include "support/cli.hpp"
#include "support/config_files.hpp"
#include "support/process.hpp"

namespace dpool::test {
namespace {

namespace fs = std::filesystem;

/* A key pair written as PREFIX.key (0600) and PREFIX.pub; returns PREFIX. */
std::string keygen(const std::string& prefix) {
  char pub[41], sec[41];
  EXPECT_EQ(zmq_curve_keypair(pub, sec), 0);
  const int fd = ::open((prefix + ".key").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  EXPECT_GE(fd, 0);
  const std::string line = std::string(sec) + "\n";
  EXPECT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  ::close(fd);
  std::ofstream(prefix + ".pub") << pub << "\n";
  return prefix;
}

std::string public_of(const std::string& prefix) { return load_public_key(prefix + ".pub"); }

/* A broker with CURVE on: alice may be a client, the keys in workers/ may be workers. */
class Curve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    log::init("broker", std::getenv("DPOOL_TEST_LOG") ? std::getenv("DPOOL_TEST_LOG") : "error");
  }

  void SetUp() override {
    fs::create_directory(dir_.path() + "/workers");
    broker_key_ = keygen(dir_.path() + "/broker");
    alice_ = keygen(dir_.path() + "/alice");
    worker_ = keygen(dir_.path() + "/workers/w1");
    stranger_ = keygen(dir_.path() + "/stranger");
  }

  void start_broker() {
    BrokerConfig c;
    c.bind = "tcp://127.0.0.1:0";
    c.heartbeat.interval = 50ms;
    c.curve.secret_key = broker_key_;
    c.curve.client_keys = {alice_ + ".pub"};
    c.curve.worker_keys = {dir_.path() + "/workers"};
    broker_ = std::make_unique<Broker>(c);
    endpoint_ = broker_->endpoint();
    thread_ = std::thread([this] { broker_->run(); });
  }

  void TearDown() override {
    if (broker_) {
      broker_->stop();
      thread_.join();
    }
  }

  ClientConfig client_config(const std::string& prefix) const {
    ClientConfig c;
    c.broker = endpoint_;
    c.heartbeat.interval = 100ms;
    c.connect_timeout = 500ms;
    if (!prefix.empty()) c.curve = {broker_key_ + ".pub", prefix + ".key"};
    return c;
  }

  /* A DEALER with `prefix`'s keys ("" for none), watched for handshake events. */
  struct Peer {
    zmq::socket_t socket;
    zmq::socket_t monitor;
  };
  Peer peer(const std::string& prefix) {
    Peer p{zmq::socket_t(context_, zmq::socket_type::dealer),
           zmq::socket_t(context_, zmq::socket_type::pair)};
    p.socket.set(zmq::sockopt::linger, 0);
    p.socket.set(zmq::sockopt::routing_id,
                 (prefix.empty() ? std::string("w-nokey") : fs::path(prefix).filename().string()));
    if (!prefix.empty())
      apply_curve(p.socket, *load_curve(CurvePeerConfig{broker_key_ + ".pub", prefix + ".key"}));
    const std::string address = "inproc://monitor-" + std::to_string(++monitors_);
    EXPECT_EQ(zmq_socket_monitor(
                  p.socket.handle(), address.c_str(),
                  ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                      ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL),
              0);
    p.monitor.connect(address);
    p.socket.connect(endpoint_);
    return p;
  }

  /* The first handshake event on `p` within 5 s (0 when none came). */
  static std::uint16_t handshake(Peer& p) {
    p.monitor.set(zmq::sockopt::rcvtimeo, 5000);
    zmq::message_t event, address;
    if (!p.monitor.recv(event)) return 0;
    (void)p.monitor.recv(address);
    std::uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof id);
    return id;
  }

  /* Waits until the broker has counted more than `before` drops (published once a tick). */
  bool dropped_more_than(std::uint64_t before) {
    return wait_for([&] { return broker_->stats().dropped > before; }, 5s);
  }

  TempDir dir_;
  std::string broker_key_, alice_, worker_, stranger_;
  zmq::context_t context_;
  int monitors_ = 0;
  std::unique_ptr<Broker> broker_;
  std::string endpoint_;
  std::thread thread_;
};

wire::Ready ready() {
  wire::Ready r;
  r.host = "test";
  r.credit = 1;
  r.functions = {"square"};
  return r;
}

// ---- Who may connect ----------------------------------------------------------------------

TEST_F(Curve, AnAllowedClientAndWorkerRunAJob) {
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 200ms,
                                     {"--curve-key", broker_key_, "--client-key", alice_ + ".pub",
                                      "--worker-key", dir_.path() + "/workers"});
  auto worker = start_worker(broker.endpoint, 1, 200ms,
                             {"--broker-key", broker_key_ + ".pub", "--curve-key", worker_});
  const auto run = run_dpool({"--broker-key", broker_key_ + ".pub", "--curve-key", alice_, "call",
                              "square", "7", "--broker", broker.endpoint});
  EXPECT_EQ(run.exit_code, 0) << run.err << "\nbroker: " << broker.process.log()
                              << "\nworker: " << worker.log();
  EXPECT_EQ(run.out, "49\n");
}

TEST_F(Curve, AClientWithoutKeysIsToldWithinItsConnectTimeout) {
  start_broker();
  Client client(client_config(""));
  std::promise<TaskResult> done;
  const auto started = Clock::now();
  client.submit("square", pack_args(7LL), [&](TaskResult&& r) { done.set_value(std::move(r)); });
  auto result = done.get_future();
  ASSERT_EQ(result.wait_for(10s), std::future_status::ready) << "the client hangs";
  const auto r = result.get();
  EXPECT_LT(Clock::now() - started, 5s);
  EXPECT_EQ(r.meta.status, Status::kUnreachable);
  EXPECT_NE(r.meta.error_message.find("CURVE"), std::string::npos) << r.meta.error_message;
  EXPECT_EQ(broker_->stats().clients, 0u);
}

TEST_F(Curve, AClientWithAKeyInNoListIsRefusedAndCounted) {
  start_broker();
  Client client(client_config(stranger_));
  EXPECT_TRUE(dropped_more_than(0)) << "the refused handshake was not counted";
  EXPECT_FALSE(client.wait_connected(300ms));
  EXPECT_EQ(broker_->stats().clients, 0u);
}

TEST_F(Curve, AWorkerWithoutKeysOrWithAKeyInNoListIsRefused) {
  start_broker();
  auto no_keys = peer("");
  auto stranger = peer(stranger_);
  send_message(no_keys.socket, {}, Command::kReady, ready());
  send_message(stranger.socket, {}, Command::kReady, ready());
  // Without keys the mechanisms differ: which side notices first decides how it is reported.
  const auto event = handshake(no_keys);
  EXPECT_TRUE(event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
              event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
      << event;
  EXPECT_EQ(handshake(stranger), ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  EXPECT_TRUE(dropped_more_than(0));
  EXPECT_EQ(broker_->stats().workers, 0u);
}

// ---- Roles --------------------------------------------------------------------------------

TEST_F(Curve, AWorkerKeyCannotSubmitTasks) {
  start_broker();
  auto w = peer(worker_);
  ASSERT_EQ(handshake(w), ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  wire::Submit submit;
  submit.tasks.push_back(wire::TaskSpec{});
  submit.tasks.back().id = 1;
  submit.tasks.back().function = "square";
  std::vector<zmq::message_t> payloads;
  payloads.emplace_back(pack_args(7LL));
  send_message(w.socket, {}, Command::kSubmit, submit, std::move(payloads));
  ASSERT_TRUE(dropped_more_than(0));
  const auto stats = broker_->stats();
  EXPECT_EQ(stats.clients, 0u);  // no session was opened for it
  EXPECT_EQ(stats.tasks, 0u);
}

TEST_F(Curve, AClientKeyCannotRegisterAsAWorker) {
  start_broker();
  auto c = peer(alice_);
  ASSERT_EQ(handshake(c), ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  send_message(c.socket, {}, Command::kReady, ready());
  ASSERT_TRUE(dropped_more_than(0));
  EXPECT_EQ(broker_->stats().workers, 0u);
  // The same key is served as what it is.
  Client client(client_config(alice_));
  EXPECT_TRUE(client.wait_connected(5s));
}

// ---- Where the broker may listen ------------------------------------------------------------

// 192.0.2.1 (TEST-NET-1) is on no interface here: an address the policy must judge, that no
// bind can reach. Past the policy the broker fails at the bind instead, which shows the
// policy let it through without anything ever listening beyond loopback.
constexpr const char* kRemote = "tcp://192.0.2.1:5555";

TEST_F(Curve, ANonLoopbackBindIsRefusedWithoutCurveOrInsecure) {
  Process broker({DPOOL_BROKER_BIN, "--bind", kRemote});
  const auto status = broker.wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(broker.log().find("refusing to listen on " + std::string(kRemote)), std::string::npos)
      << broker.log();
  EXPECT_NE(broker.log().find("CURVE"), std::string::npos) << broker.log();
}

TEST_F(Curve, ANonLoopbackBindIsAllowedWithCurve) {
  Process broker({DPOOL_BROKER_BIN, "--bind", kRemote, "--curve-key", broker_key_, "--client-key",
                  alice_ + ".pub"});
  const auto status = broker.wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(broker.log().find("refusing"), std::string::npos) << broker.log();
  EXPECT_NE(broker.log().find("cannot listen on " + std::string(kRemote)), std::string::npos)
      << broker.log();
}

TEST_F(Curve, InsecureAllowsANonLoopbackBindWithAWarning) {
  Process broker({DPOOL_BROKER_BIN, "--bind", kRemote, "--insecure"});
  ASSERT_TRUE(broker.wait(10s).has_value());
  EXPECT_NE(broker.log().find("without CURVE"), std::string::npos) << broker.log();
  EXPECT_NE(broker.log().find("cannot listen on " + std::string(kRemote)), std::string::npos)
      << broker.log();
}

// ---- Bad keys -------------------------------------------------------------------------------

TEST_F(Curve, BadKeysInAConfigFileNameTheFileLineAndCause) {
  const auto short_key = dir_.write("short.pub", "abc\n");
  const auto not_z85 = dir_.write("bad.pub", std::string(40, ',') + "\n");
  const auto open_secret = keygen(dir_.path() + "/open");
  ::chmod((open_secret + ".key").c_str(), 0644);
  const auto load = [](const std::string& file) {
    return [file] {
      WorkerConfig c;
      load_config_file(file, c);
    };
  };
  auto file = dir_.write("a.yaml", "curve:\n  broker_key: " + short_key + "\n");
  expect_config_error(load(file), file, 2,
                      {"curve.broker_key", short_key, "not a CURVE key", "found 3 characters"});
  file = dir_.write("b.yaml", "curve:\n  broker_key: " + not_z85 + "\n");
  expect_config_error(load(file), file, 2, {not_z85, "not a CURVE key"});
  file = dir_.write("c.yaml", "curve:\n  secret_key: missing.key\n");
  expect_config_error(load(file), file, 2, {"curve.secret_key", "missing.key", "no such file"});
  file = dir_.write("d.yaml", "curve:\n  secret_key: " + open_secret + ".key\n");
  expect_config_error(
      load(file), file, 2,
      {open_secret + ".key", "read or changed by others", "mode 0644", "chmod 600"});
  file = dir_.write("e.yaml", "curve:\n  broker_key: " + broker_key_ + ".key\n");
  expect_config_error(load(file), file, 2, {"this is a secret key", ".pub"});
  file =
      dir_.write("f.yaml", "broker:\n  curve:\n    client_keys: [" + alice_ + ".pub, nowhere/]\n");
  expect_config_error(
      [file] {
        BrokerConfig c;
        load_config_file(file, c);
      },
      file, 3, {"curve.client_keys", "nowhere/"});
  file = dir_.write("g.yaml", "curve:\n  secret_kee: x\n");
  expect_config_error(load(file), file, 2, {"unknown key 'curve.secret_kee'"});
}

TEST_F(Curve, RelativeKeyPathsAreTakenFromTheConfigFilesFolder) {
  const auto file =
      dir_.write("worker.yaml", "curve:\n  broker_key: broker.pub\n  secret_key: workers/w1\n");
  WorkerConfig c;
  load_config_file(file, c);
  const auto keys = load_curve(c.curve);
  ASSERT_TRUE(keys.has_value());
  EXPECT_EQ(keys->server, public_of(broker_key_));
  EXPECT_EQ(keys->public_key, public_of(worker_));
}

TEST_F(Curve, HalfAConfigurationIsAnError) {
  EXPECT_THROW((void)load_curve(CurvePeerConfig{broker_key_ + ".pub", ""}), Error);
  EXPECT_THROW((void)load_curve(CurvePeerConfig{"", alice_}), Error);
  CurveBrokerConfig b;
  b.secret_key = broker_key_;
  EXPECT_THROW((void)load_curve(b), Error);  // no one could connect
  b.client_keys = {alice_ + ".pub"};
  b.worker_keys = {alice_ + ".pub"};
  BrokerConfig c;
  c.bind = "tcp://127.0.0.1:0";
  c.curve = b;
  try {
    Broker broker(c);
    ADD_FAILURE() << "a key in both lists was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("both client_keys and worker_keys"), std::string::npos)
        << e.what();
  }
}

TEST_F(Curve, ABadKeyFlagIsOneLineAndExitCodeTwo) {
  Process worker({DPOOL_WORKER_BIN, "--broker-key", broker_key_ + ".pub", "--curve-key",
                  dir_.path() + "/no_such_key"});
  const auto status = worker.wait(10s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(worker.log().find(dir_.path() + "/no_such_key: no such file"), std::string::npos)
      << worker.log();
  const auto run = run_dpool({"--broker-key", "short", "--curve-key", alice_, "status"});
  EXPECT_EQ(run.exit_code, 2);
  expect_one_line(run.err);
}

TEST_F(Curve, ASecretKeyIsNeverPrinted) {
  const std::string secret = load_secret_key(alice_);
  const auto file = dir_.write(
      "client.yaml", "curve:\n  broker_key: broker.pub\n  secret_key: \"" + secret + "\"\n");
  ::chmod(file.c_str(), 0600);
  const auto run = run_dpool({"--config", file, "--print-config"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out.find(secret), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(kRedactedSecret), std::string::npos) << run.out;
  // A key file's path is not secret, and reads back.
  const auto by_path = run_dpool({"--curve-key", alice_ + ".key", "--print-config"});
  EXPECT_NE(by_path.out.find("secret_key: " + alice_ + ".key"), std::string::npos) << by_path.out;
  // The redacted form read back says what to do instead of failing obscurely.
  const auto back = dir_.write("back.yaml", run.out);
  try {
    ClientConfig c;
    load_config_file(back, c);
    ADD_FAILURE() << "a redacted key was read back";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("redacted by --print-config"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace dpool::test
