#!/usr/bin/env bash
# Stops the control plane that scripts/kube/up.sh DIR started (by the pids it
# recorded in DIR/pids, controller-manager first, etcd last). Idempotent.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
PIDS="$1/pids"
[ -d "$PIDS" ] || exit 0

stop() {
  local f="$PIDS/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; fi
  fi
  rm -f "$f"
}

for name in kube-controller-manager kube-apiserver etcd; do stop "$name"; done
exit 0
