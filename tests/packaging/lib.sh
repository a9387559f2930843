# Shared by the packaging and example scripts (sourced): a work directory removed on exit, and
# processes started in the background (their pids in `pids`) stopped on exit, with their logs
# (work/*.log) shown when the script fails. The caller sets `work` before sourcing.
pids=()
stop() {  # stop PID: SIGTERM to its process group (timeout made one), then SIGKILL
  local pid=$1
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do stop "$pid"; done
  if [ "$rc" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] && { echo "---- $(basename "$log") (last lines)"; tail -n 40 "$log"; }
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
