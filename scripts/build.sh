#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and builds dpool into build/ (or $DPOOL_BUILD_DIR); extra CMake
# arguments come from $DPOOL_CMAKE_ARGS. The compiler's output is kept in build.log and shown
# only when the build fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build=${DPOOL_BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${DPOOL_CMAKE_ARGS:-} >/dev/null
if ! cmake --build "$build" -j"$(nproc)" >"$build/build.log" 2>&1; then
  grep -E "error|Error" -A5 "$build/build.log" | head -80 >&2
  echo "build: failed; the whole log is $build/build.log" >&2
  exit 1
fi
