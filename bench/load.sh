#!/usr/bin/env bash
# The load test (issue 7, item 4): one dpool-broker, 1,000 simulated worker hosts and 50 real
# clients (dpool-bench-load), 1,000,000 tasks; prints a table of the broker's throughput, CPU,
# peak memory and dead-worker detection time, and fails when any result is missing, repeated
# or wrong (bench/README.md, "Load test").
#
#   bench/load.sh [--smoke] [--no-build] [--workers N] [--clients N] [--tasks N] [--credit N]
#                 [--window N] [--heartbeat MS] [--broker-nofile N]
#
# Why it is built this way:
#   - a script of its own, not a mode of run.sh: run.sh compares dpool with a ceiling and a
#     peer workload by workload; this has neither, one broker and one driver process;
#   - the broker is the real binary started fresh here, so its /proc figures (VmHWM, CPU)
#     are its own and nothing else's; the driver reads them (--broker-pid);
#   - every wait is bounded (the driver's --timeout, `timeout` around it, 5 s for the broker
#     to stop) and the EXIT trap stops whatever was started;
#   - --broker-nofile starts the broker with that soft open-file limit (e.g. 1024, a common
#     default) to check that it still takes 1,050 connections.
# Exit status: 0 when the run passed every check, 1 when it failed (logs kept and named), 2 for
# a usage error.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DPOOL_BUILD_DIR:-$root/build-bench}
do_build=1
workers=1000 clients=50 tasks=1000000 credit=10 window=10000 heartbeat=1000 limit=900
nofile=

usage() {
  echo "usage: bench/load.sh [--smoke] [--no-build] [--workers N] [--clients N] [--tasks N] [--credit N]"
  echo "                     [--window N] [--heartbeat MS] [--broker-nofile N]"
}
number() { [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "load.sh: $1 wants a positive number" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case $1 in
    # Small enough for ctest; a short heartbeat so the dead worker is noticed within the run.
    --smoke) workers=50 clients=5 tasks=10000 heartbeat=200 limit=90 ;;
    --no-build) do_build=0 ;;
    --workers|--clients|--tasks|--credit|--window|--heartbeat|--broker-nofile)
      number "$1" "${2:-}"
      case $1 in
        --workers) workers=$2 ;; --clients) clients=$2 ;; --tasks) tasks=$2 ;;
        --credit) credit=$2 ;; --window) window=$2 ;; --heartbeat) heartbeat=$2 ;;
        --broker-nofile) nofile=$2 ;;
      esac
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "load.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
liveness=3

log() { printf '%s\n' "$*" >&2; }

if [ "$do_build" = 1 ]; then
  if [ ! -f "$build/CMakeCache.txt" ]; then
    log "== configuring $build (Release)"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDPOOL_BUILD_TESTS=OFF >/dev/null
  fi
  log "== building dpool-broker and dpool-bench-load"
  cmake --build "$build" -j"$(nproc)" --target dpool-broker --target dpool-bench-load >/dev/null
fi
broker_bin=$build/broker/dpool-broker
load_bin=$build/bench/dpool-bench-load
for bin in "$broker_bin" "$load_bin"; do
  [ -x "$bin" ] || { echo "load.sh: $bin is missing (build it, or drop --no-build)" >&2; exit 1; }
done

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/dpool-load.XXXXXX")
broker_log=$run_dir/broker.log
driver_log=$run_dir/driver.log
broker_pid='' driver_pid='' broker_files=-
keep_logs=0

# TERM, then KILL after 5 s; always reaps.
# shellcheck disable=SC2317  # called by cleanup, from the EXIT trap
stop() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  stop "$driver_pid"
  stop "$broker_pid"
  if [ "$keep_logs" = 1 ]; then log "load.sh: logs kept in $run_dir"; else rm -rf "$run_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nobody listens on; losing a race for it shows as a broker that never listens.
free_port() {
  local port _
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if [ -z "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]; then echo "$port"; return 0; fi
  done
  return 1
}

start_broker() {
  local port i
  port=$(free_port)
  endpoint=tcp://127.0.0.1:$port
  # A subshell that execs: the broker keeps the subshell's pid, and the limit is only its own.
  (
    [ -z "$nofile" ] || ulimit -Sn "$nofile"
    exec "$broker_bin" --bind "$endpoint" --heartbeat-interval "${heartbeat}ms" \
      --heartbeat-liveness "$liveness" --log-level warn
  ) >"$broker_log" 2>&1 &
  broker_pid=$!
  for ((i = 0; i < 100; i++)); do
    if [ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ]; then
      broker_files=$(awk '/^Max open files/ { print $4 }' "/proc/$broker_pid/limits")   # after its own raise
      return 0
    fi
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.05
  done
  log "load.sh: the broker did not listen on $endpoint"
  tail -5 "$broker_log" >&2
  return 1
}

declare -A r   # "id.key" -> value
collect() {
  local line word id
  while IFS= read -r line; do
    [[ $line == "RESULT "* ]] || continue
    log "   $line"
    id=
    for word in ${line#RESULT }; do
      case $word in
        id=*) id=${word#id=} ;;
        *=*) r["$id.${word%%=*}"]=${word#*=} ;;
      esac
    done
  done <"$1"
}
v() { echo "${r[$1]:--}"; }
mib() { awk -v b="$(v "$1")" 'BEGIN { if (b == "-") print "-"; else printf "%.1f", b / 1048576 }'; }
num() { awk -v x="$(v "$2")" -v f="$1" 'BEGIN { if (x == "-" || x < 0) print "-"; else printf f, x }'; }

print_table() {
  local commit
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$root" diff --quiet HEAD 2>/dev/null || commit+=" (with local changes)"
  echo
  echo "dpool $commit, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "broker started with a soft open-file limit of ${nofile:-$(ulimit -Sn)}, ran with $broker_files; its log: $(grep -c . "$broker_log" || true) lines"
  echo
  echo "| figure | value |"
  echo "|---|---|"
  echo "| workers (simulated hosts, credit $credit) / clients (window $window) / tasks | $(v load.run.workers) / $(v load.run.clients) / $(v load.run.tasks) |"
  echo "| throughput, tasks/s (first submission to last result) | $(num %.0f load.run.rate) |"
  echo "| wall seconds | $(num %.1f load.run.seconds) |"
  echo "| broker CPU seconds during the run (all its threads) | $(num %.1f load.run.broker_cpu) |"
  echo "| broker CPU a task, us | $(num %.1f load.run.broker_cpu_us_per_task) |"
  echo "| driver CPU seconds (the clients and the simulated workers, one process) | $(num %.1f load.run.driver_cpu) |"
  echo "| broker peak RSS (VmHWM), MiB | $(mib load.run.broker_hwm) |"
  echo "| broker RSS before the peers / all connected, no task / at the end, MiB | $(mib load.run.broker_rss_idle) / $(mib load.run.broker_rss_connected) / $(mib load.run.broker_rss_end) |"
  echo "| all workers registered after, s | $(num %.2f load.run.connect_seconds) |"
  echo "| dead worker: configured expiry (interval x liveness), ms | $(v load.dead.expiry_ms) ($(v load.dead.interval_ms) x $liveness; documented bound $(v load.dead.bound_ms)) |"
  echo "| dead worker: its $(v load.dead.leases) leases given to others after (first / last), ms | $(num %.0f load.dead.relet_first_ms) / $(num %.0f load.dead.relet_last_ms) |"
  echo "| dead worker: gone from dpool status after, ms (STATUS round trip) | $(num %.0f load.dead.status_gone_ms) ($(num %.0f load.dead.status_rtt_ms)) |"
  local passed=NO
  [ "$(v load.check.ok)" != 1 ] || passed=yes
  echo "| every result once and right? (missing / twice / wrong / failed) | $passed ($(v load.check.missing) / $(v load.check.twice) / $(v load.check.wrong) / $(v load.check.failed)) |"
  echo "| broker counters: completed / requeued / dropped | $(v load.check.broker_completed) / $(v load.check.broker_requeued) / $(v load.check.broker_dropped) |"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "== load test: $workers workers, $clients clients, $tasks tasks (heartbeat ${heartbeat} ms)"
start_broker
timeout "$limit" "$load_bin" --broker "$endpoint" --broker-pid "$broker_pid" --workers "$workers" \
  --clients "$clients" --tasks "$tasks" --credit "$credit" --window "$window" --heartbeat-ms "$heartbeat" --liveness "$liveness" \
  --timeout "$((limit - 10))" >"$run_dir/out" 2>"$driver_log" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_pid=
collect "$run_dir/out"
grep -h "lost (no heartbeat" "$broker_log" >&2 || true
alive=1
kill -0 "$broker_pid" 2>/dev/null || alive=0
print_table
if [ "$rc" != 0 ] || [ "$alive" = 0 ]; then
  [ "$alive" = 1 ] || log "load.sh: the broker died during the run"
  log "load.sh: FAILED (driver exit $rc); the driver's last words:"
  tail -15 "$driver_log" >&2
  keep_logs=1
  exit 1
fi
exit 0
