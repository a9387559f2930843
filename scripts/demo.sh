#!/usr/bin/env bash
# The demo job: sets up and builds dpool, starts a broker and a worker host on this machine,
# and sums the squares of 0..99,999 through them (100,000 tasks), then stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
build=${DPOOL_BUILD_DIR:-build}
run=$(mktemp -d)
endpoint="ipc://$run/broker"
cleanup() {
  kill "${worker:-}" "${broker:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
"$build/broker/dpool-broker" --bind "$endpoint" --log-level warn &
broker=$!
"$build/worker/dpool-worker" --broker "$endpoint" --plugin "$build/examples/libdpool_math_tasks.so" --log-level warn &
worker=$!
"$build/examples/squares" --broker "$endpoint" --count "${1:-100000}"
