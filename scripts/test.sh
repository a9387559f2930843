#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite with ctest: what CI runs.
#   1. the normal build (build/), every test;
#   2. AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/), every test but packaging;
#   3. ThreadSanitizer (build-tsan/), every test but packaging.
# (The packaging tests check what `cmake --install` lays out, which no sanitizer changes, and
# they rebuild the examples as an outside project: minutes under a sanitizer for nothing.)
# `scripts/test.sh --quick` runs only the first; other arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=false
if [ "${1:-}" = "--quick" ]; then quick=true; shift; fi

run_suite() {  # run_suite NAME BUILD_DIR EXTRA_CMAKE_ARGS
  local name=$1 dir=$2 args=$3
  echo "== $name: building in $dir" >&2
  DPOOL_BUILD_DIR=$dir DPOOL_CMAKE_ARGS="${DPOOL_CMAKE_ARGS:-} $args" scripts/build.sh
  echo "== $name: testing" >&2
  local rc=0
  rm -f "$dir/Testing/Temporary/LastTestsFailed.log"  # ctest leaves an earlier run's list
  (cd "$dir" && ctest --output-on-failure --timeout 300 -j2 "${@:4}") || rc=$?
  if [ "$rc" -ne 0 ]; then print_failures "$name" "$dir"; fi
  return "$rc"
}

# The failed tests' output again, after the summary: with -j2 and hundreds of tests it is
# otherwise far up the log, where a log cut to its last lines loses it.
print_failures() {  # print_failures NAME BUILD_DIR
  local failed=$2/Testing/Temporary/LastTestsFailed.log log=$2/Testing/Temporary/LastTest.log
  [ -f "$failed" ] && [ -f "$log" ] || return 0
  echo "== $1: what the failed tests printed (the last 60 lines of each)" >&2
  cut -d: -f2- "$failed" | while IFS= read -r test; do
    echo "-- $test" >&2
    awk -v t="$test" '$0 ~ "^[0-9]+/[0-9]+ Test: " && substr($0, index($0, "Test: ") + 6) == t { on = 1; next }
                      on && /^<end of output>$/ { exit }
                      on' "$log" | tail -n 60 >&2
  done
}

run_suite "plain" build "" "$@"
if ! $quick; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
  run_suite "address,undefined sanitizers" build-asan "-DCMAKE_BUILD_TYPE=Debug -DDPOOL_SANITIZE=address,undefined" -LE packaging "$@"
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}
  run_suite "thread sanitizer" build-tsan "-DCMAKE_BUILD_TYPE=Debug -DDPOOL_SANITIZE=thread" -LE packaging "$@"
fi
