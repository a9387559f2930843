#!/usr/bin/env bash
# The benchmark suite: builds the bench programs if needed, runs every workload (or the ones
# named) with broker, workers and client as separate processes on loopback, and prints one
# table of dpool's figures beside the raw ZeroMQ ceiling and the peer (Python's
# multiprocessing.Pool; xargs and GNU parallel for the command line), with their ratio and the
# target from bench/README.md.
#
#   bench/run.sh [--quick | --smoke] [--repeat N] [--no-build] [--strict] [W1 ... W6]
#
# Why it is built this way:
#   - every measurement gets fresh processes (a broker and workers started for it, stopped
#     after it), so that one workload's leftovers (memory, queues, warm caches) never flatter
#     or hurt the next, and nothing runs beside a measurement but what it measures;
#   - the programs print `RESULT id=... key=value` lines and this script only collects them and
#     does arithmetic with awk: every figure can be checked by running one program by hand;
#   - CPU is read from /proc by the programs themselves (bench/common.cpp), so nothing beyond
#     what scripts/setup.sh installs is needed; GNU parallel and python3 are used when present
#     and their columns say "n/a" when not;
#   - with --repeat N each figure is the median of N runs: the machine this runs on is shared.
# Exit status: 0 when every measurement ran, 1 when one failed (see the log it names), 2 for a
# usage error, 3 with --strict when a target was missed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DPOOL_BUILD_DIR:-$root/build-bench}
size=full
repeat=1
do_build=1
strict=0
selected=()

usage() { echo "usage: bench/run.sh [--quick | --smoke] [--repeat N] [--no-build] [--strict] [W1 ... W6]"; }
while [ $# -gt 0 ]; do
  case $1 in
    --quick) size=quick ;;
    --smoke) size=smoke ;;
    --repeat) repeat=${2:?--repeat needs a number}; shift ;;
    --no-build) do_build=0 ;;
    --strict) strict=1 ;;
    -h|--help) usage; exit 0 ;;
    W[1-6]|w[1-6]) selected+=("${1^^}") ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ $repeat =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --repeat wants a positive number" >&2; exit 2; }
[ ${#selected[@]} -gt 0 ] || selected=(W1 W2 W3 W4 W5 W6)

# Sizes: the issue's (full), a minute's worth (quick), and enough to prove it runs (smoke).
case $size in
  full)  w1=100000 w2=2000 w3=200 w4=1000 w5=1000000 w6=100 w6_mib=16 ;;
  quick) w1=20000  w2=500  w3=40  w4=200  w5=100000  w6=10  w6_mib=16 ;;
  smoke) w1=2000   w2=50   w3=4   w4=20   w5=10000   w6=4   w6_mib=1 ;;
esac

log() { printf '%s\n' "$*" >&2; }

# ---- building ---------------------------------------------------------------------------------
if [ "$do_build" = 1 ]; then
  if [ ! -f "$build/CMakeCache.txt" ]; then
    log "== configuring $build (Release)"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDPOOL_BUILD_TESTS=OFF >/dev/null
  fi
  log "== building the bench programs"
  cmake --build "$build" -j"$(nproc)" --target dpool-bench >/dev/null
fi
broker_bin=$build/broker/dpool-broker
dpool_bin=$build/client/dpool
zmq_bin=$build/bench/dpool-bench-zmq
client_bin=$build/bench/dpool-bench-client
worker_bin=$build/bench/dpool-bench-worker
for bin in "$broker_bin" "$dpool_bin" "$zmq_bin" "$client_bin" "$worker_bin"; do
  [ -x "$bin" ] || { echo "run.sh: $bin is missing (build it, or drop --no-build)" >&2; exit 1; }
done

# ---- processes --------------------------------------------------------------------------------
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/dpool-bench.XXXXXX")
servers=()   # pids of brokers and workers started and not yet stopped
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [ -n "${current:-}" ]; then kill -TERM "$current" 2>/dev/null || true; wait "$current" 2>/dev/null || true; fi
  stop_servers
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# TERM, then KILL whatever is still there after 5 s; always reaps.
stop_servers() {
  local pid i
  [ ${#servers[@]} -gt 0 ] || return 0
  kill -TERM "${servers[@]}" 2>/dev/null || true
  for pid in "${servers[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  servers=()
}

# A loopback port nobody listens on (there is a small race with other programs; the listen
# check in start_broker turns losing it into a clear failure).
free_port() {
  local port _
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if [ -z "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]; then echo "$port"; return 0; fi
  done
  return 1
}

server_log=$run_dir/servers.log
client_log=$run_dir/clients.log
start_server() {
  "$@" >>"$server_log" 2>&1 &
  servers+=("$!")
  last_pid=$!
}

# start_broker dpool|raw: sets endpoint and broker_pid once it listens.
start_broker() {
  local port i
  port=$(free_port)
  endpoint=tcp://127.0.0.1:$port
  # DPOOL_BENCH_DATA_DIR=PARENT: each dpool broker journals to a fresh folder under PARENT
  # (--data-dir), to measure what the journal costs; put PARENT on the disk to be measured.
  local data=()
  if [ -n "${DPOOL_BENCH_DATA_DIR:-}" ]; then data=(--data-dir "$(mktemp -d "$DPOOL_BENCH_DATA_DIR/broker.XXXXXX")"); fi
  if [ "$1" = dpool ]; then start_server "$broker_bin" --bind "$endpoint" --log-level error "${data[@]}"
  else start_server "$zmq_bin" broker --bind "$endpoint"; fi
  broker_pid=$last_pid
  # Without ss (iproute2) there is nothing to check with: the clients' own waits are bounded.
  command -v ss >/dev/null || { sleep 0.2; return 0; }
  for ((i = 0; i < 100; i++)); do
    [ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ] && return 0
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "run.sh: the $1 broker did not listen on $endpoint; see $server_log" >&2
  tail -5 "$server_log" >&2
  return 1
}

# A broker and one worker host of N processes; watch lists the pids whose CPU counts.
dpool_cluster() {
  start_broker dpool
  start_server "$worker_bin" --broker "$endpoint" --processes "$1" --log-level error
  watch=$broker_pid,$last_pid
}

# A raw broker and N raw worker processes.
raw_cluster() {
  local i
  start_broker raw
  watch=$broker_pid
  for ((i = 0; i < $1; i++)); do
    start_server "$zmq_bin" worker --connect "$endpoint"
    watch+=,$last_pid
  done
}

# ---- results ----------------------------------------------------------------------------------
declare -A results   # "id.key" -> space-separated values, one per repeat
failures=0

record() {
  local line word id
  while IFS= read -r line; do
    [[ $line == "RESULT "* ]] || continue
    log "   $line"
    id=
    for word in ${line#RESULT }; do
      case $word in
        id=*) id=${word#id=} ;;
        *=*) results["$id.${word%%=*}"]+="${word#*=} " ;;
      esac
    done
  done
}

# bounded SECONDS OUT CMD...: runs a client in the background, killed after SECONDS, its stdout
# to OUT. In the background so that a signal to this script is handled at once (bash runs traps
# only between foreground commands) and the cleanup can stop it.
current=
bounded() {
  local limit=$1 out=$2 rc=0
  shift 2
  timeout "$limit" "$@" >"$out" 2>>"$client_log" &
  current=$!
  wait "$current" || rc=$?
  current=
  return "$rc"
}

# measure SECONDS CMD...: runs a client and records its RESULT lines.
measure() {
  local rc=0
  bounded "$1" "$run_dir/out" "${@:2}" || rc=$?
  if [ "$rc" = 0 ]; then
    record <"$run_dir/out"
  else
    log "   FAILED (exit $rc): ${*:2}"
    failures=$((failures + 1))
  fi
}

# measure_repeated SECONDS CMD...: measure, --repeat times.
measure_repeated() {
  local r
  for ((r = 0; r < repeat; r++)); do measure "$@"; done
}

# A shell pipeline's wall seconds as a RESULT line (W4).
time_pipeline() {
  local id=$1 cmd=$2 start end rc=0
  start=$EPOCHREALTIME
  bounded 300 /dev/null bash -c "$cmd" || rc=$?
  end=$EPOCHREALTIME
  if [ "$rc" = 0 ]; then
    record <<<"RESULT id=$id seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }')"
  else
    log "   FAILED (exit $rc): $cmd"
    failures=$((failures + 1))
  fi
}

have_python() { command -v python3 >/dev/null; }
python_peer() { measure_repeated 600 python3 "$root/bench/python_pool.py" "$@"; }

# ---- workloads --------------------------------------------------------------------------------
w1() {
  log "== W1 throughput: $w1 squares, 2 worker processes, results in order"
  dpool_cluster 2
  local common=(--broker "$endpoint" --workers 2 --count "$w1" --watch "$watch")
  measure_repeated 600 "$client_bin" client "${common[@]}" --window 1000 --id w1.dpool.client
  measure_repeated 600 "$client_bin" map "${common[@]}" --chunksize 1 --id w1.dpool.map1
  measure_repeated 600 "$client_bin" map "${common[@]}" --chunksize 0 --id w1.dpool.map0
  stop_servers
  raw_cluster 2
  common=(--connect "$endpoint" --workers 2 --count "$w1" --watch "$watch" --window 1000)
  measure_repeated 300 "$zmq_bin" client "${common[@]}" --batch 1 --id w1.raw.b1
  measure_repeated 300 "$zmq_bin" client "${common[@]}" --batch 100 --id w1.raw.b100
  stop_servers
  if have_python; then
    python_peer w1 --count "$w1" --chunksize 1 --id w1.py.cs1
    python_peer w1 --count "$w1" --id w1.py.cs0
  fi
}

w2() {
  log "== W2 latency: one square at a time, $w2 times, 1 worker process"
  dpool_cluster 1
  measure_repeated 300 "$client_bin" latency --broker "$endpoint" --workers 1 --count "$w2" --warmup 100 --id w2.dpool
  stop_servers
  raw_cluster 1
  measure_repeated 300 "$zmq_bin" client --connect "$endpoint" --workers 1 --mode latency --count "$w2" --warmup 100 --id w2.raw
  stop_servers
  have_python && python_peer w2 --count "$w2" --warmup 100 --processes 1 --id w2.py
  return 0
}

w3() {
  log "== W3 scaling: $w3 tasks of 10 ms of CPU on 1 and on 2 worker processes"
  local n
  for n in 1 2; do
    dpool_cluster "$n"
    measure_repeated 300 "$client_bin" cpu --broker "$endpoint" --workers "$n" --count "$w3" --warmup "$((2 * n))" \
      --watch "$watch" --id "w3.dpool.$n"
    stop_servers
    raw_cluster "$n"
    measure_repeated 300 "$zmq_bin" client --connect "$endpoint" --workers "$n" --task spin_10ms --count "$w3" \
      --warmup "$((2 * n))" --watch "$watch" --id "w3.raw.$n"
    stop_servers
    have_python && python_peer w3 --count "$w3" --processes "$n" --id "w3.py.$n"
  done
  return 0
}

w4() {
  log "== W4 command line: $w4 runs of true, 2 at a time (dpool's cluster start-up included)"
  local r
  for ((r = 0; r < repeat; r++)); do
    time_pipeline w4.dpool "seq $w4 | '$dpool_bin' map --local 2 -- true"
    time_pipeline w4.xargs "seq $w4 | xargs -P2 -n1 true"
    # Only GNU parallel: moreutils ships a different program under the same name.
    if parallel --version 2>/dev/null | grep -q 'GNU parallel'; then
      time_pipeline w4.parallel "seq $w4 | parallel --will-cite -j2 true"
    fi
  done
}

w5() {
  log "== W5 broker memory: $w5 queued tasks of 100 bytes, no worker"
  start_broker dpool
  measure 300 "$client_bin" fill --broker "$endpoint" --broker-pid "$broker_pid" --count "$w5" --bytes 97 --id w5.dpool
  stop_servers
  start_broker raw
  measure 300 "$zmq_bin" client --connect "$endpoint" --mode fill --broker-pid "$broker_pid" --count "$w5" --bytes 97 \
    --id w5.raw
  stop_servers
}

w6() {
  log "== W6 payloads: $w6 tasks of $w6_mib MiB in and out, 4 in flight, 2 worker processes"
  dpool_cluster 2
  measure_repeated 600 "$client_bin" payload --broker "$endpoint" --workers 2 --count "$w6" --mib "$w6_mib" \
    --in-flight 4 --warmup 2 --watch "$watch" --id w6.dpool
  stop_servers
  raw_cluster 2
  measure_repeated 600 "$zmq_bin" client --connect "$endpoint" --workers 2 --task echo_bytes --bytes "$((w6_mib << 20))" \
    --window 4 --count "$w6" --warmup 2 --watch "$watch" --id w6.raw
  stop_servers
}

# ---- the table --------------------------------------------------------------------------------
# The median of a key's values, or "-" when it has none.
value() {
  local v=${results[$1]:-}
  [ -n "$v" ] || { echo -; return; }
  tr ' ' '\n' <<<"$v" | grep -v '^$' | sort -g |
    awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ratio A B: A / B, or "-" when either is missing or B is 0.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else print a / b }'
}

fmt() {
  if [ "$2" = - ]; then echo -; else awk -v v="$2" "BEGIN { printf \"$1\", v }"; fi
}

table_rows=()
target_misses=0
# row WORKLOAD METRIC FORMAT DPOOL CEILING PEER VS OP LIMIT TARGET-TEXT
#   VS: ceiling | peer | abs (the target applies to the dpool figure itself) | none
row() {
  local workload=$1 metric=$2 format=$3 d=$4 c=$5 p=$6 vs=$7 op=$8 limit=$9 text=${10}
  local ratio=- judged=- verdict=
  case $vs in
    ceiling) ratio=$(ratio "$d" "$c"); judged=$ratio ;;
    peer) ratio=$(ratio "$d" "$p"); judged=$ratio ;;
    abs) ratio=$(ratio "$d" "$c"); judged=$d ;;
    none) ratio=$(ratio "$d" "$c") ;;
  esac
  if [ "$vs" = none ]; then verdict=
  elif [ "$judged" = - ]; then verdict=n/a
  elif awk -v x="$judged" -v y="$limit" "BEGIN { exit !(x $op y) }"; then verdict=pass
  else verdict=FAIL; target_misses=$((target_misses + 1)); fi
  table_rows+=("| $workload | $metric | $(fmt "$format" "$d") | $(fmt "$format" "$c") | $(fmt "$format" "$p") | $(fmt '%.2fx' "$ratio") | $text | $verdict |")
}

build_table() {
  local k
  for k in "${selected[@]}"; do
    case $k in
      W1)
        row W1 "tasks/s, Client window 1000, 1 task a message" '%.0f' "$(value w1.dpool.client.rate)" \
          "$(value w1.raw.b1.rate)" "$(value w1.py.cs1.rate)" ceiling '>=' 0.70 ">= 0.70x ceiling"
        row W1 "tasks/s, Pool.map chunksize 1" '%.0f' "$(value w1.dpool.map1.rate)" \
          "$(value w1.raw.b1.rate)" "$(value w1.py.cs1.rate)" ceiling '>=' 0.70 ">= 0.70x ceiling"
        row W1 "tasks/s, Pool.map default chunksize (ceiling: 100 a message)" '%.0f' "$(value w1.dpool.map0.rate)" \
          "$(value w1.raw.b100.rate)" "$(value w1.py.cs0.rate)" peer '>=' 1.0 ">= 1.0x peer"
        row W1 "CPU s of all processes, Client" '%.2f' "$(value w1.dpool.client.cpu)" \
          "$(value w1.raw.b1.cpu)" "$(value w1.py.cs1.cpu)" none '' '' "-"
        row W1 "CPU s of all processes, map chunksize 1" '%.2f' "$(value w1.dpool.map1.cpu)" \
          "$(value w1.raw.b1.cpu)" "$(value w1.py.cs1.cpu)" none '' '' "-"
        row W1 "CPU s of all processes, map default chunksize" '%.3f' "$(value w1.dpool.map0.cpu)" \
          "$(value w1.raw.b100.cpu)" "$(value w1.py.cs0.cpu)" none '' '' "-"
        # Context switches hardly depend on the machine's other load: the path's structure.
        row W1 "context switches a task, all processes, Client" '%.2f' \
          "$(ratio "$(value w1.dpool.client.switches)" "$w1")" "$(ratio "$(value w1.raw.b1.switches)" "$w1")" \
          "$(ratio "$(value w1.py.cs1.switches)" "$w1")" none '' '' "-"
        row W1 "context switches a task, all processes, map chunksize 1" '%.2f' \
          "$(ratio "$(value w1.dpool.map1.switches)" "$w1")" "$(ratio "$(value w1.raw.b1.switches)" "$w1")" \
          "$(ratio "$(value w1.py.cs1.switches)" "$w1")" none '' '' "-" ;;
      W2)
        row W2 "p50 us, one apply at a time" '%.0f' "$(value w2.dpool.p50)" "$(value w2.raw.p50)" \
          "$(value w2.py.p50)" ceiling '<=' 1.2 "<= 1.2x ceiling"
        row W2 "p99 us" '%.0f' "$(value w2.dpool.p99)" "$(value w2.raw.p99)" "$(value w2.py.p99)" none '' '' "-" ;;
      W3)
        row W3 "speedup, 2 workers over 1" '%.2f' \
          "$(ratio "$(value w3.dpool.1.seconds)" "$(value w3.dpool.2.seconds)")" \
          "$(ratio "$(value w3.raw.1.seconds)" "$(value w3.raw.2.seconds)")" \
          "$(ratio "$(value w3.py.1.seconds)" "$(value w3.py.2.seconds)")" abs '>=' 1.95 ">= 1.95"
        row W3 "s on 1 worker" '%.2f' "$(value w3.dpool.1.seconds)" "$(value w3.raw.1.seconds)" \
          "$(value w3.py.1.seconds)" none '' '' "-"
        row W3 "s on 2 workers" '%.2f' "$(value w3.dpool.2.seconds)" "$(value w3.raw.2.seconds)" \
          "$(value w3.py.2.seconds)" none '' '' "-" ;;
      W4)
        row W4 "s, map --local 2 (ceiling: xargs -P2, peer: GNU parallel)" '%.2f' "$(value w4.dpool.seconds)" \
          "$(value w4.xargs.seconds)" "$(value w4.parallel.seconds)" ceiling '<=' 1.5 "<= 1.5x ceiling"
        row W4 "the same, against GNU parallel" '%.2f' "$(value w4.dpool.seconds)" \
          "$(value w4.xargs.seconds)" "$(value w4.parallel.seconds)" peer '<' 1.0 "< 1.0x peer" ;;
      W5)
        row W5 "broker bytes a queued task beyond its payload" '%.0f' "$(value w5.dpool.beyond_payload)" \
          "$(value w5.raw.beyond_payload)" - abs '<=' 200 "<= 200 B" ;;
      W6)
        row W6 "GB/s, in + out" '%.2f' "$(value w6.dpool.gbps)" "$(value w6.raw.gbps)" - abs '>=' 1.0 ">= 1 GB/s" ;;
    esac
  done
}

print_table() {
  local commit
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$root" diff --quiet HEAD 2>/dev/null || commit+=" (with local changes)"
  echo
  echo "dpool $commit, $(nproc) cores, sizes: $size, median of $repeat, $(date -u '+%Y-%m-%d %H:%M UTC'), load average before: $load_before"
  echo
  echo "| workload | metric | dpool | ceiling (raw ZeroMQ) | peer (Python Pool) | ratio | target | result |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${table_rows[@]}"
}

# Printed with the table: a figure taken beside someone else's build is not a baseline.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for k in "${selected[@]}"; do
  case $k in W1) w1 ;; W2) w2 ;; W3) w3 ;; W4) w4 ;; W5) w5 ;; W6) w6 ;; esac
done
build_table
print_table
if [ "$failures" -gt 0 ]; then
  echo "run.sh: $failures measurement(s) failed; logs: $client_log, $server_log (kept)" >&2
  trap - EXIT
  stop_servers
  exit 1
fi
[ "$strict" = 1 ] && [ "$target_misses" -gt 0 ] && exit 3
exit 0
