/* The broker's --data-dir (broker/src/journal.hpp, docs/protocol.md section 10): nothing the
 * broker acknowledged is lost when it is killed and started again.
 *
 * Unit tests of the journal file: a round trip, a torn tail ignored, a corrupt record or a
 * wrong version refused with the file's name, compaction keeping exactly the live state. Then
 * real processes: a hand-played client (FakePeer) shows the broker itself keeps accepted tasks
 * and un-ACKed results (it never resubmits), a dpool::Client sees every result exactly once
 * across a SIGKILL, a detached job survives, and a bad directory is one line at start.
 */
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "dpool/error.hpp"
#include "journal.hpp"
#include "support/cli.hpp"
#include "support/collector.hpp"
#include "support/fake_peer.hpp"
#include "support/process.hpp"

using namespace dpool;
using namespace dpool::test;
using dpool::detail::Journal;
using dpool::detail::JournalState;
using dpool::detail::read_journal;

namespace {

wire::TaskSpec spec_of(std::uint64_t id, const std::string& function = "square") {
  wire::TaskSpec s;
  s.id = id;
  s.function = function;
  return s;
}

wire::Result result_of(std::uint64_t id, Status status = Status::kOk) {
  wire::Result r;
  r.id = id;
  r.status = status;
  r.host = "h";
  return r;
}

std::string file_of(const TempDir& dir) { return dir.path() + "/journal"; }

void resize(const std::string& path, std::uintmax_t size) {
  std::filesystem::resize_file(path, size);
}

/* Ten tasks for session "c-1", results for 0..4, ACKs for 0..1; a job with two tasks, one done. */
void append_sample(Journal& j) {
  for (std::uint64_t i = 0; i < 10; ++i)
    j.task(false, "c-1", i, 3, spec_of(i), "args" + std::to_string(i));
  for (std::uint64_t i = 0; i < 5; ++i)
    j.result(false, "c-1", i, result_of(i), "value" + std::to_string(i), 0);
  j.ack("c-1", {0, 1});
  j.job("j-1", "c-2", "square");
  j.task(true, "j-1", 0, 3, spec_of(7), "a");
  j.task(true, "j-1", 1, 3, spec_of(8), "b");
  j.result(true, "j-1", 1, result_of(8, Status::kError), "", 2);
  j.seal("j-1", "a note");
  j.commit();
}

void expect_sample(const JournalState& s) {
  ASSERT_EQ(s.sessions.size(), 1u);
  const auto& c = s.sessions.at("c-1");
  EXPECT_EQ(c.tasks.size(), 5u);
  EXPECT_EQ(c.tasks.at(7).payload, "args7");
  EXPECT_EQ(c.tasks.at(7).spec.function, "square");
  EXPECT_EQ(c.tasks.at(7).attempts, 3u);
  EXPECT_EQ(c.results.size(), 3u);
  EXPECT_EQ(c.results.at(4).payload, "value4");
  ASSERT_EQ(s.jobs.size(), 1u);
  const auto& job = s.jobs.at("j-1");
  EXPECT_TRUE(job.sealed);
  EXPECT_EQ(job.note, "a note");
  EXPECT_EQ(job.function, "square");
  EXPECT_EQ(job.tasks.size(), 1u);
  ASSERT_EQ(job.results.size(), 1u);
  EXPECT_EQ(job.results.at(1).meta.status, Status::kError);
  EXPECT_EQ(job.results.at(1).items, 2u);
}

TEST(Journal, ReplaysWhatWasAppended) {
  TempDir dir;
  { Journal j(dir.path()); append_sample(j); }
  Journal again(dir.path());
  expect_sample(again.take_state());
}

TEST(Journal, ForgetsPurgedSessionsAndForgottenJobs) {
  TempDir dir;
  {
    Journal j(dir.path());
    append_sample(j);
    j.purge("c-1");
    j.forget("j-1");
    j.commit();
  }
  const auto s = read_journal(file_of(dir));
  EXPECT_TRUE(s.sessions.empty());
  EXPECT_TRUE(s.jobs.empty());
}

TEST(Journal, IgnoresATornTail) {
  TempDir dir;
  {
    Journal j(dir.path());
    append_sample(j);
    j.task(false, "c-1", 99, 3, spec_of(99), "last");
    j.commit();
  }
  resize(file_of(dir), std::filesystem::file_size(file_of(dir)) - 3);  // killed mid-write
  Journal again(dir.path());
  auto s = again.take_state();
  expect_sample(s);
  EXPECT_FALSE(s.sessions.at("c-1").tasks.contains(99));
}

TEST(Journal, RefusesACorruptRecordBeforeTheTailNamingTheFile) {
  TempDir dir;
  { Journal j(dir.path()); append_sample(j); }
  {
    std::fstream f(file_of(dir), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);  // inside the first record's body
    f.put('\x7f');
  }
  try {
    Journal again(dir.path());
    FAIL() << "a corrupt journal was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file_of(dir)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
  }
}

TEST(Journal, RefusesAnotherFormatVersion) {
  TempDir dir;
  const auto path = dir.write("journal", std::string("DPJL\x02\0\0\0", 8));
  try {
    Journal j(dir.path());
    FAIL() << "a journal of version 2 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("version 2"), std::string::npos) << e.what();
  }
}

TEST(Journal, RefusesASecondBrokerOnTheSameDirectory) {
  TempDir dir;
  Journal first(dir.path());
  EXPECT_THROW(Journal second(dir.path()), Error);
}

TEST(Journal, CompactionKeepsExactlyTheLiveState) {
  TempDir dir;
  Journal j(dir.path(), Journal::Options{.min_compact_bytes = 64 * 1024, .growth = 2});
  const std::string big(1000, 'x');
  // Many tasks come and go; ten stay live, and five results stay un-ACKed.
  for (std::uint64_t i = 0; i < 1000; ++i) {
    j.task(false, "c-1", i, 3, spec_of(i), big);
    if (i >= 10) j.result(false, "c-1", i, result_of(i), "v", 0);
    if (i >= 15) j.ack("c-1", {i});
    j.commit();
  }
  EXPECT_LT(j.file_bytes(), 64u * 1024 * 2) << "never compacted";
  const auto s = read_journal(file_of(dir));
  const auto& c = s.sessions.at("c-1");
  ASSERT_EQ(c.tasks.size(), 10u);
  EXPECT_EQ(c.tasks.begin()->first, 0u);
  EXPECT_EQ(c.tasks.rbegin()->first, 9u);
  ASSERT_EQ(c.results.size(), 5u);
  EXPECT_EQ(c.results.begin()->first, 10u);
  EXPECT_FALSE(std::filesystem::exists(file_of(dir) + ".tmp"));
}

/* ---- Real processes --------------------------------------------------------------------- */

std::vector<std::string> data_flags(const TempDir& dir) {
  return {"--data-dir", dir.path() + "/data"};
}

BrokerProcess restart(BrokerProcess& broker, const TempDir& dir) {
  broker.process.kill();
  return BrokerProcess::start(broker.endpoint, 200ms, data_flags(dir));
}

long long value_of(const std::string& bytes) {
  return msgpack::unpack(bytes.data(), bytes.size()).get().as<long long>();
}

/* A hand-played client: SUBMITs `n` squares and waits for their ACCEPT. */
void submit_squares(FakePeer& client, std::uint64_t n) {
  wire::Submit submit;
  std::vector<std::string> payloads;
  for (std::uint64_t i = 0; i < n; ++i) {
    submit.tasks.push_back(spec_of(i));
    payloads.push_back(pack_args(static_cast<long long>(i)));
  }
  client.send(Command::kHello, wire::Hello{"test", 1, "client"});
  client.send(Command::kSubmit, submit, payloads);
  auto accept = client.expect<wire::Accept>(Command::kAccept, 10s);
  ASSERT_TRUE(accept);
  ASSERT_EQ(accept->body.ids.size(), n);
}

/* Says HELLO (the broker then sends every un-ACKed result) until `n` distinct results came. */
std::map<std::uint64_t, long long> results_after_hello(FakePeer& client, std::uint64_t n) {
  std::map<std::uint64_t, long long> values;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (values.size() < n && std::chrono::steady_clock::now() < deadline) {
    client.send(Command::kHello, wire::Hello{"test", 1, "client"});
    while (auto r = client.expect<wire::ResultBatch>(Command::kResult, 500ms)) {
      for (std::size_t i = 0; i < r->body.results.size(); ++i) {
        values[r->body.results[i].id] = value_of(r->payloads[i]);
      }
    }
  }
  return values;
}

TEST(DataDir, AcceptedTasksSurviveAKilledBrokerWithoutBeingSentAgain) {
  TempDir dir;
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 200ms, data_flags(dir));
  zmq::context_t context;
  FakePeer client(context, broker.endpoint, "c-accepted", 200ms);
  submit_squares(client, 20);  // no worker yet: all queued
  broker = restart(broker, dir);
  auto worker = start_worker(broker.endpoint, 2);
  const auto values = results_after_hello(client, 20);
  ASSERT_EQ(values.size(), 20u) << broker.process.log();
  for (const auto& [id, v] : values) EXPECT_EQ(v, static_cast<long long>(id * id));
}

TEST(DataDir, ResultsNotYetAcknowledgedSurviveAKilledBroker) {
  TempDir dir;
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 200ms, data_flags(dir));
  auto worker = start_worker(broker.endpoint, 2);
  zmq::context_t context;
  FakePeer client(context, broker.endpoint, "c-unacked", 200ms);
  submit_squares(client, 10);
  ASSERT_EQ(results_after_hello(client, 10).size(), 10u);  // never ACKed
  worker.kill();  // nobody could run them again: only the journal can give them back
  broker = restart(broker, dir);
  const auto values = results_after_hello(client, 10);
  ASSERT_EQ(values.size(), 10u) << broker.process.log();
  for (const auto& [id, v] : values) EXPECT_EQ(v, static_cast<long long>(id * id));
}

TEST(DataDir, EveryResultArrivesExactlyOnceWhenTheBrokerIsKilledMidRun) {
  TempDir dir;
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 200ms, data_flags(dir));
  auto worker = start_worker(broker.endpoint, 2);
  const std::size_t n = 2000;
  Collector results(n);
  Client client(client_config(broker.endpoint));
  for (std::size_t i = 0; i < n; ++i) {
    client.submit("slow_square", pack_args(static_cast<long long>(i), 1), results.slot(i));
  }
  ASSERT_TRUE(wait_for([&] { return results.done() >= 200; }, 60s));
  broker = restart(broker, dir);
  ASSERT_TRUE(results.wait_all(120s)) << results.done() << " of " << n << "\n"
                                      << broker.process.log();
  EXPECT_EQ(results.not_exactly_once(), 0u);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(results.result(i).ok())
        << "task " << i << ": " << results.result(i).meta.error_message;
    ASSERT_EQ(results.result(i).as<long long>("slow_square"), static_cast<long long>(i * i));
  }
}

TEST(DataDir, ADetachedJobSurvivesARestart) {
  TempDir dir;
  auto broker = BrokerProcess::start("tcp://127.0.0.1:0", 200ms, data_flags(dir));
  const std::uint64_t n = 30;
  {
    Client submitter(client_config(broker.endpoint));
    std::vector<std::future<TaskResult>> accepted;
    for (std::uint64_t i = 0; i < n; ++i) {
      auto promise = std::make_shared<std::promise<TaskResult>>();
      accepted.push_back(promise->get_future());
      TaskOptions options;
      options.job = "kept";
      options.index = i;
      submitter.submit("square", pack_args(static_cast<long long>(i)),
                       [promise](TaskResult&& r) { promise->set_value(std::move(r)); }, options);
    }
    for (auto& a : accepted) ASSERT_EQ(a.wait_for(20s), std::future_status::ready);
    auto sealed = submitter.job("kept", JobOp::kSeal, n);
    ASSERT_EQ(sealed.wait_for(20s), std::future_status::ready);
  }
  broker = restart(broker, dir);
  auto worker = start_worker(broker.endpoint, 2);
  Client reader(client_config(broker.endpoint));
  ASSERT_TRUE(wait_for([&] {
    auto f = reader.job("kept", JobOp::kInfo, 0);
    if (f.wait_for(20s) != std::future_status::ready) return false;
    auto i = f.get();
    return i.found && i.sealed && i.finished == n;
  }, 60s)) << broker.process.log();
  auto page = reader.fetch("kept", 0, 1000);
  ASSERT_EQ(page.wait_for(20s), std::future_status::ready);
  auto got = page.get();
  ASSERT_EQ(got.meta.results.size(), n);
  for (std::uint64_t i = 0; i < n; ++i)
    EXPECT_EQ(value_of(got.values[i].to_string()), static_cast<long long>(i * i));
}

/* Runs dpool-broker with `flags` until it exits; its exit status and output. */
std::pair<int, std::string> broker_fails_with(std::vector<std::string> flags) {
  std::vector<std::string> argv{DPOOL_BROKER_BIN, "--bind", "tcp://127.0.0.1:0"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Process broker(argv);
  const auto status = broker.wait(20s);
  EXPECT_TRUE(status.has_value()) << "the broker did not exit";
  return {status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1, broker.log()};
}

TEST(DataDir, AnUnusableDirectoryIsOneClearLineAtStart) {
  TempDir dir;
  const auto file = dir.write("plain-file", "x");
  const auto [code, out] = broker_fails_with({"--data-dir", file + "/data"});
  EXPECT_EQ(code, 2) << out;
  expect_one_line(out);
  EXPECT_NE(out.find(file + "/data"), std::string::npos) << out;
}

TEST(DataDir, ACorruptJournalIsOneClearLineNamingTheFile) {
  TempDir dir;
  std::filesystem::create_directory(dir.path() + "/data");
  const auto journal = dir.write("data/journal", "this is not a journal at all");
  const auto [code, out] = broker_fails_with(data_flags(dir));
  EXPECT_EQ(code, 2) << out;
  expect_one_line(out);
  EXPECT_NE(out.find(journal), std::string::npos) << out;
}

}  // namespace
