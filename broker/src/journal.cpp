/* The journal's file format, replay and compaction (journal.hpp says why it exists).
 *
 * File: an 8-octet header ("DPJL", then the format version as a little-endian u32), then
 * records, each [u32 length][u32 CRC-32 of the body][body], little-endian, the body one
 * msgpack array whose first element is the record type. Appending is the only write; a
 * crash can only tear the last record, which the length and CRC detect. A bad record with
 * more records after it cannot come from a crash, so it is an error, never skipped.
 *
 * Replay and compaction share one fold (fold_record): compaction reads the file back and
 * writes the fold as a fresh file, so the snapshot holds exactly what a replay would rebuild,
 * and the broker needs no second model of its state.
 */
#include "journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <msgpack.hpp>

#include "dpool/error.hpp"
#include "dpool/log.hpp"

namespace dpool::detail {
namespace {

constexpr std::string_view kMagic = "DPJL";
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kHeader = 8;
constexpr std::size_t kFrame = 8;                    // length + CRC
constexpr std::uint32_t kMaxRecord = 1u << 31;       // a larger length is corruption

enum Record : std::uint8_t {
  kTask = 1,
  kResult = 2,
  kAck = 3,
  kPurge = 4,
  kJob = 5,
  kSeal = 6,
  kForget = 7
};

constexpr std::array<std::uint32_t, 256> crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

/* CRC-32 (IEEE 802.3, as zlib's crc32). */
std::uint32_t crc32(std::string_view data) {
  static constexpr auto kTable = crc_table();
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) c = kTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

std::uint32_t get_u32(std::string_view in, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)]);
  return v;
}

std::string header() {
  std::string h(kMagic);
  put_u32(h, kVersion);
  return h;
}

/* One record: the framed msgpack array [type, fields...]. */
template <class... F>
std::string record(Record type, const F&... fields) {
  msgpack::sbuffer body;
  msgpack::packer<msgpack::sbuffer> pk(body);
  pk.pack_array(static_cast<std::uint32_t>(1 + sizeof...(F)));
  pk.pack(static_cast<std::uint8_t>(type));
  (pk.pack(fields), ...);
  std::string out;
  out.reserve(kFrame + body.size());
  put_u32(out, static_cast<std::uint32_t>(body.size()));
  put_u32(out, crc32({body.data(), body.size()}));
  out.append(body.data(), body.size());
  return out;
}

msgpack::type::raw_ref bin(std::string_view bytes) {
  return {bytes.data(), static_cast<std::uint32_t>(bytes.size())};
}

std::string errno_text() { return std::strerror(errno); }

/* Applies one record body to the state. Throws on a body that does not parse. */
void fold_record(JournalState& s, std::string_view body) {
  auto handle = msgpack::unpack(body.data(), body.size());
  const auto& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size == 0)
    throw std::runtime_error("not a record");
  auto at = [&o](std::uint32_t i) -> const msgpack::object& {
    if (i >= o.via.array.size) throw std::runtime_error("a field is missing");
    return o.via.array.ptr[i];
  };
  auto owner = [&](bool job, const std::string& name) -> JournalState::Owner& {
    return (job ? s.jobs : s.sessions)[name];
  };
  auto bytes = [](const msgpack::object& b) {
    const auto raw = b.as<msgpack::type::raw_ref>();
    return std::string(raw.ptr, raw.size);
  };
  switch (at(0).as<std::uint8_t>()) {
    case kTask:
      owner(at(1).as<bool>(), at(2).as<std::string>()).tasks[at(3).as<std::uint64_t>()] =
          JournalTask{at(4).as<std::uint32_t>(), at(5).as<wire::TaskSpec>(), bytes(at(6))};
      return;
    case kResult: {
      auto& w = owner(at(1).as<bool>(), at(2).as<std::string>());
      const auto id = at(3).as<std::uint64_t>();
      w.tasks.erase(id);
      w.results[id] =
          JournalResult{at(4).as<wire::Result>(), bytes(at(5)), at(6).as<std::uint32_t>()};
      return;
    }
    case kAck: {
      auto it = s.sessions.find(at(1).as<std::string>());
      if (it == s.sessions.end()) return;
      for (auto id : at(2).as<std::vector<std::uint64_t>>()) it->second.results.erase(id);
      return;
    }
    case kPurge:
      s.sessions.erase(at(1).as<std::string>());
      return;
    case kJob: {
      auto& j = s.jobs[at(1).as<std::string>()];
      j.submitter = at(2).as<std::string>();
      j.function = at(3).as<std::string>();
      return;
    }
    case kSeal: {
      auto& j = s.jobs[at(1).as<std::string>()];
      j.sealed = true;
      j.submitter.clear();
      j.note = at(2).as<std::string>();
      return;
    }
    case kForget:
      s.jobs.erase(at(1).as<std::string>());
      return;
    default:
      throw std::runtime_error("unknown record type " + std::to_string(at(0).as<std::uint32_t>()));
  }
}

/* The records that rebuild `s`, after the header. */
std::string snapshot(const JournalState& s) {
  std::string out = header();
  auto owner = [&out](bool job, const std::string& name, const JournalState::Owner& w) {
    for (const auto& [id, t] : w.tasks)
      out += record(kTask, job, name, id, t.attempts, t.spec, bin(t.payload));
    for (const auto& [id, r] : w.results)
      out += record(kResult, job, name, id, r.meta, bin(r.payload), r.items);
  };
  for (const auto& [name, w] : s.sessions) owner(false, name, w);
  for (const auto& [id, j] : s.jobs) {
    out += record(kJob, id, j.submitter, j.function);
    owner(true, id, j);
    if (j.sealed) out += record(kSeal, id, j.note);
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Errc::kConfig, "cannot read journal " + path + ": " + errno_text());
  std::ostringstream s;
  s << in.rdbuf();
  return std::move(s).str();
}

void check_header(const std::string& path, std::string_view data) {
  if (data.size() < kHeader || data.substr(0, kMagic.size()) != kMagic) {
    throw Error(Errc::kConfig, path + " is not a dpool journal (bad header)");
  }
  if (const auto v = get_u32(data, kMagic.size()); v != kVersion) {
    throw Error(Errc::kConfig, path + " is a journal of format version " + std::to_string(v) +
                                   "; this broker reads version " + std::to_string(kVersion));
  }
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

JournalState read_journal(const std::string& path) {
  const std::string data = read_file(path);
  check_header(path, data);
  JournalState state;
  std::size_t at = kHeader;
  while (at < data.size()) {
    const std::size_t left = data.size() - at;
    const std::uint32_t len = left >= kFrame ? get_u32(data, at) : 0;
    const bool whole = left >= kFrame && len <= kMaxRecord && len <= left - kFrame;
    const bool last = whole && at + kFrame + len == data.size();
    if (!whole ||
        (last && crc32(std::string_view(data).substr(at + kFrame, len)) != get_u32(data, at + 4))) {
      log::warn(
          "{}: ignoring {} bytes of a record torn at offset {} (the broker was stopped while "
          "writing it)",
          path, left, at);
      break;
    }
    const auto body = std::string_view(data).substr(at + kFrame, len);
    if (crc32(body) != get_u32(data, at + 4)) {
      throw Error(Errc::kConfig,
                  path + ": corrupt record at offset " + std::to_string(at) + " (CRC mismatch)");
    }
    try {
      fold_record(state, body);
    } catch (const std::exception& e) {
      throw Error(Errc::kConfig, path + ": corrupt record at offset " + std::to_string(at) + " (" +
                                     e.what() + ")");
    }
    at += kFrame + len;
  }
  return state;
}

Journal::Journal(std::string dir, Options options)
    : dir_(std::move(dir)), path_(dir_ + "/journal"), options_(options) {
  if (::mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST) {
    throw Error(Errc::kUsage, "cannot create data dir " + dir_ + ": " + errno_text());
  }
  struct stat st{};
  if (::stat(dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw Error(Errc::kUsage, "data dir " + dir_ + " is not a directory");
  }
  const auto lock = dir_ + "/lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) throw Error(Errc::kUsage, "cannot use data dir " + dir_ + ": " + errno_text());
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd_);
    throw Error(Errc::kUsage, "data dir " + dir_ + " is in use by another dpool-broker");
  }
  try {
    if (::access(path_.c_str(), F_OK) == 0) state_ = read_journal(path_);
    open_fresh(state_);
  } catch (...) {
    ::close(lock_fd_);
    throw;
  }
}

Journal::~Journal() {
  try {
    commit(true);
  } catch (const std::exception& e) {
    log::error("{}", e.what());
  }
  if (fd_ >= 0) ::close(fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

/* Writes `state` as a new file beside the journal and renames it over it: a crash leaves
 * either the old journal or the new one, never a mix. */
void Journal::open_fresh(const JournalState& state) {
  const auto bytes = snapshot(state);
  const auto tmp = path_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(Errc::kUsage, "cannot write in data dir " + dir_ + ": " + errno_text());
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  write_all(bytes);
  sync();
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    throw Error(Errc::kUsage, "cannot rename " + tmp + ": " + errno_text());
  }
  fsync_dir(dir_);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw Error(Errc::kUsage, "cannot open journal " + path_ + ": " + errno_text());
  file_bytes_ = snapshot_bytes_ = bytes.size();
  dirty_ = false;
}

void Journal::append(std::string body, bool promise) {
  buffer_ += body;
  must_sync_ = must_sync_ || promise;
}

void Journal::task(bool job, const std::string& owner, std::uint64_t id, std::uint32_t attempts,
                   const wire::TaskSpec& spec, std::string_view payload) {
  append(record(kTask, job, owner, id, attempts, spec, bin(payload)), true);
}

void Journal::result(bool job, const std::string& owner, std::uint64_t id, const wire::Result& meta,
                     std::string_view payload, std::uint32_t items) {
  append(record(kResult, job, owner, id, meta, bin(payload), items), false);
}

void Journal::ack(const std::string& session, const std::vector<std::uint64_t>& ids) {
  append(record(kAck, session, ids), false);
}

void Journal::purge(const std::string& session) { append(record(kPurge, session), false); }

void Journal::job(const std::string& id, const std::string& submitter,
                  const std::string& function) {
  append(record(kJob, id, submitter, function), true);
}

void Journal::seal(const std::string& id, const std::string& note) {
  append(record(kSeal, id, note), true);
}

void Journal::forget(const std::string& id) { append(record(kForget, id), false); }

void Journal::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    const auto n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(Errc::kInternal, "cannot write journal " + path_ + ": " + errno_text());
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void Journal::sync() {
  if (::fdatasync(fd_) != 0)
    throw Error(Errc::kInternal, "cannot sync journal " + path_ + ": " + errno_text());
}

void Journal::commit(bool sync_now) {
  if (fd_ < 0) return;
  if (!buffer_.empty()) {
    write_all(buffer_);
    file_bytes_ += buffer_.size();
    buffer_.clear();
    dirty_ = true;
  }
  if (dirty_ && (must_sync_ || sync_now)) {
    sync();
    dirty_ = false;
    must_sync_ = false;
  }
  if (file_bytes_ > std::max(options_.min_compact_bytes, options_.growth * snapshot_bytes_))
    compact();
}

void Journal::compact() {
  if (dirty_) sync();
  const auto before = file_bytes_;
  open_fresh(read_journal(path_));
  log::info("compacted the journal {} from {} to {} bytes", path_, before, file_bytes_);
}

}  // namespace dpool::detail
