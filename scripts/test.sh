#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite with ctest (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
build=${DPOOL_BUILD_DIR:-build}
cd "$build"
ctest --output-on-failure --timeout 300 -j2 "$@"
