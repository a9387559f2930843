/* The broker's write-ahead journal (`--data-dir`): what the broker has promised, on disk.
 *
 * Why: SPEC promises that with --data-dir nothing the broker acknowledged is lost when it is
 * killed and started again. The broker acknowledges two things: a task (ACCEPT) and a result
 * it holds for delivery. So every accepted task is appended, and fdatasync'ed before its
 * ACCEPT leaves (one fsync per loop turn, whatever the number of SUBMITs in it); every kept
 * result is appended before its RESULT leaves; removals are small records. Nothing about
 * leases, workers or timers is written: after a restart a leased task is queued again
 * (at-least-once, as when its worker dies) and the client drops the duplicate result.
 *
 * Records name tasks by owner and the owner's own id (a session's routing id and the client's
 * task id, or a job's id and the position), never by ledger keys, which a new broker instance
 * draws afresh. Replay folds the records into a JournalState (the live state) and the broker
 * rebuilds itself from that. Compaction is the same fold written out as a fresh file
 * (temp, fsync, rename, fsync dir) once the file has grown past a multiple of the last one.
 * docs/protocol.md section 10 has the file format.
 */
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dpool/protocol.hpp"

namespace dpool::detail {

/* An accepted task as the journal keeps it: enough to admit it again. */
struct JournalTask {
  std::uint32_t attempts = 0;  // its max_attempts after the broker's defaults and caps
  wire::TaskSpec spec;
  std::string payload;
};

/* A finished result kept for delivery (a session, until ACKed) or for readers (a job). */
struct JournalResult {
  wire::Result meta;
  std::string payload;
  std::uint32_t items = 0;
};

/* The live state a journal describes: what replay rebuilds and compaction writes. */
struct JournalState {
  struct Owner {
    std::map<std::uint64_t, JournalTask> tasks;      // by the owner's id for the task
    std::map<std::uint64_t, JournalResult> results;  // ditto
    // Jobs only.
    std::string submitter;  // routing id of the session sending its tasks, until sealed
    std::string function;
    bool sealed = false;
    std::string note;
  };
  std::map<std::string, Owner> sessions;  // by routing id
  std::map<std::string, Owner> jobs;      // by job id
};

/* Reads a journal file and folds it. A torn tail (the broker killed mid-write) ends the read
 * with a warning; a bad header, a wrong version or a corrupt record before the tail throws
 * dpool::Error(kUsage) naming the file and the offset. */
[[nodiscard]] JournalState read_journal(const std::string& path);

class Journal {
 public:
  struct Options {
    std::uint64_t min_compact_bytes = 32u << 20;  // never compact a smaller file
    std::uint64_t growth = 4;                     // compact past this many times the last snapshot
  };

  /* Opens (creating it if needed) and locks `dir`, replays its journal and starts a fresh
   * file holding exactly that state. Throws dpool::Error(kUsage), one line naming the path,
   * when the directory cannot be used or the journal is corrupt. */
  explicit Journal(std::string dir, Options options);
  explicit Journal(std::string dir) : Journal(std::move(dir), Options{}) {}
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  /* The replayed state; moved out, so call it once. */
  [[nodiscard]] JournalState take_state() { return std::move(state_); }

  // Appends (to a buffer: commit() writes). `job` says the owner is a job id, else a session.
  void task(bool job, const std::string& owner, std::uint64_t id, std::uint32_t attempts,
            const wire::TaskSpec& spec, std::string_view payload);
  void result(bool job, const std::string& owner, std::uint64_t id, const wire::Result& meta,
              std::string_view payload, std::uint32_t items);
  void ack(const std::string& session, const std::vector<std::uint64_t>& ids);
  void purge(const std::string& session);
  void job(const std::string& id, const std::string& submitter, const std::string& function);
  void seal(const std::string& id, const std::string& note);
  void forget(const std::string& id);

  /* Writes the buffer and fdatasyncs when it holds a promise (a task, a job, a seal) or
   * `sync` asks; then compacts if the file has grown enough. Throws dpool::Error(kInternal)
   * on an I/O error: the broker must not acknowledge what it could not write. */
  void commit(bool sync = false);
  [[nodiscard]] bool unsynced() const { return !buffer_.empty() || dirty_; }
  [[nodiscard]] std::uint64_t file_bytes() const { return file_bytes_; }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  void append(std::string body, bool promise);
  void write_all(std::string_view bytes);
  void sync();
  void compact();
  void open_fresh(const JournalState& state);

  std::string dir_;
  std::string path_;
  Options options_;
  int lock_fd_ = -1;
  int fd_ = -1;
  std::string buffer_;          // framed records not written yet
  bool must_sync_ = false;      // the buffer holds a promise
  bool dirty_ = false;          // written, not synced
  std::uint64_t file_bytes_ = 0;
  std::uint64_t snapshot_bytes_ = 0;
  JournalState state_;
};

}  // namespace dpool::detail
