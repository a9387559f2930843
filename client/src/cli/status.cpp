/* dpool status: the broker's own account of itself (STATUS / REPORT), as tables or JSON.
 *
 * Everything shown comes from one REPORT, so the figures agree with each other; nothing is
 * computed here but the layout. The JSON form has every field of the report, for scripts.
 */
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iterator>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "dpool/config.hpp"
#include "dpool/quota.hpp"
#include "json.hpp"

namespace dpool::cli {
namespace {

struct StatusOptions {
  std::string broker;
  bool json = false;
};

std::string age_text(std::uint64_t ms) {
  const auto s = ms / 1000;
  char buf[48];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  else if (s < 86400)
    std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s % 3600 / 60));
  else
    std::snprintf(buf, sizeof buf, "%llud%02lluh", static_cast<unsigned long long>(s / 86400),
                  static_cast<unsigned long long>(s % 86400 / 3600));
  return buf;
}

/* 1536 as "1.5KiB": a use read at a glance (limits are exact, format_size). */
std::string bytes_text(std::uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f%s" : "%.1f%s", value, kUnits[unit]);
  std::string text = buf;
  if (const auto dot = text.find(".0");
      dot != std::string::npos && !std::isdigit(static_cast<unsigned char>(text[dot + 2]))) {
    text.erase(dot, 2);
  }
  return text;
}

std::string limit_text(std::uint64_t limit, const std::string& what) {
  return limit == 0 ? "no " + what + " limit" : what;
}

std::string joined(const std::vector<std::string>& names, std::size_t max_width) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string more = "+" + std::to_string(names.size() - i) + " more";
    if (!out.empty() && out.size() + 1 + names[i].size() > max_width) return out + " " + more;
    out += (out.empty() ? "" : ",") + names[i];
  }
  return out.empty() ? "-" : out;
}

std::string state_of(const wire::JobInfo& j) {
  if (j.sealed && j.finished == j.total) return j.note == "cancelled" ? "cancelled" : "done";
  return j.sealed ? "running" : "submitting";
}

/* Rows of cells printed with each column as wide as its widest cell. */
void table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

nlohmann::json job_json(const wire::JobInfo& j) {
  return {{"id", j.job},
          {"state", state_of(j)},
          {"function", j.function},
          {"total", j.total},
          {"finished", j.finished},
          {"failed", j.failed},
          {"cancelled", j.cancelled},
          {"running", j.running},
          {"sealed", j.sealed},
          {"age_ms", j.age_ms},
          {"expires_in_ms", j.expires_in_ms},
          {"note", j.note}};
}

nlohmann::json failure_json(const wire::FailureRecord& f) {
  nlohmann::json history = nlohmann::json::array();
  for (const auto& a : f.result.history) {
    history.push_back({{"attempt", a.attempt},
                       {"status", to_string(a.status)},
                       {"type", a.error_type},
                       {"message", a.error_message},
                       {"host", a.host},
                       {"pid", a.pid},
                       {"stderr", a.stderr_tail}});
  }
  return {{"function", f.function},
          {"job", f.job},
          {"age_ms", f.age_ms},
          {"status", to_string(f.result.status)},
          {"type", f.result.error_type},
          {"message", f.result.error_message},
          {"host", f.result.host},
          {"pid", f.result.pid},
          {"attempts", f.result.attempts},
          {"history", history}};
}

void print_json(const wire::Report& r, const std::string& broker) {
  nlohmann::json workers = nlohmann::json::array(), functions = nlohmann::json::array(),
                 jobs = nlohmann::json::array();
  for (const auto& w : r.workers) {
    workers.push_back({{"host", w.host},
                       {"pid", w.pid},
                       {"processes", w.processes},
                       {"credit", w.credit},
                       {"functions", w.functions},
                       {"tags", w.tags},
                       {"in_flight", w.in_flight},
                       {"done", w.done},
                       {"failed", w.failed},
                       {"last_heartbeat_ms", w.heard_ms_ago},
                       {"draining", w.draining}});
  }
  for (const auto& f : r.functions) {
    functions.push_back({{"name", f.name},
                         {"requires", f.needs},
                         {"queued", f.queued},
                         {"running", f.running},
                         {"delayed", f.delayed},
                         {"workers", f.workers},
                         {"unserved_ms", f.oldest_ms},
                         {"waiting", f.waiting}});
  }
  nlohmann::json failures = nlohmann::json::array(), sessions = nlohmann::json::array();
  for (const auto& f : r.failures) failures.push_back(failure_json(f));
  for (const auto& s : r.sessions) {
    sessions.push_back({{"host", s.host},
                        {"pid", s.pid},
                        {"name", s.name},
                        {"tasks", s.tasks},
                        {"bytes", s.bytes},
                        {"refused", s.refused},
                        {"last_heard_ms", s.heard_ms_ago}});
  }
  const nlohmann::json limits = {{"tasks_per_client", r.max_tasks_per_client},
                                 {"bytes_per_client", r.max_bytes_per_client},
                                 {"message_size", r.max_message_size}};
  for (const auto& j : r.jobs) jobs.push_back(job_json(j));
  nlohmann::json out = {{"broker", broker}, {"version", r.version}, {"uptime_ms", r.uptime_ms},
                        {"clients", r.clients}, {"rate_per_s", r.rate}, {"completed", r.completed},
                        {"failed", r.failed}, {"requeued", r.requeued}, {"dropped", r.dropped},
                        {"retried", r.retried}, {"expired", r.expired}, {"workers", workers},
                        {"functions", functions}, {"jobs", jobs}, {"failures", failures},
                        {"limits", limits}, {"limited", r.limited}, {"unsent", r.unsent},
                        {"sessions", sessions}};
  std::printf("%s\n", dump_line(out).c_str());
}

/* The latest tasks that failed for good, with what their last attempt left on stderr. */
void print_failures(const wire::Report& r) {
  if (r.failures.empty()) return;
  std::printf("\nrecent failures: %zu (retried %llu, expired %llu)\n", r.failures.size(),
              static_cast<unsigned long long>(r.retried),
              static_cast<unsigned long long>(r.expired));
  std::vector<std::vector<std::string>> rows{
      {"AGE", "FUNCTION", "JOB", "ATTEMPTS", "HOST", "ERROR"}};
  for (const auto& f : r.failures) {
    auto error = one_line(f.result.error_type + ": " + f.result.error_message);
    if (error.size() > 120) error = error.substr(0, 117) + "...";
    rows.push_back({age_text(f.age_ms) + " ago", f.function, f.job.empty() ? "-" : f.job,
                    std::to_string(f.result.attempts), f.result.host.empty() ? "-" : f.result.host,
                    error});
  }
  table(rows);
  const auto& last = r.failures.back().result;
  if (!last.history.empty() && !last.history.back().stderr_tail.empty()) {
    std::printf("last stderr of the latest failure:\n%s", last.history.back().stderr_tail.c_str());
    if (last.history.back().stderr_tail.back() != '\n') std::printf("\n");
  }
}

/* Each client's use of what the broker lets one client hold (0 in a limit: an older broker or
 * none). Only sessions holding something, or refused something, get a row. */
void print_sessions(const wire::Report& r) {
  const auto tasks = r.max_tasks_per_client ? with_commas(r.max_tasks_per_client) + " tasks"
                                            : limit_text(0, "task");
  const auto bytes =
      r.max_bytes_per_client ? format_size(r.max_bytes_per_client) : limit_text(0, "byte");
  std::printf("\nclients: %u  (limits per client: %s, %s; largest message %s; refused %s)\n",
              r.clients, tasks.c_str(), bytes.c_str(),
              r.max_message_size ? format_size(r.max_message_size).c_str() : "unlimited",
              with_commas(r.limited).c_str());
  std::vector<std::vector<std::string>> rows{
      {"HOST", "PID", "NAME", "HELD", "BYTES", "REFUSED", "HEARD"}};
  for (const auto& s : r.sessions) {
    if (s.tasks == 0 && s.refused == 0) continue;
    const auto held = r.max_tasks_per_client
                          ? with_commas(s.tasks) + "/" + with_commas(r.max_tasks_per_client)
                          : with_commas(s.tasks);
    rows.push_back({s.host.empty() ? "-" : s.host, std::to_string(s.pid),
                    s.name.empty() ? "-" : s.name, held, bytes_text(s.bytes),
                    with_commas(s.refused), age_text(s.heard_ms_ago) + " ago"});
  }
  if (rows.size() > 1) table(rows);
}

void print_text(const wire::Report& r, const std::string& broker) {
  std::printf("broker %s  version %s  up %s\n", broker.c_str(), r.version.c_str(),
              age_text(r.uptime_ms).c_str());
  std::printf(
      "clients %u  rate %.1f results/s (last minute)  completed %llu  failed %llu  requeued %llu  "
      "dropped %llu",
      r.clients, r.rate, static_cast<unsigned long long>(r.completed),
      static_cast<unsigned long long>(r.failed), static_cast<unsigned long long>(r.requeued),
      static_cast<unsigned long long>(r.dropped));
  // Only when it happened: a peer that stopped reading is worth a look, zero is noise.
  if (r.unsent > 0)
    std::printf("  unsent %llu (peers not reading)", static_cast<unsigned long long>(r.unsent));
  std::printf("\n");
  std::printf("\nworkers: %zu\n", r.workers.size());
  if (!r.workers.empty()) {
    std::vector<std::vector<std::string>> rows{
        {"HOST", "PID", "PROCS", "IN FLIGHT", "DONE", "FAILED", "HEARD", "FUNCTIONS", "TAGS"}};
    for (const auto& w : r.workers) {
      std::vector<std::string> tags;
      for (const auto& [k, v] : w.tags) tags.push_back(k + "=" + v);
      rows.push_back({w.draining ? w.host + " (draining)" : w.host, std::to_string(w.pid),
                      std::to_string(w.processes), std::to_string(w.in_flight),
                      std::to_string(w.done), std::to_string(w.failed),
                      age_text(w.heard_ms_ago) + " ago", joined(w.functions, 40),
                      joined(tags, 30)});
    }
    table(rows);
  }
  print_sessions(r);
  std::printf("\nqueues: %zu\n", r.functions.size());
  if (!r.functions.empty()) {
    std::vector<std::vector<std::string>> rows{
        {"FUNCTION", "REQUIRES", "QUEUED", "RUNNING", "RETRYING", "WORKERS", ""}};
    for (const auto& f : r.functions) {
      std::vector<std::string> needs;
      for (const auto& [k, v] : f.needs) needs.push_back(k + "=" + v);
      rows.push_back({f.name, needs.empty() ? "-" : joined(needs, 30), std::to_string(f.queued),
                      std::to_string(f.running), std::to_string(f.delayed),
                      std::to_string(f.workers), f.waiting.empty() ? "" : "waiting: " + f.waiting});
    }
    table(rows);
  }
  print_failures(r);
  std::printf("\njobs: %zu\n", r.jobs.size());
  if (!r.jobs.empty()) {
    std::vector<std::vector<std::string>> rows{
        {"JOB", "STATE", "DONE", "FAILED", "RUNNING", "AGE", "EXPIRES IN", "NOTE"}};
    for (const auto& j : r.jobs) {
      rows.push_back({j.job, state_of(j),
                      std::to_string(j.finished) + "/" + std::to_string(j.total),
                      std::to_string(j.failed), std::to_string(j.running), age_text(j.age_ms),
                      j.sealed && j.finished == j.total ? age_text(j.expires_in_ms) : "-", j.note});
    }
    table(rows);
  }
}

int run_status(const StatusOptions& options) {
  auto client = connect_client(options.broker);
  const auto report = client->status().get();
  if (options.json) print_json(report, client->config().broker);
  else print_text(report, client->config().broker);
  return std::fflush(stdout) == 0 ? 0 : 3;
}

}  // namespace

Command add_status(CLI::App& parent) {
  auto options = std::make_shared<StatusOptions>();
  auto* cmd = parent.add_subcommand("status", "shows the broker's workers, queues, jobs and rates");
  add_broker_option(*cmd, options->broker);
  cmd->add_flag("--json", options->json, "one JSON object, for scripts");
  return {cmd, [options] { return run_status(*options); }};
}

}  // namespace dpool::cli
