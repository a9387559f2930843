#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, docs/fuzzing.md) with clang, ASan and UBSan into
# build-fuzz/ (or $DPOOL_FUZZ_BUILD_DIR), and runs each for a bounded time:
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # default 60 s each, every target
# Each target starts from its generated seeds and the checked-in fuzz/corpus/<target>/, and
# keeps what it learns in build-fuzz/corpus/<target>/ for the next run. A crash, leak, sanitizer
# report, timeout or an allocation over -malloc_limit_mb (one driven by a length field) stops
# that target; its input is saved in build-fuzz/crashes/<target>/ and the script exits 1 once
# every target has run. Keep a fixed finding in tests/fuzz_regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
build=${DPOOL_FUZZ_BUILD_DIR:-build-fuzz}
all_targets=(fuzz_message fuzz_link fuzz_config fuzz_args)
targets=("${@:-${all_targets[@]}}")
jobs=$(( $(nproc) < 2 ? $(nproc) : 2 ))

scripts/setup.sh
command -v clang++ >/dev/null || { echo "fuzz: needs clang++ (Debian: apt-get install clang)" >&2; exit 2; }
# Every library is instrumented for coverage (fuzzer-no-link) and the sanitizers; only the four
# targets link libFuzzer itself.
# float-cast-overflow alone is recoverable, so that fuzz/ubsan.supp can let msgpack-c's known one
# pass; halt_on_error below still stops on every other report.
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
flags+=" -fsanitize-recover=float-cast-overflow -fno-omit-frame-pointer"
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPOOL_FUZZ=ON \
  -DDPOOL_BUILD_TESTS=OFF -DDPOOL_BUILD_BENCH=OFF "-DCMAKE_CXX_FLAGS=$flags" >/dev/null
if ! cmake --build "$build" -j"$jobs" --target "${targets[@]}" dpool-fuzz-corpus >"$build/fuzz-build.log" 2>&1; then
  grep -E "error" -A5 "$build/fuzz-build.log" | head -60 >&2
  echo "fuzz: build failed; the whole log is $build/fuzz-build.log" >&2
  exit 1
fi
"$build/fuzz/dpool-fuzz-corpus" "$build/seeds"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$PWD/fuzz/ubsan.supp}
failed=()
for target in "${targets[@]}"; do
  corpus=$build/corpus/$target crashes=$build/crashes/$target
  mkdir -p "$corpus" "$crashes"
  # The link's caps let a child announce a 1 GiB payload (LinkLimits::max_payload), allocated
  # once its first octets arrive; any larger allocation, or any input-driven one over 512 MiB
  # elsewhere, is a finding.
  malloc_limit=512
  if [ "$target" = fuzz_link ]; then malloc_limit=1100; fi
  echo "== $target: ${seconds}s" >&2
  # stdin from /dev/null: a config that names /dev/stdin as a key file must not wait on a tty.
  if ! "$build/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb="$malloc_limit" -max_len=65536 -print_final_stats=1 -artifact_prefix="$crashes/" \
      "$corpus" "$build/seeds/$target" "fuzz/corpus/$target" </dev/null >"$build/$target.log" 2>&1; then
    failed+=("$target")
    grep -E "ERROR|SUMMARY|Test unit written" "$build/$target.log" >&2 || tail -20 "$build/$target.log" >&2
  fi
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec)|cov: " "$build/$target.log" | tail -3 >&2 || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in $build/crashes/, logs in $build/<target>.log)" >&2
  exit 1
fi
echo "fuzz: every target ran ${seconds}s clean" >&2
