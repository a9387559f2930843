#!/usr/bin/env bash
# The demo: sets up and builds dpool, then
#   1. the seed job on the embedded local cluster: the total size of /etc/*.conf, one task per
#      file, by a program whose dpool::Pool forks its own broker and workers;
#   2. the same machinery by hand: a dpool-broker, a dpool-worker with a plugin of tasks, and a
#      client summing the squares of 0..99,999 through them (100,000 tasks); both are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
build=${DPOOL_BUILD_DIR:-build}
echo "== the size of /etc/*.conf on an embedded cluster (examples/etc_conf_sizes.cpp)"
"$build/examples/etc_conf_sizes" '/etc/*.conf'
echo "== 100,000 tasks through a broker and a worker host (examples/squares.cpp)"
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
