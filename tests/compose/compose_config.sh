#!/usr/bin/env bash
# The compose file as Compose itself reads it: `docker compose config` (v2) or, failing that,
# `docker-compose config` (1.29, Debian 12's package), neither of which needs a Docker engine,
# which CI does not have. With neither installed the test reports SKIPPED (exit 77) with the
# reason: a missing tool must never pass for a valid file.
#
# Beyond Compose's own schema check, it reads the normalized file back for what the README
# promises and Compose cannot know: the three services exist, and the worker service can be
# scaled (`--scale worker=N` fails on a fixed container name or a fixed host port).
#
#   compose_config.sh COMPOSE_FILE
set -euo pipefail
file=$1

if docker compose version >/dev/null 2>&1; then
  tool=(docker compose)
elif command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; then
  tool=(docker-compose)
else
  echo "SKIPPED: neither 'docker compose' (the v2 plugin) nor 'docker-compose' is installed"
  exit 77
fi
echo "compose: checking $file with ${tool[*]} ($("${tool[@]}" version --short 2>/dev/null || echo "version unknown"))"

# No interpolation surprises from the caller's environment: the file uses none, and a
# DPOOL_BROKER exported for local work must not change what is checked.
normalized=$(env -u DPOOL_BROKER -u DPOOL_CONFIG "${tool[@]}" -f "$file" config) || {
  echo "compose: ${tool[*]} config rejected $file" >&2
  exit 1
}

# The keys of one service in the normalized output (two-space indents in both versions).
service_keys() {
  awk -v s="$1" '
    /^[^ ]/ { in_services = ($0 == "services:"); next }
    in_services && /^  [^ ]/ { current = $1; sub(":$", "", current); next }
    in_services && current == s && /^    [^ ]/ { k = $1; sub(":.*$", "", k); print k }
  ' <<<"$normalized"
}

fail=0
for s in broker worker job; do
  keys=$(service_keys "$s")
  if [ -z "$keys" ]; then
    echo "compose: no service '$s' in $file" >&2
    fail=1
  fi
done
worker_keys=$(service_keys worker)
for k in container_name ports; do
  if grep -qx "$k" <<<"$worker_keys"; then
    echo "compose: the worker service sets '$k', so --scale worker=N cannot start more than one" >&2
    fail=1
  fi
done
for s in broker worker; do
  grep -qx healthcheck <<<"$(service_keys "$s")" || { echo "compose: service '$s' has no healthcheck" >&2; fail=1; }
done
[ "$fail" -eq 0 ] || exit 1
echo "compose: ok"
