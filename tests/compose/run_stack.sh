#!/usr/bin/env bash
# The compose cluster's services run as plain processes of this build, without Docker: the
# keys service's own command, the broker's own arguments, dpool.yaml as every container reads
# it, a worker, the health checks and the example job. Compose can check the file's shape
# (compose_config.sh) and check_files.sh the image's contents, but only running them shows that
# the keys the keys service makes are the files dpool.yaml names, that the broker takes
# connections from other hosts with them and without --insecure, and that the job gets through.
#
# Docker-only differences, each replaced here: the volume mount points (/var/lib/dpool/...) by
# a temporary folder, the image's plugin path by this build's, the programs by this build's,
# the broker's 0.0.0.0:5555 by a free loopback port, the compose network's name `broker` by
# 127.0.0.1, and the job's one-second sleeps dropped.
#
#   run_stack.sh SOURCE_DIR DPOOL_BROKER_BIN DPOOL_WORKER_BIN DPOOL_BIN PLUGIN
set -euo pipefail
src=$1 broker_bin=$2 worker_bin=$3 dpool_bin=$4 plugin=$5
compose=$src/docker/docker-compose.yml

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "compose stack: $*" >&2; for f in "$tmp"/*.log; do [ -e "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" >&2; done; exit 1; }

# The programs under the names the containers call them by.
mkdir -p "$tmp/bin" "$tmp/keys" "$tmp/data"
chmod 0700 "$tmp/keys"
ln -s "$broker_bin" "$tmp/bin/dpool-broker"
ln -s "$worker_bin" "$tmp/bin/dpool-worker"
ln -s "$dpool_bin" "$tmp/bin/dpool"
export PATH=$tmp/bin:$PATH

local_paths() { sed -e "s|/var/lib/dpool/keys|$tmp/keys|g" -e "s|/var/lib/dpool/data|$tmp/data|g"; }
local_paths <"$src/docker/dpool.yaml" | sed -e "s|/usr/local/lib/dpool/libdpool_math_tasks.so|$plugin|" >"$tmp/dpool.yaml"
export DPOOL_CONFIG=$tmp/dpool.yaml

# A service's command array (a flow sequence of "..." and '...' words, over one line or more),
# one word a line, Compose's $$ undone.
command_of() {
  awk -v s="$1" '
    /^  [a-z]/ { current = $1; sub(":$", "", current) }
    current == s && /^    command:/ { taking = 1; sub(/^    command: */, "") }
    taking { print; if ($0 ~ /\] *$/) exit }
  ' "$compose" | grep -oE "\"([^\"\\\\]|\\\\.)*\"|'[^']*'" | sed -e 's/^["'"'"']//' -e 's/["'"'"']$//' -e 's/\$\$/$/g'
}

# ---- keys: twice, as a second `up` runs it again; the second run must keep the pairs --------
mapfile -t keys_cmd < <(command_of keys | local_paths)
[ "${#keys_cmd[@]}" -gt 0 ] || fail "no command for the keys service in $compose"
"${keys_cmd[@]}" >"$tmp/keys.log" 2>&1 || fail "the keys service's command failed"
before=$(cat "$tmp/keys"/*.pub)
"${keys_cmd[@]}" >>"$tmp/keys.log" 2>&1 || fail "the keys service's command failed when run again"
[ "$before" = "$(cat "$tmp/keys"/*.pub)" ] || fail "running the keys service again replaced the keys"
for k in broker worker client; do
  [ "$(stat -c %a "$tmp/keys/$k.key")" = 600 ] || fail "$k.key is not mode 0600"
done

# ---- broker: its own arguments, on a free loopback port ------------------------------------
mapfile -t broker_cmd < <(command_of broker | local_paths | sed -e 's|^tcp://0.0.0.0:5555$|tcp://127.0.0.1:*|')
[ "${broker_cmd[0]:-}" = dpool-broker ] || fail "the broker service does not run dpool-broker"
if printf '%s\n' "${broker_cmd[@]}" | grep -qx -- --insecure; then fail "the broker service still runs --insecure"; fi
"${broker_cmd[@]}" >"$tmp/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  endpoint=$(grep -oE 'listening on tcp://127\.0\.0\.1:[0-9]+' "$tmp/broker.log" 2>/dev/null | awk '{print $3}' || true)
  [ -n "$endpoint" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || fail "the broker exited"
  sleep 0.1
done
[ -n "$endpoint" ] || fail "the broker did not start listening"
grep -q "without CURVE" "$tmp/broker.log" && fail "the broker listens without CURVE"
export DPOOL_BROKER=$endpoint

# ---- the broker's health check, then a worker and its health check ------------------------
timeout 30 dpool status --broker "$endpoint" >"$tmp/status.log" 2>&1 || fail "the broker's health check failed"
mapfile -t worker_cmd < <(command_of worker)
"${worker_cmd[@]}" >"$tmp/worker.log" 2>&1 &
pids+=($!)
healthy=false
for _ in $(seq 100); do
  if dpool status --json 2>/dev/null | grep -q "\"host\":\"$(uname -n)\""; then healthy=true; break; fi
  sleep 0.1
done
$healthy || fail "the worker never became healthy (listed by dpool status)"

# ---- the example job, without its sleeps --------------------------------------------------
mapfile -t job_cmd < <(command_of job | sed -e 's/^sleep 1; //')
timeout 60 "${job_cmd[@]}" >"$tmp/job.out" 2>"$tmp/job.log" || fail "the example job failed"
[ "$(grep -c . "$tmp/job.out")" = 16 ] || fail "the job printed $(grep -c . "$tmp/job.out") lines, not 16"
grep -q '"256' "$tmp/job.out" || fail "the job's output has no 16*16: $(cat "$tmp/job.out")"

# ---- a client without the cluster's keys is refused -----------------------------------------
if DPOOL_CONFIG=/dev/null timeout 30 dpool status --broker "$endpoint" >"$tmp/refused.log" 2>&1; then
  fail "a client without keys got a status from the broker"
fi
echo "compose stack: ok (keys, broker on CURVE without --insecure, worker healthy, job of 16 done, keyless client refused)"
