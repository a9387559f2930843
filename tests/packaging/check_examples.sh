#!/usr/bin/env bash
# Runs the programs of examples/ and checks their output against what standard tools compute
# on the same input. Used twice (tests/CMakeLists.txt):
#   - `ctest -L examples`: on the programs of this build tree (one test per program);
#   - `ctest -L packaging`: by tests/packaging/examples.sh, on the programs of examples/ built
#     as an outside project against an installed dpool.
#
#   check_examples.sh EXAMPLES_DIR BROKER_BIN WORKER_BIN NAME...
#
# NAME is one of
#   etc_conf_sizes  "Total: N" equals the sum of `wc -c` over the same files (a file wc cannot
#                   read counts 0), for the default /etc/*.conf and for a folder made here;
#   md5_folder      the output equals `md5sum` of the same files, sorted by path (C locale), for
#                   a folder made here (an empty file, a 1 MiB one, a name with a space...);
#   countdown       a small count runs on 1 and on 2 processes and prints a speedup line;
#   squares         the demo client against BROKER_BIN and WORKER_BIN loading
#                   EXAMPLES_DIR/libdpool_math_tasks.so.
# Every program runs under `timeout` and every process started here is stopped on exit; the
# temporary directory is removed.
set -euo pipefail
examples=$1 broker_bin=$2 worker_bin=$3
shift 3

# The examples must run their own embedded cluster, whatever cluster this environment names.
unset DPOOL_BROKER DPOOL_CONFIG

work=$(mktemp -d "${TMPDIR:-/tmp}/dpool-examples.XXXXXX")
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

step() { echo "examples: $*"; }
fail() { echo "examples: FAILED: $*" >&2; exit 1; }
# run SECONDS NAME ARGS...: runs EXAMPLES_DIR/NAME, its stdout to $work/NAME.out and its
# stderr to $work/NAME.log; fails, showing both, when it fails or outlasts SECONDS.
run() {
  local seconds=$1 name=$2
  shift 2
  local rc=0
  timeout -k 5 "$seconds" "$examples/$name" "$@" >"$work/$name.out" 2>"$work/$name.log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "---- $name $* (stdout)"; cat "$work/$name.out"
    fail "$name $* exited with status $rc (124: it ran longer than $seconds s)"
  fi
}
# The size `wc -c` gives each file, 0 for those it cannot read (the seed's except clause).
wc_total() {
  local total=0 n f
  for f in "$@"; do
    n=$(wc -c 2>/dev/null <"$f") || n=0  # 2> first: it also silences the shell's own open
    total=$((total + n))
  done
  echo "$total"
}

check_etc_conf_sizes() {
  step "etc_conf_sizes on /etc/*.conf"
  local want
  want=$(shopt -s nullglob; wc_total /etc/*.conf)
  run 60 etc_conf_sizes
  [ "$(cat "$work/etc_conf_sizes.out")" = "Total: $want" ] ||
    fail "etc_conf_sizes printed '$(cat "$work/etc_conf_sizes.out")', wc -c sums to $want"

  # A folder whose *.conf names include what cannot be read: a directory and a dangling
  # symbolic link (0 each), besides an empty file, a large one and names with spaces; the
  # dot file and the .txt file do not match the pattern, the directory form counts the .txt.
  local d="$work/conf dir"
  mkdir -p "$d/sub.conf"
  printf 'hello\n' >"$d/a.conf"
  : >"$d/empty.conf"
  head -c 300000 /dev/urandom >"$d/big one.conf"
  ln -s "$d/missing" "$d/dangling.conf"
  printf 'hidden' >"$d/.hidden.conf"
  printf 'other' >"$d/other.txt"
  step "etc_conf_sizes on a pattern and on a folder made here"
  want=$(wc_total "$d"/*.conf)
  [ "$want" -eq 300006 ] || fail "the test's own sum is $want, not 300006"
  run 60 etc_conf_sizes "$d/*.conf" --processes 2
  [ "$(cat "$work/etc_conf_sizes.out")" = "Total: $want" ] ||
    fail "etc_conf_sizes '$d/*.conf' printed '$(cat "$work/etc_conf_sizes.out")', wc -c sums to $want"
  want=$(wc_total "$d"/*)
  run 60 etc_conf_sizes "$d" --processes 2
  [ "$(cat "$work/etc_conf_sizes.out")" = "Total: $want" ] ||
    fail "etc_conf_sizes '$d' printed '$(cat "$work/etc_conf_sizes.out")', wc -c sums to $want"
}

check_md5_folder() {
  local d="$work/md5 files"
  mkdir -p "$d/sub"
  : >"$d/empty"
  head -c 1048576 /dev/urandom >"$d/one MiB.bin"
  printf 'The quick brown fox jumps over the lazy dog' >"$d/fox.txt"
  seq 1 10000 >"$d/numbers"
  printf 'dot file' >"$d/.hidden"
  printf 'below' >"$d/sub/inner.txt"
  # The sentence's well-known digest: the reference itself is checked, not only compared.
  [ "$(md5sum <"$d/fox.txt" | cut -d' ' -f1)" = 9e107d9d372bb6826bd81d3542a419d6 ] || fail "md5sum is not md5sum"

  step "md5_folder on a folder made here, against md5sum"
  (find "$d" -maxdepth 1 -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$work/md5sum.want"
  [ "$(wc -l <"$work/md5sum.want")" -eq 5 ] || fail "the test's own listing is wrong"
  run 60 md5_folder "$d" --processes 2
  diff -u "$work/md5sum.want" "$work/md5_folder.out" || fail "md5_folder differs from md5sum"

  step "md5_folder --recursive, against md5sum"
  (find "$d" -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$work/md5sum.want"
  run 60 md5_folder --recursive "$d" --processes 2
  diff -u "$work/md5sum.want" "$work/md5_folder.out" || fail "md5_folder --recursive differs from md5sum"
}

check_countdown() {
  step "countdown from 20,000,000, 4 times, on 1 and 2 processes"
  run 120 countdown --count 20000000 --times 4 --processes 2
  local out=$work/countdown.out
  cat "$out"
  grep -qx 'countdown from 20000000, 4 times' "$out" || fail "no header line"
  grep -Eqx '1 process: +[0-9]+\.[0-9]{2} s \([0-9]+\.[0-9]{2} s counting\)' "$out" || fail "no time on 1 process"
  grep -Eqx '2 processes: +[0-9]+\.[0-9]{2} s \([0-9]+\.[0-9]{2} s counting\)' "$out" || fail "no time on 2 processes"
  # Only its form: the value depends on how many cores are free while the test runs.
  grep -Eqx 'speedup: [0-9]+\.[0-9]{2}x with 2 processes' "$out" || fail "no speedup line"
}

check_squares() {
  local endpoint=ipc://$work/broker.sock
  step "squares through $broker_bin and $worker_bin --plugin libdpool_math_tasks.so"
  timeout -k 5 120 "$broker_bin" --bind "$endpoint" --heartbeat-interval 200 </dev/null >"$work/broker.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 150); do grep -q "listening on" "$work/broker.log" && break; sleep 0.1; done
  grep -q "listening on" "$work/broker.log" || fail "the broker did not start"
  timeout -k 5 120 "$worker_bin" --broker "$endpoint" --processes 2 --heartbeat-interval 200 \
    --plugin "$examples/libdpool_math_tasks.so" </dev/null >"$work/worker.log" 2>&1 &
  pids+=($!)
  run 60 squares --broker "$endpoint" --count 2000
  # sum of i*i for i < n is (n-1) n (2n-1) / 6
  grep -Eq "^sum of i\*i for i < 2000 = $((1999 * 2000 * 3999 / 6)) \(0 wrong\)" "$work/squares.out" ||
    fail "squares printed '$(cat "$work/squares.out")'"
}

[ $# -gt 0 ] || fail "no example named"
for name in "$@"; do
  case $name in
    etc_conf_sizes | md5_folder | countdown | squares) "check_$name" ;;
    *) fail "unknown example $name" ;;
  esac
done
step "ok"
