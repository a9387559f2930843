#!/usr/bin/env bash
# The packaging test (ctest -L packaging): installs a dpool build tree into a temporary prefix,
# builds tests/packaging/consumer against it with find_package(dpool), and runs a small cluster
# from the prefix:
#   1. dpool-broker, the consumer's own worker program loading the consumer's plugin, and the
#      consumer's client checking the results of both;
#   2. the installed dpool-worker --plugin <the consumer's plugin>, checked the same way.
# Every step and process is bounded by `timeout` (all together below ctest's 300 s) and every
# process is stopped on exit; the temporary directory is removed.
#
#   run.sh BUILD_DIR CONSUMER_SOURCE_DIR CMAKE CXX_COMPILER GENERATOR [SANITIZERS]
set -euo pipefail
build_dir=$1 consumer_src=$2 cmake=$3 cxx=$4 generator=$5 sanitize=${6:-}

work=$(mktemp -d "${TMPDIR:-/tmp}/dpool-pkg.XXXXXX")
prefix=$work/prefix
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

step() { echo "packaging: $*"; }
start() {  # start LOG CMD...: runs CMD in the background, in its own process group, for 240 s at most
  local log=$work/$1
  shift
  timeout -k 5 240 "$@" </dev/null >"$log" 2>&1 &
  pids+=($!)
}

step "installing $build_dir into $prefix"
timeout 30 "$cmake" --install "$build_dir" --prefix "$prefix" >"$work/install.log"
for f in include/dpool/client.hpp include/dpool/worker.hpp include/dpool/task.hpp \
         include/dpool/broker.hpp include/dpool/protocol.hpp lib/cmake/dpool/dpoolConfig.cmake \
         bin/dpool-broker bin/dpool-worker; do
  [ -e "$prefix/$f" ] || { echo "packaging: $f was not installed" >&2; exit 1; }
done
# Plugins bind to the registry through dpool-worker's dynamic symbol table.
if ! nm -DC --defined-only "$prefix/bin/dpool-worker" | grep -F 'dpool::detail::task_registry()' >/dev/null; then
  echo "packaging: dpool-worker does not export dpool::detail::task_registry()" >&2
  exit 1
fi

step "building the consumer project against the prefix"
flags=()
# A sanitized dpool's static libraries need the sanitizer's runtime in whatever links them.
[ -n "$sanitize" ] && flags+=("-DCMAKE_CXX_FLAGS=-fsanitize=$sanitize")
timeout 30 "$cmake" -S "$consumer_src" -B "$work/consumer" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "${flags[@]}" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
grep -q "from $prefix/" "$work/configure.log" || { echo "packaging: dpool was not found in $prefix" >&2; cat "$work/configure.log"; exit 1; }
timeout 120 "$cmake" --build "$work/consumer" -j2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
plugin=$work/consumer/libconsumer_plugin.so

endpoint=ipc://$work/broker.sock
step "starting $prefix/bin/dpool-broker on $endpoint"
start broker.log "$prefix/bin/dpool-broker" --bind "$endpoint" --heartbeat-interval 200
for _ in $(seq 150); do grep -q "listening on" "$work/broker.log" && break; sleep 0.1; done
grep -q "listening on" "$work/broker.log" || { echo "packaging: the broker did not start" >&2; exit 1; }

step "the consumer's worker program, with the consumer's plugin"
start consumer-worker.log "$work/consumer/consumer-worker" --broker "$endpoint" --processes 2 \
  --heartbeat-interval 200 --plugin "$plugin"
consumer_worker=${pids[-1]}
timeout 45 "$work/consumer/consumer-client" "$endpoint" worker plugin plugin-in:consumer-worker
stop "$consumer_worker"

step "the installed dpool-worker with the consumer's plugin"
start dpool-worker.log "$prefix/bin/dpool-worker" --broker "$endpoint" --processes 1 \
  --heartbeat-interval 200 --plugin "$plugin"
timeout 45 "$work/consumer/consumer-client" "$endpoint" plugin plugin-in:dpool-worker
step "ok"
